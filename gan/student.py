"""The fast upscaler: a small network distilled from Real-CUGAN, 64-px faces to 256 px in a few ms.

Most of the work runs at the input's resolution, where a 3x3 convolution costs a sixteenth of what
it costs at 256 px: a few residual blocks, then either one convolution that makes the 4x4 sub-pixels
of every input pixel (``PixelShuffle``), or (``stage2`` > 0) a 2x sub-pixel step to a thin feature map
at twice the resolution where more 3x3 convolutions place the line work before the last 2x step.
``context`` adds a residual branch at half the input's resolution (twice the width, a quarter of the
cost per layer) that sees twice as far: the teacher, a U-Net, darkens and cleans lines by what is
around them. The output is added to the bilinear enlargement of the input: the teacher's line work is
a sharpening of that enlargement, so the network only learns the difference.

Which shape won, at equal training, is in ``weights/upscalers/MODEL_CARD.md``.

Input (N, H, W, 3) in [0, 1] (H and W even when ``context`` is on), output (N, 4H, 4W, 3) in [0, 1]
before clipping, like ``gan.cugan``.
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
    stage2: int = 0  # channels of the half-way (2x) stage; 0: one sub-pixel step to the full scale
    stage2_convs: int = 1  # 3x3 convolutions (with ReLU) in the half-way stage
    context: int = 0  # 1: a residual branch at half the input's resolution

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "StudentConfig":
        fields = ("channels", "blocks", "scale", "stage2", "stage2_convs", "context")
        config = cls(**{k: int(data[k]) for k in fields if k in data})
        if not (4 <= config.channels <= 256 and 0 <= config.blocks <= 16 and config.scale in (2, 4)
                and 0 <= config.stage2 <= 128 and (config.stage2 == 0 or config.scale == 4)
                and 1 <= config.stage2_convs <= 4 and config.context in (0, 1)):
            raise ValueError(f"unsupported student shape {config}")
        return config


def build_student(config: StudentConfig = StudentConfig()) -> keras.Model:
    """(N, H, W, 3) in [0, 1] -> (N, scale*H, scale*W, 3)."""
    c, r = config.channels, config.scale
    image = keras.Input((None, None, 3), name="image")
    x = layers.Conv2D(c, 3, padding="same", activation="relu", name="head")(image)
    if config.context:
        y = layers.Conv2D(2 * c, 3, strides=2, padding="same", activation="relu", name="context_down")(x)
        z = layers.Conv2D(2 * c, 3, padding="same", activation="relu", name="context_a")(y)
        z = layers.Conv2D(2 * c, 3, padding="same", name="context_b")(z)
        y = layers.Add()([y, z])
        x = layers.Add()([x, PixelShuffle(2)(layers.Conv2D(4 * c, 1, name="context_up")(y))])
    for i in range(config.blocks):
        y = layers.Conv2D(c, 3, padding="same", activation="relu", name=f"block{i}_a")(x)
        y = layers.Conv2D(c, 3, padding="same", name=f"block{i}_b")(y)
        x = layers.Add()([x, y])
    last = r
    if config.stage2:
        x = layers.Conv2D(4 * config.stage2, 3, padding="same", activation="relu", name="up_a")(x)
        x = PixelShuffle(2)(x)
        for i in range(config.stage2_convs):
            x = layers.Conv2D(config.stage2, 3, padding="same", activation="relu",
                              name="up_b" if i == 0 else f"up_b{i}")(x)
        last = r // 2
    x = layers.Conv2D(3 * last * last, 3, padding="same", name="subpixel")(x)
    base = layers.UpSampling2D(r, interpolation="bilinear")(image)
    out = layers.Add()([PixelShuffle(last)(x), base])
    return keras.Model(image, out, name=f"student_{r}x")
