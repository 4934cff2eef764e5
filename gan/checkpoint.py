"""Training checkpoints: every variable of a run (networks, EMA, optimizer slots) in one ``.npz``.

A plain array archive (``allow_pickle=False``) is portable, cannot run code when loaded, and is
written to a temporary file then renamed, so a crash mid-save never leaves a broken checkpoint.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # any object with these networks and optimizers will do (gan.jax_trainer's too)
    from gan.model import GAN

log = logging.getLogger(__name__)

_NAME = re.compile(r"^step-(\d{9})\.npz$")
# The groups that hold the networks, without optimizer state: what fine-tuning and export load.
NETWORKS = ("generator", "discriminator", "ema_generator")


def _groups(gan: "GAN") -> dict[str, list]:
    groups = {
        "generator": gan.generator.weights,
        "discriminator": gan.discriminator.weights,
        "g_optimizer": gan.g_optimizer.variables,
        "d_optimizer": gan.d_optimizer.variables,
    }
    if gan.ema_generator is not None:
        groups["ema_generator"] = gan.ema_generator.weights
    return groups


def save_checkpoint(gan: "GAN", directory: str | os.PathLike, keep: int = 3,
                    keep_every: int = 0) -> Path:
    """Write ``step-<n>.npz`` for the current step; keep the newest ``keep`` (and every
    ``keep_every``-th step, when set) and delete older ones."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    step = int(gan.g_optimizer.iterations.numpy())
    arrays = {f"{name}/{i}": np.asarray(v.numpy()) for name, vs in _groups(gan).items()
              for i, v in enumerate(vs)}
    path = directory / f"step-{step:09d}.npz"
    tmp = directory / f".tmp-{step:09d}.npz"
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    for old in list_checkpoints(directory)[:-keep]:
        s = checkpoint_step(old)
        if not (keep_every and s % keep_every == 0) and old != path:
            old.unlink(missing_ok=True)
    log.info("saved checkpoint %s", path)
    return path


def save_once(gan: "GAN", directory: str | os.PathLike, keep_every: int = 0) -> Path:
    """``save_checkpoint`` unless the newest checkpoint is already of the current step (so a second
    call at the same step, say at an epoch's end that is also a checkpoint step, is free)."""
    latest = latest_checkpoint(directory)
    if latest is not None and checkpoint_step(latest) == int(gan.g_optimizer.iterations.numpy()):
        return latest
    return save_checkpoint(gan, directory, keep_every=keep_every)


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Checkpoints in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if _NAME.match(p.name))


def checkpoint_step(path: Path) -> int:
    """The training step a checkpoint was saved at (from its file name)."""
    return int(_NAME.match(path.name).group(1))


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The newest checkpoint in ``directory``, or None where there is none."""
    found = list_checkpoints(directory)
    return found[-1] if found else None


def load_checkpoint(gan: "GAN", path: str | os.PathLike, groups: tuple[str, ...] | None = None) -> int:
    """Restore ``gan`` from ``path`` (only ``groups`` if given); returns the restored step.

    Every array must match its variable's shape; otherwise nothing is half-loaded silently.
    """
    gan.build_all()
    with np.load(path, allow_pickle=False) as data:
        arrays = dict(data)
    targets = _groups(gan)
    for name in groups or tuple(targets):
        variables = targets.get(name)
        if variables is None:
            continue
        stored = sorted((k for k in arrays if k.startswith(name + "/")), key=lambda k: int(k.split("/")[1]))
        if not stored and name == "ema_generator":  # older run without EMA: start it from G
            gan.ema_generator.set_weights(gan.generator.get_weights())
            continue
        if len(stored) != len(variables):
            raise ValueError(f"checkpoint {path} does not match this model ({name}: "
                             f"{len(stored)} arrays, model has {len(variables)})")
        for key, var in zip(stored, variables):
            if tuple(arrays[key].shape) != tuple(var.shape):
                raise ValueError(f"checkpoint {path} does not match this model "
                                 f"({key}: {arrays[key].shape} vs {tuple(var.shape)})")
        for key, var in zip(stored, variables):
            var.assign(arrays[key])
    return int(gan.g_optimizer.iterations.numpy())
