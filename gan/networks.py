"""Generator and discriminator builders for both presets.

Both networks are built in code from a ``GANConfig``; nothing is ever deserialised from a file.
Under a ``mixed_bfloat16`` policy the layers compute in bfloat16 while the image output and the
logit stay float32, so losses and pixels are exact regardless of the policy.

Nothing here needs TensorFlow but the seed preset's dropout layer (which imports it when called), so
the improved networks also build under Keras' JAX backend (``gan.jax_trainer``).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from gan.config import GANConfig


def build_generator(config: GANConfig) -> keras.Model:
    """Latent vector (N, latent_dim) -> image (N, 64, 64, 3) in [-1, 1]."""
    if config.preset == "seed":
        return _seed_generator(config)
    return _improved_generator(config)


def build_discriminator(config: GANConfig) -> keras.Model:
    """Image (N, 64, 64, 3) in [-1, 1] -> one real/fake logit (N, 1)."""
    if config.preset == "seed":
        return _seed_discriminator(config)
    return _improved_discriminator(config)


def build_networks(config: GANConfig) -> tuple[keras.Model, keras.Model, keras.Model | None]:
    """A run's networks: the generator and discriminator with the config's frozen blocks, and the
    frozen EMA copy of the generator (starting equal to it) when ``ema_decay > 0``, else None."""
    generator, discriminator = build_generator(config), build_discriminator(config)
    for layer in discriminator_blocks(discriminator, config.d_frozen_layers):
        layer.trainable = False
    for layer in generator_blocks(generator, config.g_frozen_layers):
        layer.trainable = False
    ema = build_generator(config) if config.ema_decay > 0 else None
    if ema is not None:
        ema.trainable = False
        ema.set_weights(generator.get_weights())
    return generator, discriminator, ema


def _seed_generator(config: GANConfig) -> keras.Model:
    # The seed article's listing: Dense 8x8x256 -> ConvT 128 (stride 1) -> ConvT 64 (stride 2)
    # -> ConvT 3 (stride 2). Two stride-2 stages take 8x8 only to 32x32, although the article
    # claims 64x64 output. We add the one missing stride-2 stage (ConvT 32, 5x5, stride 2, same
    # BN + LeakyReLU pattern) before the output layer so the network really emits 64x64.
    c = config.g_channels  # 32 in the seed preset: widths 256, 128, 64, 32
    z = keras.Input((config.latent_dim,), name="z")
    x = layers.Dense(8 * 8 * c * 8, use_bias=False)(z)
    x = layers.BatchNormalization()(x)
    x = layers.LeakyReLU(0.3)(x)
    x = layers.Reshape((8, 8, c * 8))(x)
    for width, stride in ((c * 4, 1), (c * 2, 2), (c, 2)):  # (c, 2) is the missing stage
        x = layers.Conv2DTranspose(width, 5, strides=stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.LeakyReLU(0.3)(x)
    x = layers.Conv2DTranspose(3, 5, strides=2, padding="same", use_bias=False)(x)
    return keras.Model(z, _image(x, config), name="seed_generator")


def _seed_discriminator(config: GANConfig) -> keras.Model:
    c = config.d_channels  # 64 in the seed preset: widths 64, 128
    img = keras.Input((config.image_size, config.image_size, 3), name="image")
    x = img
    for i, width in enumerate((c, c * 2)):
        x = layers.Conv2D(width, 5, strides=2, padding="same", name=f"conv{i}")(x)
        x = layers.LeakyReLU(0.3)(x)
        x = BitsDropout(0.3)(x)
    x = layers.Flatten()(x)
    out = layers.Dense(1, dtype="float32", name="logit")(x)
    return keras.Model(img, out, name="seed_discriminator")


class BitsDropout(layers.Layer):
    """``keras.layers.Dropout`` with half the random-number work, for the seed discriminator.

    Keras draws one uniform float per activation; on this CPU that draw is most of a dropout layer's
    cost, and the seed discriminator's two dropout layers took about a fifth of a training step.
    Here each activation gets 16 random bits (a 32-bit draw serves two activations, split by a free
    bitcast) and is kept when they are at least ``round(rate * 65536)``: the drop probability is
    ``rate`` within 1/131072 (0.3 -> 0.300003), and kept values are scaled by 1 / (1 - rate) as
    Keras does. No weights, so checkpoints do not change.
    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError("dropout rate must be in [0, 1)")
        self.rate = rate
        self.seed = seed
        self.threshold = round(rate * 65536)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training: bool = False):
        if not training or self.threshold == 0:
            return inputs
        import tensorflow as tf  # the seed preset trains under TensorFlow only

        shape = tf.shape(inputs)
        count = inputs.shape.num_elements() or tf.reduce_prod(shape)  # static when traced in fit
        seed = tf.cast(self.seed_generator.next(), tf.int32)
        bits = tf.random.stateless_uniform(((count + 1) // 2,), seed, minval=None, maxval=None,
                                           dtype=tf.uint32)
        halves = tf.reshape(tf.bitcast(bits, tf.uint16), (-1,))
        if not (isinstance(count, int) and count % 2 == 0):  # an odd count draws one spare half
            halves = halves[:count]
        keep = tf.reshape(halves >= self.threshold, shape)
        return inputs * (tf.cast(keep, inputs.dtype) * tf.constant(1.0 / (1.0 - self.rate), inputs.dtype))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


def _improved_generator(config: GANConfig) -> keras.Model:
    # Radford et al. shape: 4x4 kernels with stride 2 cover every output pixel evenly, so there
    # is no checkerboard pattern (5x5/stride 2 overlaps unevenly).
    c = config.g_channels
    z = keras.Input((config.latent_dim,), name="z")
    x = layers.Dense(4 * 4 * c * 8, use_bias=False)(z)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Reshape((4, 4, c * 8))(x)
    for width in (c * 4, c * 2, c):
        x = layers.Conv2DTranspose(width, 4, strides=2, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    x = layers.Conv2DTranspose(3, 4, strides=2, padding="same")(x)
    return keras.Model(z, _image(x, config), name="improved_generator")


HEAD_PREFIX = "head_"
HEAD_COLOUR = f"{HEAD_PREFIX}colour"
HEAD_PALETTE = f"{HEAD_PREFIX}palette"


def _image(x, config: GANConfig):
    """The output image: tanh of the last layer, restyled by the style head when there is one.

    The style head (``g_head`` channels) adds to the base image a correction from three 3x3
    convolutions whose last layer starts at zero, then maps the colours with a fixed 1x1
    convolution fitted to the training pictures when a run starts (``GAN.fit_head_colour``), and
    clips to the image range. A fresh head thus draws the base generator's faces in the pictures'
    colours. With a 7x7-pixel reach it can restyle strokes, tones and texture but cannot move a
    face's eyes or hair (as few-shot fine-tuning of the whole generator did), and as the colour map
    comes last, a grayscale set's style stays gray whatever the correction does. With ``g_palette``
    the clipped image then goes through a ``Palette``: flat colours chosen per pixel."""
    if not config.g_head:
        return layers.Activation("tanh", dtype="float32", name="image")(x)
    base = layers.Activation("tanh", name=f"{HEAD_PREFIX}input")(x)
    h = base
    for i in range(2):
        h = layers.Conv2D(config.g_head, 3, padding="same", name=f"{HEAD_PREFIX}conv{i}")(h)
        h = layers.LeakyReLU(0.2, name=f"{HEAD_PREFIX}act{i}")(h)
    h_features = h
    h = layers.Conv2D(3, 3, padding="same", kernel_initializer="zeros", name=f"{HEAD_PREFIX}out")(h)
    x = layers.Add(name=f"{HEAD_PREFIX}add")([base, h])
    identity = keras.initializers.Constant(np.eye(3, dtype="float32").reshape(1, 1, 3, 3))
    x = layers.Conv2D(3, 1, kernel_initializer=identity, trainable=False, name=HEAD_COLOUR)(x)
    x = layers.Rescaling(1.0, offset=1.0, name=f"{HEAD_PREFIX}shift")(x)
    x = layers.ReLU(max_value=2.0, name=f"{HEAD_PREFIX}clip")(x)
    if not config.g_palette:
        return layers.Rescaling(1.0, offset=-1.0, dtype="float32", name="image")(x)
    x = layers.Rescaling(1.0, offset=-1.0, dtype="float32", name=f"{HEAD_PREFIX}unshift")(x)
    choice = layers.Conv2D(config.g_palette, 3, padding="same", kernel_initializer="zeros",
                           name=f"{HEAD_PREFIX}choice")(h_features)
    x = Palette(config.g_palette, dtype="float32", name=HEAD_PALETTE)([x, choice])
    return layers.Activation("linear", dtype="float32", name="image")(x)


class Palette(layers.Layer):
    """Draws each pixel as a soft choice among ``size`` flat colours (weights, fitted to the
    training pictures by ``GAN.fit_head_colour``): the nearest colour to the pixel's value, shifted
    by per-colour logits from the head's features. Flat tones (manga screentones, cel shading) are
    otherwise out of reach: the clip made black and white flat, and every mid-gray came out a
    smooth ramp."""

    def __init__(self, size: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.size = size

    def build(self, input_shape) -> None:
        ramp = np.repeat(np.linspace(-1.0, 1.0, self.size, dtype="float32")[:, None], 3, axis=1)
        self.colours = self.add_weight(shape=(self.size, 3), initializer=keras.initializers.Constant(ramp),
                                       name="colours")
        # Softmax sharpness over squared distances: exp(3) = 20 makes colours 0.5 apart (in [-1, 1])
        # a near-hard choice away from their midpoint, yet lets gradients through.
        self.log_sharpness = self.add_weight(shape=(), initializer=keras.initializers.Constant(3.0),
                                             name="log_sharpness")

    def call(self, inputs: list):
        image, choice = inputs
        distance = ops.sum(ops.square(image[..., None, :] - self.colours), axis=-1)
        weights = ops.softmax(choice - ops.exp(self.log_sharpness) * distance, axis=-1)
        return ops.einsum("nhwk,kc->nhwc", weights, self.colours)

    def get_config(self) -> dict:
        return {**super().get_config(), "size": self.size}


def _improved_discriminator(config: GANConfig) -> keras.Model:
    c = config.d_channels
    img = keras.Input((config.image_size, config.image_size, 3), name="image")
    x = img
    spectral = config.d_norm == "spectral"
    for i, width in enumerate((c, c * 2, c * 4, c * 8)):
        conv = layers.Conv2D(width, 4, strides=2, padding="same", use_bias=i == 0 or spectral,
                             name=None if spectral else f"conv{i}")
        if spectral:  # SNGAN: a 1-Lipschitz D without batch statistics
            x = layers.SpectralNormalization(conv, name=f"conv{i}")(x)
        else:
            x = conv(x)
            if i > 0:  # Radford: no BatchNorm on the input layer
                x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.LeakyReLU(0.2)(x)
    x = layers.Flatten()(x)
    out = layers.Dense(1, dtype="float32", name="logit")(x)
    return keras.Model(img, out, name="improved_discriminator")


def discriminator_blocks(discriminator: keras.Model, count: int) -> list[keras.layers.Layer]:
    """The layers of the first ``count`` conv blocks (conv and its BatchNorm), for freezing."""
    names = {f"conv{i}" for i in range(count)} | {f"bn{i}" for i in range(count)}
    return [layer for layer in discriminator.layers if layer.name in names]


def base_generator_layers(generator: keras.Model) -> list[keras.layers.Layer]:
    """The generator's layers without its style head, in order."""
    return [layer for layer in generator.layers if not layer.name.startswith(HEAD_PREFIX)]


def generator_blocks(generator: keras.Model, count: int) -> list[keras.layers.Layer]:
    """The layers of the first ``count`` generator blocks, for freezing.

    A block starts at a layer with a kernel (the Dense input layer, then each transposed
    convolution) and holds what follows it (BatchNorm, activation). Found by position, so the
    layer names of saved weights do not matter.
    """
    blocks: list[keras.layers.Layer] = []
    index = -1
    for layer in base_generator_layers(generator):
        if isinstance(layer, (layers.Dense, layers.Conv2DTranspose)):
            index += 1
        if 0 <= index < count:
            blocks.append(layer)
    return blocks


def recalibrate_batchnorm(generator: keras.Model, latent_dim: int, batches: int = 20,
                          batch_size: int = 128, seed: int = 0, frozen_blocks: int = 0) -> None:
    """Recompute the moving statistics of every BatchNorm layer for the current weights, but those of
    the first ``frozen_blocks`` blocks (``generator_blocks``, a run's ``g_frozen_layers``).

    The default, 2,560 faces, is what both an export and a run's sample grids use, so a grid shows the
    exported generator; each channel's statistics average over every pixel of those faces too.

    An EMA of the weights does not come with matching BatchNorm statistics, so inference would use
    the statistics of a different network. Running fresh latents through the generator in training
    mode with a cumulative momentum sets each moving mean/variance to the average over batches.

    Frozen blocks kept their weights and statistics while the rest trained, and the layers after them
    learnt on those statistics; with the whole base frozen under a style head nothing is left to do,
    which spares a style job a forward pass of 2,560 faces at every sample grid and at its export.
    """
    frozen = {id(layer) for layer in generator_blocks(generator, frozen_blocks)}
    bns = [layer for layer in generator.layers
           if isinstance(layer, keras.layers.BatchNormalization) and id(layer) not in frozen]
    if not bns:
        return
    # A frozen BatchNorm layer (the EMA generator is frozen) ignores training=True and never updates
    # its statistics, so each layer is unfrozen for the duration.
    saved = [(bn.momentum, bn.trainable) for bn in bns]
    rng = np.random.default_rng(seed)
    try:
        for bn in bns:
            bn.trainable = True
        for i in range(batches):
            for bn in bns:
                bn.momentum = i / (i + 1.0)  # cumulative average: new = old*i/(i+1) + batch/(i+1)
            z = rng.standard_normal((batch_size, latent_dim)).astype("float32")
            generator(z, training=True)
    finally:
        for bn, (momentum, trainable) in zip(bns, saved):
            bn.momentum = momentum
            bn.trainable = trainable
