"""GAN losses. Each returns per-example losses; the trainer averages them over the global batch.

The seed's losses are binary cross-entropy from logits:
    L_D = -E[log D(x)] - E[log(1 - D(G(z)))]
    L_G = -E[log D(G(z))]        (the non-saturating generator loss)
"""

from __future__ import annotations

import tensorflow as tf


def bce_d_loss(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tf.Tensor:
    """Per-example -log D(x) - log(1 - D(G(z))), computed stably from logits."""
    real = tf.nn.sigmoid_cross_entropy_with_logits(tf.ones_like(real_logits), real_logits)
    fake = tf.nn.sigmoid_cross_entropy_with_logits(tf.zeros_like(fake_logits), fake_logits)
    return tf.reshape(real + fake, [-1])


def bce_g_loss(fake_logits: tf.Tensor) -> tf.Tensor:
    """Per-example -log D(G(z))."""
    return tf.reshape(tf.nn.sigmoid_cross_entropy_with_logits(tf.ones_like(fake_logits), fake_logits), [-1])


def hinge_d_loss(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tf.Tensor:
    """Per-example max(0, 1 - D(x)) + max(0, 1 + D(G(z)))."""
    return tf.reshape(tf.nn.relu(1.0 - real_logits) + tf.nn.relu(1.0 + fake_logits), [-1])


def hinge_g_loss(fake_logits: tf.Tensor) -> tf.Tensor:
    """Per-example -D(G(z))."""
    return tf.reshape(-fake_logits, [-1])


LOSSES = {"bce": (bce_d_loss, bce_g_loss), "hinge": (hinge_d_loss, hinge_g_loss)}


def colour_histogram_distance(fake: tf.Tensor, real: tf.Tensor, projections: int = 8,
                              pixels: int = 8192) -> tf.Tensor:
    """Sliced Wasserstein-1 distance between the pixel colours of two equally sized image batches.

    ``pixels`` random pixels of each batch (all of a smaller one) are projected on a few random
    colour directions (new ones each call) and sorted; the mean gap between the sorted lists is the
    distance. It is zero when the two batches hold the same colours in the same proportions,
    wherever the pixels are, so it teaches a style's tones (a manga set's four grays) without
    touching its layout. The sample keeps it cheap: sorting all 262,144 pixels of a 64-image batch
    took 0.2 s a step on 2 CPU cores, nearly as long as the rest of the step; 8,192 take 7 ms.
    """
    directions = tf.math.l2_normalize(tf.random.normal((3, projections)), axis=0)

    def sorted_projections(images: tf.Tensor) -> tf.Tensor:
        colours = tf.reshape(tf.cast(images, tf.float32), (-1, 3))
        count = tf.shape(colours)[0]
        picked = tf.cond(count > pixels, lambda: tf.random.uniform((pixels,), maxval=count, dtype=tf.int32),
                         lambda: tf.range(count))
        projected = tf.matmul(tf.gather(colours, picked), directions)
        return tf.sort(tf.transpose(projected), axis=-1)

    return tf.reduce_mean(tf.abs(sorted_projections(fake) - sorted_projections(real)))
