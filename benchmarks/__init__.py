"""Speed benchmarks against the seed article's way of doing things (see README.md here)."""
