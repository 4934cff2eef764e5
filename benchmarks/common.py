"""Small helpers shared by the benchmarks: paths, CPU features, timing statistics, tables.

Import this module before TensorFlow: it sets TensorFlow's environment
(``gan.runtime.tensorflow_environment``: quiet C++ logging on stderr, where the benchmark tables go
to stdout, and oneDNN's kernels).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Callable, Sequence

from gan.runtime import tensorflow_environment

tensorflow_environment()

REPO_ROOT = Path(__file__).resolve().parents[1]


def repo_path(path: str | os.PathLike) -> Path:
    """``path`` as given when absolute, else relative to the repository root (not the cwd)."""
    p = Path(path)
    return (p if p.is_absolute() else REPO_ROOT / p).resolve()


def cpu_name() -> str:
    """The CPU model and logical core count, for the header of a benchmark's output."""
    from gan.runtime import cpu_summary

    return f"{cpu_summary()}, {os.cpu_count()} logical cores, load average {os.getloadavg()[0]:.1f}"


def time_calls(fn: Callable[[], object], repeats: int) -> list[float]:
    """Wall-clock seconds of each of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, linearly interpolated."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def pillow_png(image, size: int, metadata: dict) -> bytes:
    """The plain way to make an avatar PNG, the baseline for ours: Pillow's Lanczos resize and its PNG
    encoder with default settings, the metadata in text chunks."""
    import io

    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in metadata.items():
        info.add_text(key, str(value))
    buf = io.BytesIO()
    Image.fromarray(image).resize((size, size), Image.LANCZOS).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()
