"""The fast upscaler: a small network distilled from Real-CUGAN, 64-px faces to 256 px in a few ms.

Everything runs at the input's resolution, where a 3x3 convolution costs a sixteenth of what it
costs at 256 px: a few residual blocks, then one convolution that makes the 4x4 sub-pixels of every
input pixel (``PixelShuffle``), added to the bilinear enlargement of the input. The teacher's line
work is a sharpening of that enlargement, so the network only learns the difference.

Input (N, H, W, 3) in [0, 1], output (N, 4H, 4W, 3) in [0, 1] before clipping, like ``gan.cugan``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
from keras import layers

from gan.cugan import PixelShuffle


@dataclass(frozen=True)
class StudentConfig:
    """The student's shape; ``upscaler.json`` records it and the loader builds from it."""

    channels: int = 32
    blocks: int = 2
    scale: int = 4

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "StudentConfig":
        config = cls(**{k: int(data[k]) for k in ("channels", "blocks", "scale") if k in data})
        if not (4 <= config.channels <= 256 and 0 <= config.blocks <= 16 and config.scale in (2, 4)):
            raise ValueError(f"unsupported student shape {config}")
        return config


def build_student(config: StudentConfig = StudentConfig()) -> keras.Model:
    """(N, H, W, 3) in [0, 1] -> (N, scale*H, scale*W, 3)."""
    c, r = config.channels, config.scale
    image = keras.Input((None, None, 3), name="image")
    x = layers.Conv2D(c, 3, padding="same", activation="relu", name="head")(image)
    for i in range(config.blocks):
        y = layers.Conv2D(c, 3, padding="same", activation="relu", name=f"block{i}_a")(x)
        y = layers.Conv2D(c, 3, padding="same", name=f"block{i}_b")(y)
        x = layers.Add()([x, y])
    x = layers.Conv2D(3 * r * r, 3, padding="same", name="subpixel")(x)
    base = layers.UpSampling2D(r, interpolation="bilinear")(image)
    out = layers.Add()([PixelShuffle(r)(x), base])
    return keras.Model(image, out, name=f"student_{r}x")
