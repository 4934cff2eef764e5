"""Training data: a folder of images -> a ``tf.data`` pipeline of augmented 64x64 batches.

Images are decoded once with Pillow (JPEG, PNG and WebP, in nested folders), resized, and kept in
memory as uint8; a file that cannot be read is skipped and counted, never a crash. Random crop and
flip then run inside ``tf.data`` on every epoch.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from gan.imaging import UnusableImage, decode_image

if TYPE_CHECKING:
    import tensorflow as tf

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


@dataclass
class FolderStats:
    """What ``load_folder`` found: images kept and files skipped, by reason."""

    loaded: int = 0
    skipped: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        parts = [f"{self.loaded} images loaded"]
        parts += [f"{n} skipped ({reason})" for reason, n in sorted(self.skipped.items())]
        return ", ".join(parts)


def list_images(root: str | os.PathLike) -> list[Path]:
    """Every file with an image extension under ``root`` (recursively), in a stable order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def read_image(path: str | os.PathLike, size: int) -> np.ndarray:
    """Decode one image file to an RGB uint8 array of ``size`` x ``size`` (centre crop to square).

    Raises ``UnusableImage`` (a ``ValueError``) with a short reason for anything that is not a
    usable picture (see ``gan.imaging.decode_image``).
    """
    try:
        data = Path(path).read_bytes()
    except OSError:
        raise UnusableImage("corrupt or unreadable") from None
    im = decode_image(data)
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    im = im.resize((size, size), Image.LANCZOS, box=(left, top, left + side, top + side))
    return np.asarray(im, dtype=np.uint8)


def load_folder(root: str | os.PathLike, size: int = 64, max_images: int = 0,
                workers: int = 4) -> tuple[np.ndarray, FolderStats]:
    """Decode every image under ``root`` to an (N, size, size, 3) uint8 array."""
    files = list_images(root)
    if max_images:
        files = files[:max_images]
    stats = FolderStats()

    def decode(path: Path) -> np.ndarray | str:
        try:
            return read_image(path, size)
        except ValueError as exc:
            return str(exc)

    images = []
    with ThreadPoolExecutor(workers) as pool:
        for path, result in zip(files, pool.map(decode, files, chunksize=64)):
            if isinstance(result, str):
                stats.skipped[result] += 1
                log.debug("skipped %s: %s", path, result)
            else:
                images.append(result)
    stats.loaded = len(images)
    if not images:
        raise ValueError(f"no usable images in {root} ({stats.summary()})")
    return np.stack(images), stats


def make_dataset(images: np.ndarray, batch_size: int, image_size: int = 64, crop_margin: int = 4,
                 seed: int = 0) -> "tf.data.Dataset":
    """An endless, shuffled dataset of float32 batches in [-1, 1] with random crop and flip.

    ``images`` are stored at ``image_size + crop_margin`` and randomly cropped to ``image_size``.
    """
    import tensorflow as tf  # here, not at the top: load_folder also serves the JAX trainer

    ds = tf.data.Dataset.from_tensor_slices(images)
    ds = ds.shuffle(min(len(images), 20_000), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(batch_size, drop_remainder=True)
    size = images.shape[1]

    def augment(batch):
        # Whole-batch ops: one crop_and_resize and one select per batch instead of per-image map
        # calls, which on a 2-core CPU compete with the training step for the same cores.
        n = tf.shape(batch)[0]
        x = tf.cast(batch, tf.float32)
        if crop_margin:
            # Integer offsets and a box exactly image_size wide: every sample lands on a pixel, so
            # this is a plain crop (no interpolation blur).
            offset = tf.cast(tf.random.uniform((n, 2), 0, crop_margin + 1, dtype=tf.int32), tf.float32)
            boxes = tf.concat([offset, offset + image_size - 1], axis=1) / (size - 1)
            x = tf.image.crop_and_resize(x, boxes, tf.range(n), (image_size, image_size))
        flip = tf.random.uniform((n, 1, 1, 1)) < 0.5
        x = tf.where(flip, tf.reverse(x, axis=[2]), x)
        return x / 127.5 - 1.0

    return ds.map(augment).prefetch(tf.data.AUTOTUNE)
