"""A resumable training run: one run directory, its options as JSON, checkpoints, samples, logs.

Layout of a run directory::

    options.json          the TrainOptions of the run (written once, read on resume)
    checkpoints/          step-<n>.npz, the newest few kept (see gan.checkpoint)
    samples/              step-<n>.png grids from fixed seeds, and latest.png
    history.jsonl         one line of metrics every ``log_every`` steps
    loss.png              the loss curves so far
    logs/                 TensorBoard event files
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from gan import checkpoint as ckpt
from gan.config import TrainOptions
from gan.data import load_folder, make_dataset
from gan.imaging import grid, to_uint8
from gan.latents import latents_for_seeds
from gan.model import GAN
from gan.networks import recalibrate_batchnorm
from gan.runtime import bf16_is_fast, sigterm_as_interrupt, tensorflow_machine
from gan.schedule import LearningRate

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, dict], None]  # (step, total_steps, metrics)


def make_strategy(name: str) -> tf.distribute.Strategy:
    """``default`` (one device), ``mirrored`` (every GPU, else every logical CPU), or
    ``multiworker`` (the cluster described by the TF_CONFIG environment variable)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy 'multiworker' needs the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}; choose default, mirrored or multiworker")


def set_precision(mixed: bool) -> None:
    """bfloat16 compute with float32 weights (``mixed``), or plain float32."""
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if mixed else "float32")


def sample_grid(gan: GAN, seeds: list[int]) -> np.ndarray:
    """uint8 images of the fixed sample seeds from the generator that would be exported."""
    g = gan.inference_generator()
    if g is gan.ema_generator:
        recalibrate_batchnorm(g, gan.config.latent_dim, batches=20, batch_size=128)
    z = latents_for_seeds(seeds, gan.config.latent_dim)
    return to_uint8(g(z, training=False).numpy())


class _RunCallback(keras.callbacks.Callback):
    """Per-step bookkeeping: EMA, checkpoints, metrics history, TensorBoard, progress."""

    def __init__(self, trainer: "Trainer") -> None:
        super().__init__()
        self.t = trainer

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self.t.set_learning_rates()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        t = self.t
        t.gan.update_ema()
        step = int(t.gan.g_optimizer.iterations.numpy())
        logs = {k: float(v) for k, v in (logs or {}).items()}
        t.last_metrics = logs
        if t.bar is not None:
            t.bar.update(t.options.batch_size)
            if step % 10 == 0:
                t.bar.set_postfix(step=step, d=f"{logs.get('d_loss', 0):.3f}", g=f"{logs.get('g_loss', 0):.3f}")
        if step % t.log_every == 0:
            t.record(step, logs)
        if step % t.options.checkpoint_every == 0:
            t.save()
        if t.on_progress is not None:
            t.on_progress(step, t.options.steps, logs)


class Trainer:
    """Runs (or resumes) the training described by ``run_dir/options.json``."""

    def __init__(self, run_dir: str | os.PathLike, options: TrainOptions | None = None,
                 progress_bar: bool = True, on_progress: ProgressFn | None = None,
                 on_epoch: Callable[[int, Path], None] | None = None, log_every: int = 50) -> None:
        self.run_dir = Path(run_dir)
        if options is None:
            options = TrainOptions.load(self.run_dir)
        self.options = options
        self.progress_bar = progress_bar
        self.on_progress = on_progress
        self.on_epoch = on_epoch
        self.log_every = log_every
        self.bar = None
        self.last_metrics: dict = {}
        self.gan: GAN | None = None
        self.data_stats = None
        self._writer = None
        self.fresh_head = False  # a style head new to this run: its colour layer is fitted to the data

    # -- setup ---------------------------------------------------------------------------------
    def setup(self) -> int:
        """Build the model (resuming from the newest checkpoint); returns the starting step."""
        o = self.options
        self.run_dir.mkdir(parents=True, exist_ok=True)
        o.save(self.run_dir)
        set_precision(o.mixed_precision)
        if o.mixed_precision and not bf16_is_fast():
            log.warning("bfloat16 mixed precision is emulated on this machine (no GPU, and the CPU has "
                        "neither AMX nor AVX512-BF16): training runs several times slower than in "
                        "float32; train without --bf16")
        keras.utils.set_random_seed(o.seed)
        self.strategy = make_strategy(o.strategy)
        self.hardware = tensorflow_machine()  # named in the history, for the model card
        with self.strategy.scope():
            self.gan = GAN(o.model)
            self.gan.compile()
            self.gan.build_all()
        latest = ckpt.latest_checkpoint(self.checkpoint_dir)
        # A resumed run with a g_anchor penalty needs its starting weights again, as the anchor.
        if o.init_from and (latest is None or self.gan.anchor_generator is not None):
            self._init_from(Path(o.init_from))
        step = 0
        if latest is not None:
            step = ckpt.load_checkpoint(self.gan, latest)
            log.info("resumed from %s (step %d)", latest, step)
        self.set_learning_rates()
        return step

    def set_learning_rates(self) -> None:
        """Set both optimizers' rates for the current step from the options' warm-up and decay.

        The rates stay plain optimizer variables, assigned before each step, so checkpoints are the
        same with or without a schedule and a resumed run may change it."""
        o, step = self.options, self.step
        for optimizer, base in ((self.gan.d_optimizer, o.model.d_lr), (self.gan.g_optimizer, o.model.g_lr)):
            optimizer.learning_rate.assign(LearningRate(base, o.lr_warmup_steps, o.lr_decay_start, o.steps)(step))

    def _init_from(self, source: Path) -> None:
        """Start from pretrained weights: a run directory's checkpoint or a style folder."""
        info = ckpt.load_pretrained(self.gan, source)
        self.fresh_head = bool(info is not None and self.gan.config.g_head and not info.config.g_head)
        if self.gan.anchor_generator is not None:
            self.gan.anchor_generator.set_weights(self.gan.generator.get_weights())

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def step(self) -> int:
        return int(self.gan.g_optimizer.iterations.numpy())

    # -- outputs -------------------------------------------------------------------------------
    def save(self) -> Path:
        """Checkpoint the current step (once: a second call at the same step is free)."""
        return ckpt.save_once(self.gan, self.checkpoint_dir, keep_every=self.options.steps_per_epoch * 10)

    def record(self, step: int, metrics: dict) -> None:
        line = {"step": step, "images": step * self.options.batch_size, "time": time.time(),
                "hardware": self.hardware, **metrics}
        with open(self.run_dir / "history.jsonl", "a") as fh:
            fh.write(json.dumps(line) + "\n")
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.run_dir / "logs"))
        with self._writer.as_default(step=step):
            for k, v in metrics.items():
                tf.summary.scalar(k, v)

    def write_samples(self) -> Path:
        step = self.step
        out = self.run_dir / "samples"
        out.mkdir(exist_ok=True)
        picture = grid(sample_grid(self.gan, self.options.sample_seeds))
        path = out / f"step-{step:09d}.png"
        picture.save(path)
        picture.save(out / "latest.png")
        if self._writer is not None:
            with self._writer.as_default(step=step):
                tf.summary.image("samples", np.asarray(picture)[None], step=step)
        return path

    def plot_losses(self) -> Path | None:
        from gan.plots import plot_history

        return plot_history(self.run_dir / "history.jsonl", self.run_dir / "loss.png")

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> str:
        """Train until ``options.steps``; returns ``"done"`` or ``"interrupted"`` (Ctrl-C/SIGTERM).

        Either way the newest state is in a checkpoint, so running again resumes it.
        """
        start = self.setup()
        o = self.options
        if start >= o.steps:
            log.info("run already complete at step %d", start)
            return "done"
        images, self.data_stats = load_folder(o.data, o.model.image_size + o.crop_margin, o.max_images)
        log.info("data: %s", self.data_stats.summary())
        if start == 0 and self.fresh_head:
            self.gan.fit_head_colour(images)
            log.info("style head: colours fitted to the data")
        # The global batch: under tf.distribute, fit splits each batch across the replicas.
        dataset = make_dataset(images, o.batch_size, o.model.image_size, o.crop_margin, seed=o.seed + start)
        callback = _RunCallback(self)
        if self.progress_bar:
            from tqdm import tqdm

            self.bar = tqdm(total=o.steps * o.batch_size, initial=start * o.batch_size, unit="img",
                            unit_scale=True, dynamic_ncols=True, desc="train")
        status = "done"
        try:
            with sigterm_as_interrupt():
                step = start
                while step < o.steps:
                    epoch = step // o.steps_per_epoch
                    n = min(o.steps_per_epoch - step % o.steps_per_epoch, o.steps - step)
                    self.gan.fit(dataset, epochs=epoch + 1, initial_epoch=epoch, steps_per_epoch=n,
                                 callbacks=[callback], verbose=0, shuffle=False)
                    step = self.step
                    if step % o.steps_per_epoch == 0 or step >= o.steps:
                        self._end_of_epoch(epoch)
        except KeyboardInterrupt:
            status = "interrupted"
            log.warning("interrupted at step %d: saving a checkpoint", self.step)
        finally:
            if self.bar is not None:
                self.bar.close()
                self.bar = None
        if status == "interrupted":
            self.save()
        return status

    def _end_of_epoch(self, epoch: int) -> None:
        self.save()
        path = self.write_samples()
        self.plot_losses()
        if self._writer is not None:
            self._writer.flush()
        if self.on_epoch is not None:
            self.on_epoch(self.step, path)
