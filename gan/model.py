"""``GAN(keras.Model)``: both networks, their optimizers and the adversarial ``train_step``."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from gan.augment import diff_augment, parse_policy
from gan.config import GANConfig
from gan.losses import LOSSES, colour_histogram_distance
from gan.networks import HEAD_COLOUR, HEAD_PALETTE, HEAD_PREFIX, build_generator, build_networks


class GAN(keras.Model):
    """A generator/discriminator pair trained with ``fit``.

    One generator forward pass per step serves both updates, as in the seed's ``train_step``:
    the discriminator sees the real batch and the generated batch (each through DiffAugment when
    the config asks for it), and both losses are taken under their own gradient tape.
    ``ema_generator`` (when ``ema_decay > 0``) holds an exponential moving average of the
    generator's weights, updated by ``update_ema`` after each step.
    """

    def __init__(self, config: GANConfig, **kwargs) -> None:
        super().__init__(**kwargs)
        self.config = config
        parse_policy(config.diffaugment)  # fail at build time on a bad policy, not mid-run
        self.generator, self.discriminator, self.ema_generator = build_networks(config)
        # The starting generator, frozen, for the g_anchor penalty (weights set by the trainer).
        self.anchor_generator = build_generator(config) if config.g_anchor > 0 else None
        if self.anchor_generator is not None:
            self.anchor_generator.trainable = False
        self.d_loss_fn, self.g_loss_fn = LOSSES[config.loss]
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.real_score_tracker = keras.metrics.Mean(name="d_real")  # mean sigmoid(D(x))
        self.fake_score_tracker = keras.metrics.Mean(name="d_fake")  # mean sigmoid(D(G(z)))
        self._ema_fn = None
        # The sub-networks are built; without this, fit() under tf.distribute would try to build
        # the GAN by calling it on an image batch, which is not the generator's input.
        self.built = True

    def compile(self, d_optimizer: keras.optimizers.Optimizer | None = None,
                g_optimizer: keras.optimizers.Optimizer | None = None, **kwargs) -> None:
        """Set both optimizers; by default Adam with the config's learning rates and betas."""
        super().compile(**kwargs)
        c = self.config
        self.d_optimizer = d_optimizer or keras.optimizers.Adam(c.d_lr, beta_1=c.beta1, beta_2=c.beta2)
        self.g_optimizer = g_optimizer or keras.optimizers.Adam(c.g_lr, beta_1=c.beta1, beta_2=c.beta2)

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return [self.d_loss_tracker, self.g_loss_tracker, self.real_score_tracker, self.fake_score_tracker]

    def call(self, z: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.generator(z, training=training)

    def sample_latents(self, n: tf.Tensor) -> tf.Tensor:
        return tf.random.normal((n, self.config.latent_dim))

    def train_step(self, data: tf.Tensor) -> dict[str, tf.Tensor]:
        real = tf.cast(data, tf.float32)
        z = self.sample_latents(tf.shape(real)[0])
        policy = self.config.diffaugment
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake = self.generator(z, training=True)
            real_in = diff_augment(real, policy) if policy else real
            fake_in = diff_augment(fake, policy) if policy else fake
            d_training = self.config.d_batch_stats
            real_logits, r1 = self._real_logits_and_r1(real_in, d_training)
            fake_logits = self.discriminator(fake_in, training=d_training)
            d_per_example = self.d_loss_fn(real_logits, fake_logits) + r1
            g_per_example = self.g_loss_fn(fake_logits)
            if self.config.g_hist > 0:
                g_per_example += self.config.g_hist * colour_histogram_distance(fake, real)
            if self.anchor_generator is not None:
                source = self.anchor_generator(z, training=False)
                g_per_example += self.config.g_anchor * coarse_luminance_l1(
                    fake, source, standardize=self.config.g_anchor_standardize)
            # Sum over the global batch / global batch size: right for one device and for
            # tf.distribute, where gradients of every replica are summed.
            d_loss = tf.nn.compute_average_loss(d_per_example)
            g_loss = tf.nn.compute_average_loss(g_per_example)
        d_vars = self.discriminator.trainable_variables
        g_vars = self.generator.trainable_variables
        d_grads = d_tape.gradient(d_loss, d_vars)
        g_grads = g_tape.gradient(g_loss, g_vars)
        self.d_optimizer.apply_gradients(zip(d_grads, d_vars))
        self.g_optimizer.apply_gradients(zip(g_grads, g_vars))
        self.d_loss_tracker.update_state(tf.reduce_mean(d_per_example))
        self.g_loss_tracker.update_state(tf.reduce_mean(g_per_example))
        self.real_score_tracker.update_state(tf.reduce_mean(tf.sigmoid(real_logits)))
        self.fake_score_tracker.update_state(tf.reduce_mean(tf.sigmoid(fake_logits)))
        return {m.name: m.result() for m in self.metrics}

    def _real_logits_and_r1(self, real_in: tf.Tensor, d_training: bool) -> tuple[tf.Tensor, tf.Tensor]:
        """D's logits on the real batch, and each example's R1 penalty (0 without one).

        With ``d_r1_every`` k > 1 the penalty is lazy (Karras et al. 2020, StyleGAN2): taken on
        every k-th step only, at k times the weight, so that its second-order gradient, the
        dearest part of a discriminator update, is paid once in k steps."""
        c = self.config
        if c.d_r1 <= 0:
            return self.discriminator(real_in, training=d_training), tf.zeros(tf.shape(real_in)[:1])

        def penalised() -> tuple[tf.Tensor, tf.Tensor]:
            with tf.GradientTape() as r1_tape:  # recorded by the caller's tape: the penalty trains D
                r1_tape.watch(real_in)
                logits = self.discriminator(real_in, training=d_training)
                logit_sum = tf.reduce_sum(logits)
            slopes = r1_tape.gradient(logit_sum, real_in)
            weight = 0.5 * c.d_r1 * c.d_r1_every
            return logits, weight * tf.reduce_sum(tf.square(slopes), axis=[1, 2, 3])

        if c.d_r1_every == 1:
            return penalised()

        def plain() -> tuple[tf.Tensor, tf.Tensor]:
            logits = self.discriminator(real_in, training=d_training)
            return logits, tf.zeros(tf.shape(logits)[:1])

        due = tf.equal(self.d_optimizer.iterations % c.d_r1_every, 0)
        return tf.cond(due, penalised, plain)

    def update_ema(self) -> None:
        """Move the EMA generator towards the live one (called once per step, cross-replica)."""
        if self.ema_generator is None:
            return
        if self._ema_fn is None:
            decay = self.config.ema_decay
            # Same build code, same order: pair weights by position. The EMA model is frozen, so
            # whether a weight is averaged is decided by the live generator.
            trainable = {id(w) for w in self.generator.trainable_weights}
            # Weights of frozen layers (a whole base generator under a style head) never change.
            frozen = {id(w) for layer in self.generator.layers if not layer.trainable for w in layer.weights}
            pairs = [(e, w, id(w) in trainable)
                     for e, w in zip(self.ema_generator.weights, self.generator.weights) if id(w) not in frozen]

            @tf.function
            def ema_step() -> None:
                for ema_w, w, averaged in pairs:
                    if averaged:
                        ema_w.assign(decay * ema_w + (1.0 - decay) * w)
                    else:  # BatchNorm statistics: copied, and recalibrated before use
                        ema_w.assign(w)

            self._ema_fn = ema_step
        self._ema_fn()

    def fit_head_colour(self, images: np.ndarray, samples: int = 256, seed: int = 0) -> None:
        """Set a fresh style head's colour layer to the linear map that gives the base generator's
        pixel colours the mean and covariance of ``images`` (uint8 training pictures): the
        Monge-Kantorovich colour transfer of Pitie and Kokaram (2007).

        Without it the discriminator's first lesson on a grayscale set was "the colours are wrong";
        it won outright within 200 steps, and its gradients then drove the faces to saturated
        yellow and blue instead of gray (benchmarks/style.py's manga set). The layer is not
        trained: a trainable one drifted from gray to saturated red within 400 steps. A palette
        head (``g_palette``) starts from the pictures' own colours (``palette_colours``)."""
        generator = self.generator
        base = keras.Model(generator.input, generator.get_layer(f"{HEAD_PREFIX}input").output)
        z = np.random.default_rng(seed).standard_normal((samples, self.config.latent_dim)).astype("float32")
        source = np.asarray(base(z, training=False), np.float64).reshape(-1, 3)
        target = images.reshape(-1, 3).astype(np.float64) / 127.5 - 1.0
        matrix, offset = colour_transfer(source, target)
        fitted = [generator.get_layer(HEAD_COLOUR)]
        fitted[0].set_weights([matrix.T.reshape(1, 1, 3, 3).astype("float32"), offset.astype("float32")])
        if self.config.g_palette:
            fitted.append(generator.get_layer(HEAD_PALETTE))
            colours = palette_colours(target, self.config.g_palette, seed=seed)
            fitted[1].set_weights([colours.astype("float32"), fitted[1].get_weights()[1]])
        for copy in (self.ema_generator, self.anchor_generator):
            if copy is not None:
                for layer in fitted:
                    copy.get_layer(layer.name).set_weights(layer.get_weights())

    def build_all(self) -> None:
        """Create every variable (networks and optimizer slots), so a checkpoint can be loaded."""
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)

    def inference_generator(self) -> keras.Model:
        """The generator to export or sample from: the EMA one when there is one."""
        return self.ema_generator if self.ema_generator is not None else self.generator


def coarse_luminance_l1(a: tf.Tensor, b: tf.Tensor, standardize: bool = False) -> tf.Tensor:
    """Per-example mean absolute difference of two image batches' luminance at 16x16.

    ``standardize``: compare each map after removing its own mean and contrast, so a face may take
    any brightness and contrast (a new style's tones) but not another layout."""
    def coarse(x: tf.Tensor) -> tf.Tensor:
        luma = tf.reduce_mean(tf.cast(x, tf.float32), axis=-1, keepdims=True)
        luma = tf.nn.avg_pool2d(luma, 4, 4, "VALID")
        if standardize:
            mean, var = tf.nn.moments(luma, axes=[1, 2, 3], keepdims=True)
            luma = (luma - mean) * tf.math.rsqrt(var + 1e-4)
        return luma
    return tf.reduce_mean(tf.abs(coarse(a) - coarse(b)), axis=[1, 2, 3])


def palette_colours(pixels: np.ndarray, size: int, samples: int = 20_000, iterations: int = 25,
                    seed: int = 0) -> np.ndarray:
    """``size`` colours that summarise ``pixels`` (N, 3): k-means (Lloyd) on a sample, started
    with k-means++ so that rare colours such as black ink get a centre of their own."""
    rng = np.random.default_rng(seed)
    x = pixels[rng.choice(len(pixels), min(samples, len(pixels)), replace=False)].astype(np.float64)
    centres = x[rng.integers(len(x))][None]
    for _ in range(1, size):
        d2 = _squared_distances(x, centres).min(axis=1)
        total = d2.sum()
        pick = rng.choice(len(x), p=d2 / total) if total > 0 else rng.integers(len(x))
        centres = np.concatenate([centres, x[pick][None]])
    for _ in range(iterations):
        nearest = _squared_distances(x, centres).argmin(axis=1)
        for k in range(size):
            members = x[nearest == k]
            if len(members):
                centres[k] = members.mean(axis=0)
    return centres


def drawn_in_flat_colours(images: np.ndarray, size: int = 8, tolerance: float = 0.1,
                          share: float = 0.85) -> bool:
    """Whether ``images`` (uint8, (N, H, W, 3)) are drawn in a few flat colours (screentone manga,
    cel shading, pixel art), so that a style head with a ``size``-colour palette suits them: at
    least ``share`` of their pixels lie within ``tolerance`` (in the [-1, 1] image range) of the
    palette fitted to them. Of 200 faces of anime-faces-64: 9% as they are, 52% in plain grayscale,
    66% in a teal-and-orange grade, and 100% in benchmarks/style.py's manga look (90% after JPEG at
    quality 75)."""
    pixels = images.reshape(-1, 3).astype(np.float64) / 127.5 - 1.0
    colours = palette_colours(pixels, size)
    sample = pixels[np.random.default_rng(1).choice(len(pixels), min(20_000, len(pixels)), replace=False)]
    gaps = np.sqrt(_squared_distances(sample, colours).min(axis=1))
    return bool((gaps <= tolerance).mean() >= share)


def _squared_distances(pixels: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """(N, K) squared distances between pixels (N, 3) and colours (K, 3)."""
    return ((pixels[:, None, :] - colours[None]) ** 2).sum(-1)


def colour_transfer(source: np.ndarray, target: np.ndarray, max_gain: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) such that ``A @ x + b`` for pixels ``x`` of ``source`` (N, 3) has the mean and
    covariance of ``target`` (M, 3): the linear Monge-Kantorovich solution, which moves colours as
    little as possible. A grayscale target gives a map onto the gray axis."""
    def sqrt_psd(m: np.ndarray) -> np.ndarray:
        w, v = np.linalg.eigh(m)
        return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T

    eps = 1e-4 * np.eye(3)  # keeps a flat channel (a gray set) from making the maths singular
    cov_s, cov_t = np.cov(source.T) + eps, np.cov(target.T) + eps
    root_s = sqrt_psd(cov_s)
    inv_root_s = np.linalg.inv(root_s)
    matrix = inv_root_s @ sqrt_psd(root_s @ cov_t @ root_s) @ inv_root_s
    # A nearly flat source would be stretched into saturated noise: at most 4x in any direction.
    u, gains, vt = np.linalg.svd(matrix)
    matrix = (u * np.minimum(gains, max_gain)) @ vt
    return matrix, target.mean(0) - matrix @ source.mean(0)
