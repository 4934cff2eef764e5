"""``AvatarGenerator``: a verified style's generator and upscaler behind compiled, batched calls.

The generator runs on a few fixed batch shapes (``gan.batching``), and BatchNorm on its moving
statistics, so a face never depends on what else shares its batch: the same seed gives the same
pixels alone, in a grid or in a micro-batch of other users' requests (``tests/test_gan.py`` checks
this bit for bit). The upscaler that turns the 64-px faces into HD ones runs the same way. A style
that ships colour directions also draws a seed's face with another hair or eye colour (``gan.edits``:
the edit moves each latent on its own, so it keeps this promise). Calls are thread-safe and meant to
run off the event loop.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from gan.batching import FixedBatchRunner
from gan.edits import Directions, edit_metadata, load_directions
from gan.imaging import check_size, to_uint8
from gan.latents import check_seed, check_truncation, latents_for_seeds, slerp, variation_latents
from gan.styles import StyleInfo, load_generator
from gan.upscalers import DEFAULT_UPSCALER, UPSCALERS, Upscaler, UpscalerLibrary, check_upscaler, default_root

log = logging.getLogger(__name__)

CHUNKS = (1, 4, 16, 64)


class AvatarGenerator:
    """Seeds -> uint8 faces for one style, at its native size or upscaled."""

    def __init__(self, generator, info: StyleInfo, chunks: tuple[int, ...] = CHUNKS,
                 upscalers: UpscalerLibrary | None = None) -> None:
        self.info = info
        self.latent_dim = info.config.latent_dim
        self.image_size = info.config.image_size
        self._generator = generator
        probe = latents_for_seeds(list(range(4)), self.latent_dim)
        self._runner = FixedBatchRunner(generator, (self.latent_dim,), chunks, probe, what=f"style {info.name}")
        self.upscalers = upscalers if upscalers is not None else UpscalerLibrary(default_root(), self.image_size)
        self.directions: Directions | None = load_directions(info)  # hair and eye colour edits, if shipped

    @classmethod
    def load(cls, folder: str | os.PathLike, chunks: tuple[int, ...] = CHUNKS,
             upscalers: UpscalerLibrary | None = None) -> "AvatarGenerator":
        """Load and verify a style folder (raises ``StyleError`` with one clear line)."""
        generator, info = load_generator(folder)
        gen = cls(generator, info, chunks, upscalers)
        log.info("loaded style %r (%s), batch shapes %s", info.name, info.generator_sha256[:12], gen.chunks)
        return gen

    @property
    def chunks(self) -> tuple[int, ...]:
        """The batch shapes the generator runs on here (those bit-identical to the largest)."""
        return self._runner.chunks

    @property
    def max_batch(self) -> int:
        """The largest batch one compiled call takes; bigger requests are split."""
        return self._runner.max_batch

    @property
    def default_upscaler(self) -> str:
        """The upscaler this style's faces get when none is asked for: ``style.json``'s ``upscaler``,
        else bicubic for a style drawn in a palette of flat colours, else the student.

        Faces in flat tones keep them best under bicubic interpolation: on 64 faces redrawn in
        benchmarks/style.py's grey manga look, 66% of bicubic's 256-px pixels lay in the faces' 8
        tones, 60% of the student's (which sharpens their dithering into grain) and 39% of
        Real-CUGAN's (which redraws them as tinted line art: ``python -m benchmarks.upscale --look
        manga --faces 64``, 2026-12-05)."""
        name = self.info.meta.get("upscaler")
        if name in UPSCALERS:
            return name
        return "bicubic" if self.info.config.g_palette else DEFAULT_UPSCALER

    def upscaler(self, name: str | None = None) -> Upscaler:
        """The named upscaler (default: the style's), loaded on first use (raises ``UpscalerError``)."""
        return self.upscalers.get(check_upscaler(name or self.default_upscaler), self.info.meta)

    @property
    def style(self) -> str:
        return self.info.name

    @property
    def weights_sha256(self) -> str:
        return self.info.generator_sha256

    def render_latents(self, z: np.ndarray, size: int | None = None, upscaler: str | None = None) -> np.ndarray:
        """(N, latent_dim) latents -> (N, H, W, 3) uint8 faces: native size, or ``size`` px upscaled."""
        z = np.asarray(z, np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"latents must have shape (N, {self.latent_dim})")
        if not len(z):
            faces = np.zeros((0, self.image_size, self.image_size, 3), np.uint8)
        else:
            faces = to_uint8(self._runner(z))
        return faces if size is None else self.upscale(faces, size, upscaler)

    def upscale(self, images: np.ndarray, size: int, upscaler: str | None = None) -> np.ndarray:
        """(N, 64, 64, 3) uint8 faces -> (N, size, size, 3) uint8 through the style's (or the named) upscaler."""
        images = np.asarray(images, np.uint8)
        if images.ndim != 4 or images.shape[1:] != (self.image_size, self.image_size, 3):
            raise ValueError(f"faces must have shape (N, {self.image_size}, {self.image_size}, 3)")
        return self.upscaler(upscaler).upscale(images, check_size(size))

    def prepare_upscaler(self, size: int, upscaler: str | None = None) -> None:
        """Load and warm up the networks that upscale a face to ``size`` px, before a user waits for them."""
        self.upscaler(upscaler).prepare(check_size(size))

    def colours(self, kind: str) -> tuple[str, ...]:
        """The ``hair`` or ``eyes`` colours this style can draw (none without directions)."""
        return self.directions.colours[kind] if self.directions is not None else ()

    def edit(self, z: np.ndarray, hair: str | None = None, eyes: str | None = None) -> np.ndarray:
        """Latents with a hair and/or eye colour edit (``gan.edits``); ``ValueError`` for an unknown
        colour or a style without directions."""
        directions = self._directions_for(hair, eyes)
        return z if directions is None else directions.apply(z, hair, eyes)

    def _directions_for(self, hair: str | None, eyes: str | None) -> Directions | None:
        """The directions an edit needs (None for no edit), or ``ValueError`` when the style has none."""
        if hair is None and eyes is None:
            return None
        if self.directions is None:
            raise ValueError(f"style {self.style!r} has no hair or eye colour directions "
                             "(`avatarbot-train directions` fits them)")
        return self.directions

    def generate(self, seeds: list[int], truncation: float = 1.0, size: int | None = None,
                 upscaler: str | None = None, hair: str | None = None, eyes: str | None = None) -> np.ndarray:
        """One face per seed, as (N, H, W, 3) uint8: native 64 px with ``size=None`` (what FID measures),
        else ``size`` px through the upscaler; ``hair``/``eyes`` recolour it (on the truncated latent)."""
        z = latents_for_seeds([check_seed(s) for s in seeds], self.latent_dim, truncation)
        return self.render_latents(self.edit(z, hair, eyes), size, upscaler)

    def variations(self, seed: int, count: int = 4, strength: float = 0.4, truncation: float = 1.0,
                   size: int | None = None, upscaler: str | None = None) -> np.ndarray:
        """``count`` faces near the seed's face (see ``gan.latents.variation_latents``)."""
        return self.render_latents(variation_latents(seed, self.latent_dim, count, strength, truncation),
                                   size, upscaler)

    def interpolate(self, seed_a: int, seed_b: int, steps: int = 16, truncation: float = 1.0,
                    size: int | None = None, upscaler: str | None = None) -> np.ndarray:
        """``steps`` faces morphing from seed_a's face to seed_b's (spherical interpolation)."""
        if not 2 <= steps <= 64:
            raise ValueError("steps must be between 2 and 64")
        psi = check_truncation(truncation)
        ends = latents_for_seeds([check_seed(seed_a), check_seed(seed_b)], self.latent_dim)
        return self.render_latents(slerp(ends[0], ends[1], steps) * np.float32(psi), size, upscaler)

    def metadata(self, seed: int, truncation: float = 1.0, upscaler: str | None = None,
                 size: int | None = None, hair: str | None = None, eyes: str | None = None,
                 **extra: object) -> dict[str, object]:
        """What a PNG needs to carry so that the face can be reproduced from the picture alone: the
        seed, style, truncation, weights hash, the upscaler (with the networks a ``size`` px face
        runs through), and a colour edit with the hash of the directions it used."""
        edit = edit_metadata(self._directions_for(hair, eyes), hair, eyes)
        up = self.upscaler(upscaler)
        meta: dict[str, object] = {"seed": seed, "style": self.style, "truncation": f"{truncation:g}",
                                   "weights_sha256": self.weights_sha256, "upscaler": up.name}
        if size is not None and up.weights_for(size):
            meta["upscaler_weights"] = up.weights_for(size)
            if up.precision != "float32":  # another machine may compute it a few levels apart
                meta["upscaler_precision"] = up.precision
        return {**meta, **edit, **extra}

