"""``AvatarGenerator``: a verified style's generator behind one compiled, batched call.

Every call runs the generator on fixed-size chunks (padded with zero latents), so a face never
depends on what else shares its batch: the same seed gives the same pixels alone, in a grid or in a
micro-batch of other users' requests. Calls are thread-safe and meant to run off the event loop.
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

DEFAULT_CHUNK = 16


class AvatarGenerator:
    """Seeds -> uint8 faces for one style."""

    def __init__(self, generator, info: StyleInfo, chunk: int = DEFAULT_CHUNK) -> None:
        self.info = info
        self.chunk = chunk
        self.latent_dim = info.config.latent_dim
        self.image_size = info.config.image_size
        self._generator = generator
        self._call = tf.function(
            lambda z: generator(z, training=False),
            input_signature=[tf.TensorSpec((chunk, self.latent_dim), tf.float32)],
            reduce_retracing=True,
        )

    @classmethod
    def load(cls, folder: str | os.PathLike, chunk: int = DEFAULT_CHUNK, warmup: bool = True) -> "AvatarGenerator":
        """Load and verify a style folder (raises ``StyleError`` with one clear line)."""
        generator, info = load_generator(folder)
        gen = cls(generator, info, chunk)
        if warmup:
            gen.render_latents(np.zeros((1, gen.latent_dim), np.float32))  # trace once, up front
        log.info("loaded style %r (%s)", info.name, info.generator_sha256[:12])
        return gen

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
        for start in range(0, len(z), self.chunk):
            part = z[start:start + self.chunk]
            padded = np.zeros((self.chunk, self.latent_dim), np.float32)
            padded[: len(part)] = part
            out.append(to_uint8(self._call(padded).numpy()[: len(part)]))
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
