"""``AvatarGenerator``: a verified style's generator behind one compiled, batched call.

Every call runs the generator on a few fixed batch shapes (``CHUNKS``, padded with zero latents):
one compiled graph per shape, small shapes for single avatars (low latency), large ones for grids
and micro-batches (throughput). BatchNorm runs on its moving statistics, so a face never depends on
what else shares its batch: the same seed gives the same pixels alone, in a grid or in a micro-batch
of other users' requests (``tests/test_gan.py`` checks this bit for bit). Within one shape that holds
everywhere, but oneDNN picks its kernels by batch size, and on some CPUs (AVX2 without AVX-512) a
batch of 1 or 4 sums in another order than a batch of 16: the last bits differ, and now and then a
pixel by one level. So at load time every shape is checked against the largest one on a probe batch,
and the shapes that differ are not used on that machine. Calls are thread-safe and meant to run off
the event loop.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import tensorflow as tf

from gan.imaging import to_uint8
from gan.latents import check_seed, check_truncation, latents_for_seeds, slerp, variation_latents
from gan.styles import StyleInfo, load_generator

log = logging.getLogger(__name__)

CHUNKS = (1, 4, 16, 64)
# A compiled call costs about as much as this many extra faces (fixed overhead), whatever its size:
# measured on the 2-core CPU as 2.6 ms + 0.62 ms per face. It decides how a batch is cut into chunks.
CALL_OVERHEAD_FACES = 4


class AvatarGenerator:
    """Seeds -> uint8 faces for one style."""

    def __init__(self, generator, info: StyleInfo, chunks: tuple[int, ...] = CHUNKS) -> None:
        self.info = info
        self.chunks = tuple(sorted(chunks))
        self.latent_dim = info.config.latent_dim
        self.image_size = info.config.image_size
        self._generator = generator
        # One concrete function per shape, traced here once: no retracing, ever.
        run = tf.function(lambda z: generator(z, training=False))
        self._calls = {n: run.get_concrete_function(tf.TensorSpec((n, self.latent_dim), tf.float32))
                       for n in self.chunks}
        # Also the warm-up: the first call of each graph is slow; pay it now, not on a user's request.
        self.chunks = self._bit_identical_chunks()
        self._plans = _chunk_plans(self.chunks)

    @classmethod
    def load(cls, folder: str | os.PathLike, chunks: tuple[int, ...] = CHUNKS) -> "AvatarGenerator":
        """Load and verify a style folder (raises ``StyleError`` with one clear line)."""
        generator, info = load_generator(folder)
        gen = cls(generator, info, chunks)
        log.info("loaded style %r (%s), batch shapes %s", info.name, info.generator_sha256[:12], gen.chunks)
        return gen

    def _bit_identical_chunks(self) -> tuple[int, ...]:
        """The batch shapes whose faces equal the largest shape's bit for bit on this machine."""
        probe = latents_for_seeds(list(range(4)), self.latent_dim)
        largest = self.chunks[-1]

        def faces(n: int) -> np.ndarray:
            padded = np.zeros((n, self.latent_dim), np.float32)
            k = min(n, len(probe))
            padded[:k] = probe[:k]
            return self._calls[n](tf.constant(padded)).numpy()[:k]

        reference = faces(largest)
        kept = tuple(n for n in self.chunks if n == largest or np.array_equal(faces(n), reference[:n]))
        if kept != self.chunks:
            log.info("batch shapes %s compute in another order than %d on this CPU: not used, so that a "
                     "seed gives the same pixels in any batch", sorted(set(self.chunks) - set(kept)), largest)
        return kept

    @property
    def max_batch(self) -> int:
        """The largest batch one compiled call takes; bigger requests are split."""
        return self.chunks[-1]

    @property
    def style(self) -> str:
        return self.info.name

    @property
    def weights_sha256(self) -> str:
        return self.info.generator_sha256

    def render_latents(self, z: np.ndarray) -> np.ndarray:
        """(N, latent_dim) latents -> (N, H, W, 3) uint8 images, in fixed-size chunks."""
        z = np.asarray(z, np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"latents must have shape (N, {self.latent_dim})")
        out = []
        for start in range(0, len(z), self.max_batch):
            part = z[start:start + self.max_batch]
            for n in self._plans[len(part)]:
                piece, part = part[:n], part[n:]
                padded = np.zeros((n, self.latent_dim), np.float32)
                padded[: len(piece)] = piece
                out.append(to_uint8(self._calls[n](tf.constant(padded)).numpy()[: len(piece)]))
        return np.concatenate(out) if out else np.zeros((0, self.image_size, self.image_size, 3), np.uint8)

    def generate(self, seeds: list[int], truncation: float = 1.0) -> np.ndarray:
        """One face per seed, as (N, H, W, 3) uint8."""
        return self.render_latents(latents_for_seeds([check_seed(s) for s in seeds], self.latent_dim,
                                                     truncation))

    def variations(self, seed: int, count: int = 4, strength: float = 0.4,
                   truncation: float = 1.0) -> np.ndarray:
        """``count`` faces near the seed's face (see ``gan.latents.variation_latents``)."""
        return self.render_latents(variation_latents(seed, self.latent_dim, count, strength, truncation))

    def interpolate(self, seed_a: int, seed_b: int, steps: int = 16, truncation: float = 1.0) -> np.ndarray:
        """``steps`` faces morphing from seed_a's face to seed_b's (spherical interpolation)."""
        if not 2 <= steps <= 64:
            raise ValueError("steps must be between 2 and 64")
        psi = check_truncation(truncation)
        ends = latents_for_seeds([check_seed(seed_a), check_seed(seed_b)], self.latent_dim)
        return self.render_latents(slerp(ends[0], ends[1], steps) * np.float32(psi))

    def metadata(self, seed: int, truncation: float = 1.0, **extra: object) -> dict[str, object]:
        """What a PNG needs to carry so that the face can be reproduced from the picture alone."""
        return {"seed": seed, "style": self.style, "truncation": f"{truncation:g}",
                "weights_sha256": self.weights_sha256, **extra}


def _chunk_plans(chunks: tuple[int, ...]) -> list[tuple[int, ...]]:
    """For every batch size up to the largest chunk, the cheapest list of chunk shapes covering it.

    Padding is wasted work and every call has a fixed cost, so 17 faces run as 16 + 1, and 60 as 64.
    """
    cost = [0.0] + [float("inf")] * chunks[-1]
    plans: list[tuple[int, ...]] = [()] + [()] * chunks[-1]
    for n in range(1, chunks[-1] + 1):
        for c in chunks:
            rest = max(0, n - c)
            if c + CALL_OVERHEAD_FACES + cost[rest] < cost[n]:
                cost[n] = c + CALL_OVERHEAD_FACES + cost[rest]
                plans[n] = (c,) + plans[rest]
    return plans
