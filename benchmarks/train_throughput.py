"""Training throughput: our trainer against the seed article's training loop, same model, one run.

Both sides train the ``seed`` preset's networks (the article's DCGAN, with the stride-2 stage its
listing is missing) on the same real images at the same batch size:

* **ours**: ``gan.model.GAN`` trained with ``fit`` the way ``gan/trainer.py`` does it: the
  ``gan.data.make_dataset`` pipeline (random crop and flip on every step), bfloat16 mixed precision
  when the CPU has native bfloat16 (``--precision`` overrides), and a per-step callback doing what
  the trainer's does (EMA update, step counter, logs read back as floats).
* **seed**: ``seed_train_step`` below, a transcription of the seed article's loop (the TensorFlow
  DCGAN tutorial's structure) in float32, as the article trains, on the article's model listings
  transcribed in stock Keras layers (``make_generator_model``, ``make_discriminator_model``). The
  two sides compute the same functions; ours differ only in how they run (for example
  ``gan.networks.BitsDropout`` for ``Dropout(0.3)``).

Each side is warmed up (tracing) before timing. Then, ``--rounds`` times, the seed and ours each run
a couple of untimed steps and ``--steps`` timed ones, alternating so that both see the same machine
load. Throughput is images per second of steady-state training; the ratio ours/seed is the median
of the per-round ratios, against the goal of 1.5x.

Run from the repository root: ``python -m benchmarks.train_throughput [--steps N] [--rounds R]``.
"""

# ruff: noqa: E402 (benchmarks.common must be imported before TensorFlow; see the sys.path line)
from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import cpu_name, median, repo_path, table

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from gan.config import GANConfig
from gan.data import load_folder, make_dataset
from gan.model import GAN
from gan.runtime import cpu_has_native_bf16
from gan.styles import float32_policy
from gan.trainer import set_precision

GOAL = 1.5  # ours/seed images per second
DEFAULT_DATA = "../shared/data/anime-faces-64"
UNTIMED_STEPS = 2  # per round and side: absorbs iterator start-up (shuffle buffer fill)

# fit() warns that a tf.data dataset is not reshuffled by Keras; make_dataset shuffles it itself.
warnings.filterwarnings("ignore", message="`shuffle=True` was passed")


# --- The seed's training loop (the baseline) ----------------------------------------------------

def seed_train_step(generator: keras.Model, discriminator: keras.Model, BATCH_SIZE: int,  # noqa: N803
                    noise_dim: int) -> Callable[[tf.Tensor], None]:
    """The seed article's training step, transcribed (the TensorFlow DCGAN tutorial's structure).

    Binary cross-entropy from logits, L_D = real_loss + fake_loss, L_G on the fakes, two Adam(1e-4)
    optimizers, and a ``@tf.function`` step that draws its noise and takes both gradients under two
    tapes. Only the wrapping in a function is ours (to hand in the models and sizes); the body is
    the seed's.
    """
    cross_entropy = tf.keras.losses.BinaryCrossentropy(from_logits=True)

    def discriminator_loss(real_output, fake_output):
        real_loss = cross_entropy(tf.ones_like(real_output), real_output)
        fake_loss = cross_entropy(tf.zeros_like(fake_output), fake_output)
        total_loss = real_loss + fake_loss
        return total_loss

    def generator_loss(fake_output):
        return cross_entropy(tf.ones_like(fake_output), fake_output)

    generator_optimizer = tf.keras.optimizers.Adam(1e-4)
    discriminator_optimizer = tf.keras.optimizers.Adam(1e-4)

    @tf.function
    def train_step(images):
        noise = tf.random.normal([BATCH_SIZE, noise_dim])

        with tf.GradientTape() as gen_tape, tf.GradientTape() as disc_tape:
            generated_images = generator(noise, training=True)

            real_output = discriminator(images, training=True)
            fake_output = discriminator(generated_images, training=True)

            gen_loss = generator_loss(fake_output)
            disc_loss = discriminator_loss(real_output, fake_output)

        gradients_of_generator = gen_tape.gradient(gen_loss, generator.trainable_variables)
        gradients_of_discriminator = disc_tape.gradient(disc_loss, discriminator.trainable_variables)

        generator_optimizer.apply_gradients(zip(gradients_of_generator, generator.trainable_variables))
        discriminator_optimizer.apply_gradients(zip(gradients_of_discriminator, discriminator.trainable_variables))

    return train_step


def seed_dataset(train_images: np.ndarray, BUFFER_SIZE: int, BATCH_SIZE: int) -> tf.data.Dataset:  # noqa: N803
    """The seed's input pipeline: uint8 images normalised to [-1, 1], shuffled, batched."""
    train_images = train_images.astype("float32")
    train_images = (train_images - 127.5) / 127.5  # Normalize the images to [-1, 1]
    return tf.data.Dataset.from_tensor_slices(train_images).shuffle(BUFFER_SIZE).batch(BATCH_SIZE)


def seed_batches(dataset: tf.data.Dataset) -> Iterator[tf.Tensor]:
    """The seed's ``for epoch in range(epochs): for image_batch in dataset`` loop, without end."""
    while True:
        for image_batch in dataset:
            yield image_batch


def make_generator_model(noise_dim: int) -> keras.Model:
    """The seed article's generator listing in stock Keras layers, with the stride-2 stage it misses
    (``ConvT 32, 5x5, stride 2``; see ``gan.networks``) so that it really emits 64x64."""
    model = tf.keras.Sequential([keras.Input((noise_dim,))])
    model.add(layers.Dense(8 * 8 * 256, use_bias=False))
    model.add(layers.BatchNormalization())
    model.add(layers.LeakyReLU(0.3))
    model.add(layers.Reshape((8, 8, 256)))
    for width, stride in ((128, 1), (64, 2), (32, 2)):  # (32, 2) is the missing stage
        model.add(layers.Conv2DTranspose(width, (5, 5), strides=(stride, stride), padding="same", use_bias=False))
        model.add(layers.BatchNormalization())
        model.add(layers.LeakyReLU(0.3))
    model.add(layers.Conv2DTranspose(3, (5, 5), strides=(2, 2), padding="same", use_bias=False, activation="tanh"))
    return model


def make_discriminator_model() -> keras.Model:
    """The seed article's discriminator listing in stock Keras layers."""
    model = tf.keras.Sequential([keras.Input((64, 64, 3))])
    model.add(layers.Conv2D(64, (5, 5), strides=(2, 2), padding="same"))
    model.add(layers.LeakyReLU(0.3))
    model.add(layers.Dropout(0.3))
    model.add(layers.Conv2D(128, (5, 5), strides=(2, 2), padding="same"))
    model.add(layers.LeakyReLU(0.3))
    model.add(layers.Dropout(0.3))
    model.add(layers.Flatten())
    model.add(layers.Dense(1))
    return model


# --- Our trainer's path ---------------------------------------------------------------------------

@contextmanager
def precision(mixed: bool) -> Iterator[None]:
    """The global Keras dtype policy as ``gan.trainer`` sets it, reset to float32 afterwards."""
    set_precision(mixed)
    try:
        yield
    finally:
        set_precision(False)


class StepTimer(keras.callbacks.Callback):
    """Does per step what ``gan.trainer``'s callback does, and records when each step ended."""

    def __init__(self, gan: GAN) -> None:
        super().__init__()
        self.gan = gan
        self.ends: list[float] = []

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.gan.update_ema()
        int(self.gan.g_optimizer.iterations.numpy())
        {k: float(v) for k, v in (logs or {}).items()}
        self.ends.append(time.perf_counter())


def run_ours(gan: GAN, dataset: tf.data.Dataset, mixed: bool, steps: int, untimed: int) -> float:
    """Seconds taken by ``steps`` training steps of one ``gan.fit`` call, after ``untimed`` (>= 1)
    steps in the same call (so the call's set-up is not timed: the trainer amortises it over an epoch)."""
    timer = StepTimer(gan)
    with precision(mixed):
        gan.fit(dataset, epochs=1, steps_per_epoch=untimed + steps, callbacks=[timer], verbose=0)
    return timer.ends[-1] - timer.ends[untimed - 1]


def run_seed(train_step: Callable[[tf.Tensor], None], batches: Iterator[tf.Tensor], steps: int,
             untimed: int) -> float:
    """Seconds taken by ``steps`` calls of the seed's ``train_step``, after ``untimed`` ones."""
    for _ in range(untimed):
        train_step(next(batches))
    start = time.perf_counter()
    for _ in range(steps):
        train_step(next(batches))
    return time.perf_counter() - start


# --- The benchmark ---------------------------------------------------------------------------------

def load_images(folder: str, size: int, count: int) -> tuple[np.ndarray, str]:
    """``count`` uint8 images at ``size`` px from ``folder``, or random ones when it is missing."""
    path = repo_path(folder)
    if path.is_dir():
        images, stats = load_folder(path, size, count)
        return images, f"{stats.loaded} real images from {path}"
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8),
            f"{count} random images ({path} not found)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--steps", type=int, default=30, help="timed training steps per side and round")
    p.add_argument("--rounds", type=int, default=2, help="alternating seed/ours rounds")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per side before round 1 (tracing)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--images", type=int, default=4096, help="images loaded (cut to a multiple of the batch)")
    p.add_argument("--data", default=DEFAULT_DATA, help="image folder, relative to the repository root")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="ours: bfloat16 mixed precision when the CPU has native bfloat16 (auto), or forced")
    args = p.parse_args(argv)
    for name in ("steps", "rounds", "warmup", "batch_size", "images"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.images < args.batch_size:
        p.error("--images must be at least --batch-size")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mixed = cpu_has_native_bf16() if args.precision == "auto" else args.precision == "bf16"
    batch = args.batch_size
    config = GANConfig.preset_config("seed")
    size, margin = config.image_size, 4
    keras.utils.set_random_seed(0)

    loaded, source = load_images(args.data, size + margin, args.images)
    loaded = loaded[: len(loaded) // batch * batch]  # whole batches only: no retrace on a short one
    print(f"Training throughput: seed-preset DCGAN, batch {batch}, {args.steps} timed steps x {args.rounds} rounds")
    print(f"CPU: {cpu_name()}")
    print(f"data: {source}")
    print(f"ours: GAN.fit + make_dataset (crop {size + margin}->{size}, flip), "
          f"{'bfloat16 mixed precision' if mixed else 'float32'}")
    print("seed: the article's @tf.function train_step, float32, from_tensor_slices().shuffle().batch()")

    # Seed side: the article's listings in stock Keras layers, in float32; images centre-cropped to
    # 64x64 (the seed's augmentation is not run per step, which only spares the baseline work).
    with float32_policy():
        generator, discriminator = make_generator_model(config.latent_dim), make_discriminator_model()
    train_step = seed_train_step(generator, discriminator, batch, config.latent_dim)
    crop = loaded[:, margin // 2: margin // 2 + size, margin // 2: margin // 2 + size]
    batches = seed_batches(seed_dataset(crop, len(crop), batch))

    # Our side: built under the trainer's precision policy.
    with precision(mixed):
        gan = GAN(config)
        gan.compile()
        gan.build_all()
    dataset = make_dataset(loaded, batch, size, margin, seed=0)

    start = time.perf_counter()
    run_seed(train_step, batches, args.warmup, 0)
    seed_warm = time.perf_counter() - start
    start = time.perf_counter()
    with precision(mixed):
        gan.fit(dataset, epochs=1, steps_per_epoch=args.warmup, callbacks=[StepTimer(gan)], verbose=0)
    ours_warm = time.perf_counter() - start
    print(f"warm-up ({args.warmup} steps, tracing included): seed {seed_warm:.1f} s, ours {ours_warm:.1f} s\n")

    rows, ratios, seed_rates, our_rates = [], [], [], []
    for r in range(1, args.rounds + 1):
        seed_rate = args.steps * batch / run_seed(train_step, batches, args.steps, UNTIMED_STEPS)
        our_rate = args.steps * batch / run_ours(gan, dataset, mixed, args.steps, UNTIMED_STEPS)
        seed_rates.append(seed_rate)
        our_rates.append(our_rate)
        ratios.append(our_rate / seed_rate)
        rows.append([f"round {r}", f"{seed_rate:.1f}", f"{our_rate:.1f}", f"{ratios[-1]:.2f}x"])
    ratio = median(ratios)
    rows.append(["median", f"{median(seed_rates):.1f}", f"{median(our_rates):.1f}", f"{ratio:.2f}x"])
    print(table(["", "seed img/s", "ours img/s", "ours/seed"], rows))
    verdict = "PASS" if ratio >= GOAL else "FAIL"
    print(f"\ngoal: ours/seed >= {GOAL:.1f}x -> {verdict}")
    print(f"train_throughput: ours {median(our_rates):.0f} img/s "
          f"({'bf16' if mixed else 'fp32'}) vs seed {median(seed_rates):.0f} img/s (fp32), batch {batch}: "
          f"{ratio:.2f}x (goal {GOAL:.1f}x) {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
