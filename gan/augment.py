"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) for data-efficient GAN training.

The same random transforms are applied to real and generated images before the discriminator, and
gradients flow through them to the generator, so the discriminator cannot memorise a small data set
while the generator still learns the un-augmented distribution.
"""

from __future__ import annotations

import tensorflow as tf

from gan.config import parse_policy


def _brightness(x: tf.Tensor) -> tf.Tensor:
    return x + (tf.random.uniform([tf.shape(x)[0], 1, 1, 1], dtype=x.dtype) - 0.5)


def _saturation(x: tf.Tensor) -> tf.Tensor:
    mean = tf.reduce_mean(x, axis=3, keepdims=True)
    return (x - mean) * (tf.random.uniform([tf.shape(x)[0], 1, 1, 1], dtype=x.dtype) * 2) + mean


def _contrast(x: tf.Tensor) -> tf.Tensor:
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    return (x - mean) * (tf.random.uniform([tf.shape(x)[0], 1, 1, 1], dtype=x.dtype) + 0.5) + mean


def _translation(x: tf.Tensor, ratio: float = 0.125) -> tf.Tensor:
    # Shift by up to ratio * size pixels with zero fill, as one gather per image.
    n, h, w = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
    sh = tf.cast(tf.cast(h, tf.float32) * ratio + 0.5, tf.int32)
    sw = tf.cast(tf.cast(w, tf.float32) * ratio + 0.5, tf.int32)
    ty = tf.random.uniform([n, 1, 1], -sh, sh + 1, dtype=tf.int32)
    tx = tf.random.uniform([n, 1, 1], -sw, sw + 1, dtype=tf.int32)
    gy, gx = tf.meshgrid(tf.range(h), tf.range(w), indexing="ij")
    yy = gy[None] + ty
    xx = gx[None] + tx
    valid = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    yy = tf.clip_by_value(yy, 0, h - 1)
    xx = tf.clip_by_value(xx, 0, w - 1)
    batch = tf.broadcast_to(tf.range(n)[:, None, None], tf.shape(yy))
    out = tf.gather_nd(x, tf.stack([batch, yy, xx], axis=-1))
    return out * tf.cast(valid, x.dtype)[..., None]


def _cutout(x: tf.Tensor, ratio: float = 0.5) -> tf.Tensor:
    n, h, w = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
    ch = tf.cast(tf.cast(h, tf.float32) * ratio + 0.5, tf.int32)
    cw = tf.cast(tf.cast(w, tf.float32) * ratio + 0.5, tf.int32)
    cy = tf.random.uniform([n, 1, 1], 0, h + (1 - ch % 2), dtype=tf.int32)
    cx = tf.random.uniform([n, 1, 1], 0, w + (1 - cw % 2), dtype=tf.int32)
    gy, gx = tf.meshgrid(tf.range(h), tf.range(w), indexing="ij")
    inside = (tf.abs(gy[None] - cy) * 2 < ch) & (tf.abs(gx[None] - cx) * 2 < cw)
    return x * tf.cast(~inside, x.dtype)[..., None]


# The names are gan.config.DIFFAUGMENT_POLICIES; gan.jax_trainer has the same transforms in JAX.
POLICIES = {
    "color": (_brightness, _saturation, _contrast),
    "translation": (_translation,),
    "cutout": (_cutout,),
}


def diff_augment(x: tf.Tensor, policy: str) -> tf.Tensor:
    """Apply the policy's transforms to a batch of images in [-1, 1]."""
    for name in parse_policy(policy):
        for fn in POLICIES[name]:
            x = fn(x)
    return x
