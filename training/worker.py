"""The worker process of a custom-style job: ``python -m training.worker JOB_DIR [--watch-stdin]
[--priority idle|normal]``.

``training.jobs.JobManager`` starts one per running job, so a crash in TensorFlow can never take
the bot down. The job folder holds ``spec.json`` (written by the manager), ``data/`` (the ingested
pictures), ``run/`` (a ``gan.trainer`` run directory: options, checkpoints, samples) and, at the
end, ``export/<name>/`` (the style folder, verified and registered by the manager).

The worker fine-tunes the default style (``JobSpec.init_from``) with the few-shot settings in
``JobSpec.model_overrides``; if ``run/`` already has a checkpoint it resumes from it instead.
With ``JobSpec.gate`` set, the exported style is then measured against the pictures and the
default style (``training.gate``) before the worker reports it exported.

It speaks ``training.protocol``: the spec in, one JSON event per line on stdout and nothing else
(everything else printed, by Python or TensorFlow, goes to stderr, which the manager keeps in
``worker.log``), and an exit status: ``EXIT_DONE`` when the style is exported, ``EXIT_INTERRUPTED``
when SIGTERM (or Ctrl-C) stopped it after saving a checkpoint, ``EXIT_ERROR`` on an error. With
``--watch-stdin`` the worker stops the same way when its stdin closes, i.e. when the bot that started
it has died.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from gan.runtime import tensorflow_environment
from training import protocol
from training.errors import Message, N_
from training.protocol import EXIT_DONE, EXIT_ERROR, EXIT_INTERRUPTED, JobSpec
from training.priority import run_in_background

log = logging.getLogger(__name__)

LOCK_WAIT_S = 120.0
# Training is batch work sharing the CPU with the bot: its event loop runs at nice 0 and its avatar
# threads at 10 (bot.service.WORKER_NICE), so chat replies stay quick while a style trains.
TRAINING_NICE = 15


class WorkerError(Exception):
    """A reason the job cannot run, reported to the chat as one line (``message``, to translate)."""

    def __init__(self, template: str, **params: Any) -> None:
        self.message = Message(template, params)
        super().__init__(str(self.message))


class Reporter:
    """Writes the protocol's event lines; silent once the parent has gone away."""

    def __init__(self, stream: IO[str], interval_s: float) -> None:
        self.stream = stream
        self.interval_s = interval_s
        self._last = 0.0
        self._first: tuple[float, int] | None = None

    def send(self, event: str, **fields: Any) -> None:
        try:
            self.stream.write(protocol.event_line(event, **fields))
            self.stream.flush()
        except (OSError, ValueError):  # broken pipe: the bot died; keep saving checkpoints anyway
            pass

    def progress(self, step: int, total: int, metrics: dict) -> None:
        """Report a step, at most every ``interval_s`` seconds (always the last one), with an ETA."""
        now = time.monotonic()
        if self._first is None:
            self._first = (now, step)  # the first step includes tracing: the rate starts after it
        if step < total and now - self._last < self.interval_s:
            return
        self._last = now
        t0, s0 = self._first
        eta = (total - step) * (now - t0) / (step - s0) if step > s0 else None
        self.send(protocol.PROGRESS, step=step, total=total, eta=None if eta is None else round(eta, 1),
                  metrics={k: round(float(v), 4) for k, v in metrics.items()})


def _protocol_stream() -> IO[str]:
    """A private copy of stdout for the protocol; fd 1 then points at stderr, so stray prints
    (from Python or C++) cannot corrupt it."""
    sys.stdout.flush()
    stream = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return stream


def _interrupt(signum: int, frame: Any) -> None:  # noqa: ARG001
    raise KeyboardInterrupt


def _watch_stdin() -> None:
    """Stop like SIGTERM when stdin reaches EOF: the process that started us has died."""
    def watch() -> None:
        fd = sys.stdin.fileno()
        try:
            while os.read(fd, 4096):  # unbuffered: no lock held when the interpreter exits
                pass
        except OSError:
            pass
        log.warning("parent process gone: stopping after a checkpoint")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


def _lock(job_dir: Path, wait_s: float) -> IO[bytes] | None:
    """Hold ``job_dir/worker.lock`` so that two workers never share a run directory (a worker of a
    dead bot may still be saving its checkpoint). A no-op where ``fcntl`` does not exist."""
    try:
        import fcntl
    except ImportError:
        return None
    fh = open(job_dir / "worker.lock", "wb")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fh
        except BlockingIOError:
            if time.monotonic() > deadline:
                fh.close()
                raise WorkerError(N_("another worker is still running this job")) from None
            time.sleep(0.5)


def train_options(spec: JobSpec):
    """The ``TrainOptions`` of a new fine-tuning run described by the job's spec."""
    from gan.config import GANConfig, TrainOptions
    from gan.runtime import bf16_is_fast
    from gan.styles import StyleError, read_style

    try:
        base = read_style(spec.init_from)
    except StyleError as exc:
        log.error("default style %s: %s", spec.init_from, exc)
        raise WorkerError(N_("the default style cannot be fine-tuned: its files are missing or corrupt")) from None
    overrides = dict(spec.model_overrides)
    if spec.flat_colour_overrides and _drawn_in_flat_colours(spec.data_dir, base.config.image_size):
        log.info("the pictures are drawn in a few flat colours: the style head draws in a palette")
        overrides.update(spec.flat_colour_overrides)
    model = GANConfig.from_dict({**base.config.to_dict(), **overrides})
    steps = int(spec.steps)
    return TrainOptions(
        data=spec.data_dir, model=model, batch_size=int(spec.batch_size), steps=steps,
        steps_per_epoch=max(1, min(int(spec.sample_every), steps)),
        checkpoint_every=max(1, int(spec.checkpoint_every)),
        mixed_precision=bf16_is_fast() if spec.mixed_precision is None else bool(spec.mixed_precision),
        init_from=str(spec.init_from), seed=int(spec.seed), sample_seeds=list(range(16)),
        lr_warmup_steps=int(spec.lr_warmup_steps),
        lr_decay_start=None if spec.lr_decay_start is None else int(spec.lr_decay_start))


def _drawn_in_flat_colours(data_dir: str, size: int, sample: int = 256) -> bool:
    """Whether the job's pictures are drawn in a few flat colours, judged on ``sample`` of them (the
    trainer decodes them all later)."""
    from gan.data import load_folder
    from gan.model import drawn_in_flat_colours

    images, _ = load_folder(data_dir, size, max_images=sample)
    return len(images) > 0 and drawn_in_flat_colours(images)


def run(job_dir: Path, reporter: Reporter) -> int:
    """Train (or resume) and export the job's style; returns the exit status."""
    from gan import checkpoint as ckpt
    from gan.styles import export_run
    from gan.trainer import Trainer

    spec = JobSpec.read(job_dir)
    run_dir = Path(spec.run_dir)
    resuming = (run_dir / "options.json").is_file()
    options = None if resuming else train_options(spec)
    trainer = Trainer(run_dir, options, progress_bar=False, on_progress=reporter.progress,
                      on_epoch=lambda step, path: reporter.send(protocol.SAMPLE, step=step, path=str(path)))
    latest = ckpt.latest_checkpoint(trainer.checkpoint_dir)
    reporter.send(protocol.START, step=ckpt.checkpoint_step(latest) if latest else 0, total=trainer.options.steps)
    status = trainer.run()
    if status != "done":
        log.info("stopped at step %d; the next run resumes from its checkpoint", trainer.step)
        return EXIT_INTERRUPTED
    reporter.send(protocol.EXPORTING)
    n_images = len(list(Path(spec.data_dir).iterdir()))
    folder = export_run(run_dir, spec.name, spec.export_dir, include_discriminator=False,
                        description=f"custom style fine-tuned from the default style on {n_images} pictures")
    if spec.gate is not None:
        from training import gate

        reporter.send(protocol.MEASURING)
        gate_spec = gate.GateSpec.from_dict(spec.gate)
        try:
            figures = gate.measure(folder, gate_spec.baseline or spec.init_from, spec.data_dir, gate_spec)
        except Exception as exc:  # noqa: BLE001 - the trained style is kept, held back for an admin to judge
            log.exception("the quality gate could not measure the style")
            figures = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        gate.record(folder, figures)
    reporter.send(protocol.EXPORTED, path=str(folder))
    return EXIT_DONE


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m training.worker JOB_DIR [--watch-stdin] [--priority idle|normal]``."""
    parser = argparse.ArgumentParser(prog="python -m training.worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job_dir", type=Path)
    parser.add_argument("--watch-stdin", action="store_true", help="stop when stdin closes (parent died)")
    parser.add_argument("--priority", choices=("idle", "normal"), default="idle",
                        help="idle (default): train on the cores nothing else wants; normal: as the caller runs")
    args = parser.parse_args(argv)
    reporter = Reporter(_protocol_stream(), 0.0)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tensorflow_environment()
    signal.signal(signal.SIGTERM, _interrupt)  # until the trainer installs its own, same behaviour
    if args.priority == "idle":
        for failure in run_in_background(TRAINING_NICE):
            log.debug("worker priority partly unchanged: %s", failure)
    if args.watch_stdin:
        _watch_stdin()
    lock = None
    try:
        reporter.interval_s = float(JobSpec.read(args.job_dir).progress_interval_s)
        lock = _lock(args.job_dir, LOCK_WAIT_S)
        return run(args.job_dir, reporter)
    except KeyboardInterrupt:
        log.info("interrupted: the next run resumes from the last checkpoint")
        return EXIT_INTERRUPTED
    except WorkerError as exc:
        log.error("%s", exc)
        reporter.send(protocol.ERROR, message=str(exc), reason=exc.message.to_dict())
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - one line for the chat, the traceback in the log
        log.exception("training failed")
        reason = Message(N_("internal error during training ({detail})"), {"detail": type(exc).__name__})
        reporter.send(protocol.ERROR, message=str(reason), reason=reason.to_dict())
        return EXIT_ERROR
    finally:
        if lock is not None:
            lock.close()


if __name__ == "__main__":
    sys.exit(main())
