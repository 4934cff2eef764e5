"""A resumable training run under TensorFlow: ``keras.Model.fit`` on a ``GAN``, in a run directory
(``gan.rundir``: options, checkpoints, sample grids, history and loss plot), with TensorBoard logs.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from gan.config import TrainOptions
from gan.data import load_folder, make_dataset
from gan.model import GAN
from gan.rundir import RunDir
from gan.runtime import bf16_is_fast, tensorflow_machine
from gan.schedule import LearningRate
from gan.styles import load_pretrained

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
        self.run_dir = RunDir(run_dir)
        self.options = options if options is not None else self.run_dir.load_options()
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
        self.run_dir.start(o, tensorflow_machine())
        set_precision(o.mixed_precision)
        if o.mixed_precision and not bf16_is_fast():
            log.warning("bfloat16 mixed precision is emulated on this machine (no GPU, and the CPU has "
                        "neither AMX nor AVX512-BF16): training runs several times slower than in "
                        "float32; train without --bf16")
        keras.utils.set_random_seed(o.seed)
        self.strategy = make_strategy(o.strategy)
        with self.strategy.scope():
            self.gan = GAN(o.model)
            self.gan.compile()
            self.gan.build_all()
        # A resumed run with a g_anchor penalty needs its starting weights again, as the anchor.
        if o.init_from and (self.run_dir.latest_checkpoint() is None or self.gan.anchor_generator is not None):
            self._init_from(Path(o.init_from))
        step = self.run_dir.resume(self.gan)
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
        info = load_pretrained(self.gan, source)
        self.fresh_head = bool(info is not None and self.gan.config.g_head and not info.config.g_head)
        if self.gan.anchor_generator is not None:
            self.gan.anchor_generator.set_weights(self.gan.generator.get_weights())

    @property
    def checkpoint_dir(self) -> Path:
        """Where the run's checkpoints are (``RunDir.checkpoint_dir``)."""
        return self.run_dir.checkpoint_dir

    @property
    def step(self) -> int:
        """The step the model has trained to."""
        return int(self.gan.g_optimizer.iterations.numpy())

    # -- outputs -------------------------------------------------------------------------------
    def save(self) -> Path:
        """Checkpoint the current step (once: a second call at the same step is free)."""
        return self.run_dir.save_checkpoint(self.gan)

    def record(self, step: int, metrics: dict) -> None:
        """A line of the history, and the same metrics in TensorBoard."""
        self.run_dir.record(step, metrics)
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.run_dir.logs_dir))
        with self._writer.as_default(step=step):
            for k, v in metrics.items():
                tf.summary.scalar(k, v)

    def write_samples(self) -> Path:
        """The fixed sample seeds' grid, in the run directory and in TensorBoard."""
        path, picture = self.run_dir.write_samples(self.gan)
        if self._writer is not None:
            step = self.step
            with self._writer.as_default(step=step):
                tf.summary.image("samples", np.asarray(picture)[None], step=step)
        return path

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> str:
        """Train until ``options.steps``; returns ``"done"`` or ``"interrupted"`` (Ctrl-C/SIGTERM).

        Either way the newest state is in a checkpoint, so running again resumes it.
        """
        start = self.setup()
        o = self.options
        if self.run_dir.finished(start):
            return "done"
        images, self.data_stats = load_folder(o.data, o.model.image_size + o.crop_margin, o.max_images)
        log.info("data: %s", self.data_stats.summary())
        if start == 0 and self.fresh_head:
            self.gan.fit_head_colour(images)
            log.info("style head: colours fitted to the data")
        # The global batch: under tf.distribute, fit splits each batch across the replicas.
        dataset = make_dataset(images, o.batch_size, o.model.image_size, o.crop_margin, seed=o.seed + start)
        callback = _RunCallback(self)

        def train(bar) -> None:
            self.bar = bar  # the callback moves it on
            step = start
            while step < o.steps:
                epoch = step // o.steps_per_epoch
                n = min(o.steps_per_epoch - step % o.steps_per_epoch, o.steps - step)
                self.gan.fit(dataset, epochs=epoch + 1, initial_epoch=epoch, steps_per_epoch=n,
                             callbacks=[callback], verbose=0, shuffle=False)
                step = self.step
                if step % o.steps_per_epoch == 0 or step >= o.steps:
                    self._end_of_epoch()

        try:
            return self.run_dir.session(start, train, self.save, self.progress_bar)
        finally:
            self.bar = None

    def _end_of_epoch(self) -> None:
        self.save()
        path = self.write_samples()
        self.run_dir.plot_losses()
        if self._writer is not None:
            self._writer.flush()
        if self.on_epoch is not None:
            self.on_epoch(self.step, path)
