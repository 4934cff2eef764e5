"""A training run's directory: its layout, and the bookkeeping both trainers share.

Layout of a run directory::

    options.json          the TrainOptions of the run (written at each start, read on resume)
    checkpoints/          step-<n>.npz, the newest few kept (see gan.checkpoint)
    samples/              step-<n>.png grids from fixed seeds, and latest.png
    history.jsonl         one line of metrics every ``log_every`` steps, naming the machine
    loss.png              the loss curves so far
    logs/                 TensorBoard event files (the TensorFlow trainer's)

The TensorFlow trainer (``gan.trainer``) and the JAX one (``gan.jax_trainer``) write a run through
``RunDir`` and keep only their model and its step, so either resumes the other's run; export,
evaluation and the train CLI read a run through it too. Nothing here imports Keras or TensorFlow at
module level: the JAX trainer runs where there is no TensorFlow, and reading a run needs neither.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from gan import checkpoint as ckpt
from gan.config import TrainOptions
from gan.runtime import sigterm_as_interrupt

if TYPE_CHECKING:  # any object with these networks and optimizers will do (gan.jax_trainer's too)
    from PIL import Image

    from gan.model import GAN

log = logging.getLogger(__name__)

# Every 10th epoch's checkpoint is kept for good, besides the newest few.
KEEP_EVERY_EPOCHS = 10


def sample_faces(nets: "GAN", seeds: list[int]) -> np.ndarray:
    """uint8 faces of ``seeds`` from the generator that would be exported: the EMA one, with its
    BatchNorm statistics recalibrated, when the run has one."""
    from gan.imaging import to_uint8
    from gan.latents import latents_for_seeds
    from gan.networks import recalibrate_batchnorm

    g = nets.ema_generator if nets.ema_generator is not None else nets.generator
    if nets.ema_generator is not None:
        recalibrate_batchnorm(g, nets.config.latent_dim, frozen_blocks=nets.config.g_frozen_layers)
    z = latents_for_seeds(seeds, nets.config.latent_dim)
    return to_uint8(np.asarray(g(z, training=False)))


class RunDir:
    """One run directory: where each file of a run lies, and reading and writing them.

    Reading a run needs only the path. A training session calls ``start`` first, which writes the
    session's options and names its machine; ``record``, ``save_checkpoint`` and ``write_samples``
    use them.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.options: TrainOptions | None = None  # the session's, from start()
        self.hardware = ""  # the session's machine, named in each history line

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- layout ----------------------------------------------------------------------------------
    @property
    def options_file(self) -> Path:
        return self.path / TrainOptions.FILE

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def samples_dir(self) -> Path:
        return self.path / "samples"

    @property
    def history_file(self) -> Path:
        return self.path / "history.jsonl"

    @property
    def loss_plot(self) -> Path:
        return self.path / "loss.png"

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    # -- reading a run ---------------------------------------------------------------------------
    def is_run(self) -> bool:
        """Whether a run was started here (its options are saved)."""
        return self.options_file.is_file()

    def load_options(self) -> TrainOptions:
        """The run's saved options (``FileNotFoundError`` where there are none, ``ValueError`` where
        they do not parse)."""
        return TrainOptions.load(self.path)

    def checkpoints(self) -> list[Path]:
        """The run's checkpoints, oldest first."""
        return ckpt.list_checkpoints(self.checkpoint_dir)

    def latest_checkpoint(self) -> Path | None:
        """The newest checkpoint, which a resumed run continues from; None before the first."""
        return ckpt.latest_checkpoint(self.checkpoint_dir)

    def checkpoint(self, step: int | None = None) -> Path | None:
        """The checkpoint of ``step`` (the newest one when None), or None where there is none."""
        if step is None:
            return self.latest_checkpoint()
        return next((p for p in self.checkpoints() if ckpt.checkpoint_step(p) == step), None)

    def history(self) -> list[dict[str, Any]]:
        """The lines of ``history.jsonl``, oldest first (none before the first is written)."""
        if not self.history_file.exists():
            return []
        return [json.loads(line) for line in self.history_file.read_text().splitlines() if line.strip()]

    def trained_on(self) -> str | None:
        """The machine that trained the run: the newest one its history names (both trainers name
        theirs), or None for a run from before they did."""
        named = [row.get("hardware") for row in self.history()]
        named = [n for n in named if n]
        return named[-1] if named else None

    def wall_time(self) -> float | None:
        """Training wall time from the history, leaving out pauses between resumed sessions."""
        times = [row["time"] for row in self.history()]
        gaps = [b - a for a, b in zip(times, times[1:])]
        if not gaps:
            return None
        typical = sorted(gaps)[len(gaps) // 2]
        # A pause is a gap both far longer than usual and over 5 minutes: on a GPU, where 50 steps
        # take a fraction of a second, saving a checkpoint and a sample grid is 20 usual gaps but
        # still training.
        return round(sum(g for g in gaps if g < max(20 * typical, 300.0)), 1)

    # -- a training session ----------------------------------------------------------------------
    def start(self, options: TrainOptions, hardware: str) -> None:
        """Begin (or resume) a training session on ``hardware``: create the directory and write
        ``options`` (a resumed run may have changed some, e.g. its number of steps)."""
        self.path.mkdir(parents=True, exist_ok=True)
        options.save(self.path)
        self.options = options
        self.hardware = hardware

    def resume(self, nets: "GAN") -> int:
        """Load the newest checkpoint into ``nets``; returns its step (0 where there is none)."""
        latest = self.latest_checkpoint()
        if latest is None:
            return 0
        step = ckpt.load_checkpoint(nets, latest)
        log.info("resumed from %s (step %d)", latest, step)
        return step

    def finished(self, step: int) -> bool:
        """Whether a session starting at ``step`` has nothing left to train (logged)."""
        if step < self.options.steps:
            return False
        log.info("run already complete at step %d", step)
        return True

    def save_checkpoint(self, nets: "GAN") -> Path:
        """Checkpoint the current step (once: a second call at the same step is free)."""
        o = self.options
        return ckpt.save_once(nets, self.checkpoint_dir,
                              keep_every=o.keep_every or o.steps_per_epoch * KEEP_EVERY_EPOCHS)

    def record(self, step: int, metrics: dict[str, float]) -> None:
        """Append one line of ``metrics`` at ``step`` to the history, with the images seen, the
        time and the machine."""
        line = {"step": step, "images": step * self.options.batch_size, "time": time.time(),
                "hardware": self.hardware, **metrics}
        with open(self.history_file, "a") as fh:
            fh.write(json.dumps(line) + "\n")

    def write_samples(self, nets: "GAN") -> tuple[Path, "Image.Image"]:
        """Save the grid of the sample seeds' faces as ``samples/step-<n>.png`` and
        ``samples/latest.png``; returns the step's file and the grid."""
        from gan.imaging import grid

        picture = grid(sample_faces(nets, self.options.sample_seeds))
        self.samples_dir.mkdir(exist_ok=True)
        path = self.samples_dir / f"step-{int(nets.g_optimizer.iterations.numpy()):09d}.png"
        picture.save(path)
        picture.save(self.samples_dir / "latest.png")
        return path, picture

    def plot_losses(self) -> Path | None:
        """Redraw ``loss.png`` from the history (None while there is none)."""
        from gan.plots import plot_history

        return plot_history(self.history_file, self.loss_plot)

    def session(self, start: int, loop: Callable[[Any], None], save: Callable[[], Path],
                progress_bar: bool = True) -> str:
        """Run a trainer's ``loop`` from step ``start``, given a progress bar of images seen (None
        without one), until it returns or Ctrl-C or SIGTERM stops it.

        Returns ``"done"``, or ``"interrupted"`` once ``save`` has checkpointed the newest state:
        either way running again resumes the run.
        """
        o = self.options
        bar = None
        if progress_bar:
            from tqdm import tqdm

            bar = tqdm(total=o.steps * o.batch_size, initial=start * o.batch_size, unit="img",
                       unit_scale=True, dynamic_ncols=True, desc="train")
        status = "done"
        try:
            with sigterm_as_interrupt():
                loop(bar)
        except KeyboardInterrupt:
            status = "interrupted"
        finally:
            if bar is not None:
                bar.close()
        if status == "interrupted":
            path = save()
            log.warning("interrupted at step %d: checkpoint saved", ckpt.checkpoint_step(path))
        return status
