"""Real-CUGAN's UpCunet (bilibili, MIT licence) in Keras: the 2x and 4x anime super-resolution networks.

Written from the published architecture (the layer list of the ncnn ``.param`` files of
``models-se``); the weights are converted from those files by ``avatarbot-train convert-cugan``.
The denoise variants (conservative, no-denoise, denoise 1x-3x) share one architecture per scale and
differ only in their weights.

Both scales are two U-Nets in a row. The first works at the input's resolution and ends in a
stride-2 transposed convolution, so the second refines at twice the resolution; each U-Net gates its
deeper features with squeeze-and-excitation blocks. Every convolution is unpadded ("valid"), so the
input is first mirrored outward by ``PREPADDING`` pixels, exactly as the reference pipeline does
(``realcugan-ncnn-vulkan``'s ``prepadding``), and the output comes out at exactly ``scale`` times
the input's size. The 2x network's output is the image itself; the 4x network predicts a residual
that is added to the nearest-neighbour enlargement of the input.

The model takes (N, H, W, 3) RGB in [0, 1], H and W even, and returns (N, sH, sW, 3) in [0, 1] before
clipping; :func:`to_uint8` rounds as the reference does. Nothing here needs TensorFlow.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

SCALES = (2, 4)
# Pixels mirrored onto each side before the unpadded convolutions (the reference's values).
PREPADDING = {2: 18, 4: 19}
NOISE_LEVELS = {2: ("conservative", "no-denoise", "denoise1x", "denoise2x", "denoise3x"),
                4: ("conservative", "no-denoise", "denoise3x")}
_SLOPE = 0.1  # every LeakyReLU in UpCunet


class ReflectPad(layers.Layer):
    """Mirror ``top/left`` pixels (and ``bottom/right``) outward, without repeating the edge pixel."""

    def __init__(self, pad: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pad = pad

    def call(self, x):
        p = self.pad
        return ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="reflect")

    def compute_output_shape(self, shape):
        grow = lambda n: None if n is None else n + 2 * self.pad  # noqa: E731
        return (shape[0], grow(shape[1]), grow(shape[2]), shape[3])

    def get_config(self):
        return {**super().get_config(), "pad": self.pad}


class PixelShuffle(layers.Layer):
    """(N, H, W, C*r*r) -> (N, rH, rW, C), channels grouped per output channel (PyTorch's order)."""

    def __init__(self, factor: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        r = self.factor
        shape = ops.shape(x)
        n, h, w, c = shape[0], shape[1], shape[2], x.shape[-1] // (r * r)
        x = ops.reshape(x, (n, h, w, c, r, r))
        x = ops.transpose(x, (0, 1, 4, 2, 5, 3))
        return ops.reshape(x, (n, h * r, w * r, c))

    def compute_output_shape(self, shape):
        r = self.factor
        grow = lambda n: None if n is None else n * r  # noqa: E731
        return (shape[0], grow(shape[1]), grow(shape[2]), shape[3] // (r * r))

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def _conv(x, filters: int, kernel: int = 3, stride: int = 1, act: bool = True, name: str = ""):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="valid", name=name)(x)
    return layers.LeakyReLU(_SLOPE)(x) if act else x


def _up(x, filters: int, name: str):
    """2x2 stride-2 transposed convolution + LeakyReLU: exactly doubles the size."""
    x = layers.Conv2DTranspose(filters, 2, strides=2, padding="valid", name=name)(x)
    return layers.LeakyReLU(_SLOPE)(x)


def _se(x, channels: int, name: str):
    """Squeeze-and-excitation: scale each channel by a gate computed from the global mean."""
    g = layers.GlobalAveragePooling2D(keepdims=True)(x)
    g = layers.Dense(channels // 8, activation="relu", name=f"{name}_squeeze")(g)
    g = layers.Dense(channels, activation="sigmoid", name=f"{name}_excite")(g)
    return layers.Multiply()([x, g])


def _unet1(x, out_channels: int):
    """The first U-Net: two levels, output at twice its input size minus the border it consumes."""
    x1 = _conv(_conv(x, 32, name="u1_conv1a"), 64, name="u1_conv1b")
    x2 = _conv(x1, 64, 2, 2, name="u1_down1")
    x2 = _conv(_conv(x2, 128, name="u1_conv2a"), 64, name="u1_conv2b")
    x2 = _se(x2, 64, "u1_se2")
    x2 = _up(x2, 64, "u1_up2")
    x = layers.Add()([layers.Cropping2D(4)(x1), x2])
    x3 = _conv(x, 64, name="u1_conv3")
    # The reference's 4x4 stride-2 transposed convolution with 3 px cropped from each side.
    out = layers.Conv2DTranspose(out_channels, 4, strides=2, padding="valid", name="u1_out")(x3)
    return layers.Cropping2D(3)(out)


def _unet2(x, out_channels: int):
    """The second U-Net: three levels with squeeze-and-excitation at each."""
    x1 = _conv(_conv(x, 32, name="u2_conv1a"), 64, name="u2_conv1b")
    x2 = _conv(x1, 64, 2, 2, name="u2_down1")
    x2 = _conv(_conv(x2, 64, name="u2_conv2a"), 128, name="u2_conv2b")
    x2 = _se(x2, 128, "u2_se2")
    x3 = _conv(x2, 128, 2, 2, name="u2_down2")
    x3 = _conv(_conv(x3, 256, name="u2_conv3a"), 128, name="u2_conv3b")
    x3 = _se(x3, 128, "u2_se3")
    x3 = _up(x3, 128, "u2_up3")
    x4 = layers.Add()([layers.Cropping2D(4)(x2), x3])
    x4 = _conv(_conv(x4, 64, name="u2_conv4a"), 64, name="u2_conv4b")
    x4 = _se(x4, 64, "u2_se4")
    x4 = _up(x4, 64, "u2_up4")
    x5 = layers.Add()([layers.Cropping2D(16)(x1), x4])
    x5 = _conv(x5, 64, name="u2_conv5")
    return _conv(x5, out_channels, act=False, name="u2_out")


def build_upcunet(scale: int) -> keras.Model:
    """UpCunet for ``scale`` 2 or 4: (N, H, W, 3) in [0, 1] -> (N, scale*H, scale*W, 3), H and W even.

    Its weighted layers, in the order the reference model stores them, are ``weight_order(scale)``.
    """
    if scale not in SCALES:
        raise ValueError(f"Real-CUGAN scale must be one of {SCALES}, not {scale}")
    image = keras.Input((None, None, 3), name="image")
    x = ReflectPad(PREPADDING[scale])(image)
    if scale == 2:
        # The first U-Net draws the 2x picture; the second refines its centre, a residual.
        coarse = _unet1(x, 3)
        fine = _unet2(coarse, 3)
        out = layers.Add()([layers.Cropping2D(20)(coarse), fine])
    else:
        # The first U-Net ends in 64 feature channels at 2x; the second refines them, and a final
        # convolution makes 2x2 sub-pixels of each, a residual on the nearest-neighbour 4x input.
        coarse = _unet1(x, 64)
        fine = _unet2(coarse, 64)
        feat = layers.Add()([fine, layers.Cropping2D(20)(coarse)])
        sub = layers.Cropping2D(1)(_conv(feat, 12, act=False, name="subpixel"))
        residual = PixelShuffle(2)(sub)
        out = layers.Add()([residual, layers.UpSampling2D(4, interpolation="nearest")(image)])
    return keras.Model(image, out, name=f"upcunet_{scale}x")


def weight_order(scale: int) -> list[str]:
    """The names of the weighted layers in the order the reference's weight file stores them."""
    def se(name: str) -> list[str]:
        return [f"{name}_squeeze", f"{name}_excite"]

    unet1 = ["u1_conv1a", "u1_conv1b", "u1_down1", "u1_conv2a", "u1_conv2b", *se("u1_se2"), "u1_up2",
             "u1_conv3", "u1_out"]
    unet2 = ["u2_conv1a", "u2_conv1b", "u2_down1", "u2_conv2a", "u2_conv2b", *se("u2_se2"), "u2_down2",
             "u2_conv3a", "u2_conv3b", *se("u2_se3"), "u2_up3", "u2_conv4a", "u2_conv4b", *se("u2_se4"),
             "u2_up4", "u2_conv5", "u2_out"]
    return unet1 + unet2 + (["subpixel"] if scale == 4 else [])


def to_uint8(images) -> np.ndarray:
    """Network output in [0, 1] -> uint8, rounding half up as the reference does."""
    return np.clip(np.floor(np.asarray(images, np.float32) * 255.0 + 0.5), 0, 255).astype(np.uint8)
