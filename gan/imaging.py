"""Image output: uint8 conversion, upscaling, grids, PNG with reproducibility metadata, GIF morphs."""

from __future__ import annotations

import io
import math
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, PngImagePlugin

MIN_SIZE, MAX_SIZE = 64, 512
METADATA_PREFIX = "avatarbot:"


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Generator output in [-1, 1] (float) -> uint8 RGB with round-to-nearest."""
    return np.clip(np.rint((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def check_size(size: int) -> int:
    """Return ``size`` if it is an allowed output size, else raise ``ValueError``."""
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be an integer between {MIN_SIZE} and {MAX_SIZE}")
    return size


def upscale(image: np.ndarray, size: int) -> Image.Image:
    """One uint8 HxWx3 array -> a ``size`` x ``size`` Pillow image (Lanczos)."""
    im = Image.fromarray(image, "RGB")
    size = check_size(size)
    return im if im.size == (size, size) else im.resize((size, size), Image.LANCZOS)


def grid(images: Sequence[np.ndarray] | np.ndarray, cols: int | None = None, pad: int = 2,
         cell: int | None = None, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Tile uint8 images into one picture, ``cols`` wide (square-ish by default)."""
    n = len(images)
    if n == 0:
        raise ValueError("grid needs at least one image")
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    cell = cell or images[0].shape[0]
    out = Image.new("RGB", (cols * cell + (cols + 1) * pad, rows * cell + (rows + 1) * pad), background)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        tile = Image.fromarray(np.asarray(img), "RGB")
        if tile.size != (cell, cell):
            tile = tile.resize((cell, cell), Image.LANCZOS)
        out.paste(tile, (pad + c * (cell + pad), pad + r * (cell + pad)))
    return out


def png_bytes(image: Image.Image, metadata: Mapping[str, object] | None = None) -> bytes:
    """Encode as PNG with each metadata item in a text chunk named ``avatarbot:<key>``."""
    info = PngImagePlugin.PngInfo()
    for key, value in (metadata or {}).items():
        info.add_text(METADATA_PREFIX + key, str(value))
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info, optimize=False)
    return buf.getvalue()


def read_png_metadata(data: bytes) -> dict[str, str]:
    """The ``avatarbot:`` text chunks of a PNG, without the prefix."""
    with Image.open(io.BytesIO(data)) as im:
        texts = getattr(im, "text", {}) or {}
    return {k[len(METADATA_PREFIX):]: v for k, v in texts.items() if k.startswith(METADATA_PREFIX)}


def gif_bytes(frames: Sequence[np.ndarray], size: int = 256, duration_ms: int = 80,
              bounce: bool = True) -> bytes:
    """An endlessly looping animated GIF; with ``bounce`` it plays forward then back."""
    if len(frames) < 2:
        raise ValueError("a GIF needs at least two frames")
    ims = [upscale(np.asarray(f), size) for f in frames]
    if bounce:
        ims = ims + ims[-2:0:-1]
    buf = io.BytesIO()
    ims[0].save(buf, format="GIF", save_all=True, append_images=ims[1:], duration=duration_ms,
                loop=0, optimize=False, disposal=2)
    return buf.getvalue()


def avatar_png(image: np.ndarray, size: int, metadata: Mapping[str, object]) -> bytes:
    """One face, upscaled to ``size``, as PNG bytes carrying its reproduction metadata."""
    return png_bytes(upscale(image, size), {**metadata, "size": size})
