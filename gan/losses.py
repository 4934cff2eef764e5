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
