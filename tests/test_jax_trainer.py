"""The JAX-backend trainer: the same run directory and checkpoints as the TensorFlow trainer, the same
losses and DiffAugment transforms."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO

# One sample grid per run, at its last step (each grid recomputes the EMA generator's BatchNorm
# statistics over thousands of faces); a checkpoint every 2 steps.
TINY = ["--set", "g_channels=8", "--set", "d_channels=8", "--batch-size", "4", "--steps-per-epoch", "4",
        "--checkpoint-every", "2", "--no-progress"]


def _train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training", "train", *args], cwd=REPO, capture_output=True,
                          text=True)


def test_jax_run_resumes_under_tensorflow_and_back_and_exports(tmp_path, image_folder):
    from gan import checkpoint as ckpt
    from gan.config import TrainOptions
    from gan.model import GAN
    from gan.trainer import Trainer

    run = tmp_path / "run"
    out = _train(str(run), "--backend", "jax", "--data", str(image_folder), "--steps", "4", "--crop-margin", "4",
                 "--set", "diffaugment=color,translation,cutout", "--set", "d_r1=0.01", "--set", "d_r1_every=2", "--lr-warmup-steps", "2", *TINY)
    assert out.returncode == 0, out.stderr
    assert "done at step 4 (16 images)" in out.stdout
    assert [p.name for p in ckpt.list_checkpoints(run / "checkpoints")] == ["step-000000002.npz", "step-000000004.npz"]
    assert (run / "samples" / "step-000000004.png").exists() and (run / "loss.png").exists()
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert history[-1]["step"] == 4 and "JAX" in history[-1]["hardware"]
    assert all(np.isfinite(history[-1][k]) for k in ("d_loss", "g_loss", "d_real", "d_fake"))
    compiled = Path(os.environ["XDG_CACHE_HOME"]) / "avatarbot" / "jax"
    assert list(compiled.glob("jit_block-*")), "the compiled training block is kept for the next run"

    # TensorFlow loads every variable of the JAX checkpoint (optimizer moments included) and goes on.
    options = TrainOptions.from_dict(json.loads((run / "options.json").read_text()))
    gan = GAN(options.model)
    gan.compile()
    assert ckpt.load_checkpoint(gan, run / "checkpoints" / "step-000000004.npz") == 4
    with np.load(run / "checkpoints" / "step-000000004.npz") as saved:
        assert np.array_equal(saved["ema_generator/0"], gan.ema_generator.weights[0].numpy())
        moments = [saved[k] for k in saved if k.startswith("g_optimizer/")]
    assert sum(float(np.abs(m).sum()) for m in moments if m.ndim) > 0  # Adam moments were trained
    options.steps = 6
    assert Trainer(run, options, progress_bar=False, log_every=1).run() == "done"
    assert ckpt.checkpoint_step(ckpt.latest_checkpoint(run / "checkpoints")) == 6
    last = json.loads((run / "history.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 6 and "cores" in last["hardware"] and "JAX" not in last["hardware"]

    # ...and JAX resumes TensorFlow's checkpoint.
    out = _train(str(run), "--backend", "jax", "--steps", "8", "--no-progress")
    assert out.returncode == 0, out.stderr
    assert "done at step 8" in out.stdout

    from gan.inference import AvatarGenerator
    from gan.styles import export_run

    folder = export_run(run, "jaxstyle", tmp_path / "weights")
    style = json.loads((folder / "style.json").read_text())
    assert style["training"]["steps"] == 8 and "JAX" in style["training"]["hardware"]
    images = AvatarGenerator.load(folder).generate([1, 2])
    assert images.shape == (2, 64, 64, 3) and images.std() > 0


# Raises Ctrl-C just after the third compiled block returns, before the trainer keeps its result: where
# a signal lands when the accelerator runs ahead of Python.
_INTERRUPT_AS_A_BLOCK_RETURNS = """
import os, sys
os.environ["KERAS_BACKEND"] = "jax"
import gan.jax_trainer as jt

make_block = jt.JaxTrainer._make_block

def interrupted_after_third_block(self):
    block, calls = make_block(self), []

    def run(*args):
        result = block(*args)
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return result
    return run

jt.JaxTrainer._make_block = interrupted_after_third_block
from training.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_an_interrupt_as_a_block_returns_loses_nothing_saved(tmp_path, image_folder):
    from gan import checkpoint as ckpt

    run = tmp_path / "run"
    out = subprocess.run([sys.executable, "-c", _INTERRUPT_AS_A_BLOCK_RETURNS, "train", str(run), "--backend", "jax",
                          "--data", str(image_folder), "--steps", "8", "--crop-margin", "0", *TINY],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # The third block's result never reached the trainer: the state before it is still whole and saved.
    assert "interrupted at step 4 (16 images)" in out.stdout
    latest = ckpt.latest_checkpoint(run / "checkpoints")
    assert ckpt.checkpoint_step(latest) == 4
    with np.load(latest) as saved:  # every network and optimizer array, readable (resuming is tested above)
        assert {k.split("/")[0] for k in saved} >= {"generator", "discriminator", "g_optimizer", "ema_generator"}
        assert all(np.isfinite(saved[k]).all() for k in saved)


def test_jax_backend_refuses_what_it_cannot_train(tmp_path, image_folder):
    out = _train(str(tmp_path / "run"), "--backend", "jax", "--data", str(image_folder), "--preset", "seed", *TINY)
    assert out.returncode == 2
    assert "the JAX backend does not train the seed preset; use the TensorFlow backend" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("loss", ["bce", "hinge"])
def test_jax_losses_equal_the_tensorflow_ones(loss):
    from gan.jax_trainer import _losses
    from gan.losses import LOSSES

    rng = np.random.default_rng(0)
    real, fake = rng.normal(0, 3, (8, 1)).astype("float32"), rng.normal(0, 3, (8, 1)).astype("float32")
    tf_d, tf_g = LOSSES[loss]
    jax_d, jax_g = _losses(loss)
    np.testing.assert_allclose(np.asarray(jax_d(real, fake)), tf_d(real, fake).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(jax_g(fake)), tf_g(fake).numpy(), rtol=1e-5, atol=1e-6)


def test_jax_diffaugment_shifts_and_cuts_as_tensorflows_does():
    import jax

    from gan.jax_trainer import diff_augment

    rng = np.random.default_rng(1)
    x = rng.uniform(0.1, 1.0, (16, 64, 64, 3)).astype("float32")  # no zeros of its own
    shifted = np.asarray(diff_augment(jax.random.PRNGKey(0), x, "translation"))
    moves = set()
    for src, out in zip(x, shifted):
        padded = np.pad(src, ((8, 8), (8, 8), (0, 0)))
        found = [(dy, dx) for dy in range(-8, 9) for dx in range(-8, 9)
                 if np.array_equal(padded[8 + dy:72 + dy, 8 + dx:72 + dx], out)]
        assert len(found) == 1  # a shift of at most 8 pixels with zero fill
        moves.add(found[0])
    assert len(moves) > 8  # each image draws its own shift

    cut = np.asarray(diff_augment(jax.random.PRNGKey(1), x, "cutout"))
    for src, out in zip(x, cut):
        hole = (out == 0).all(axis=-1)
        ys, xs = np.nonzero(hole)
        assert 0 < hole.sum() <= 32 * 32 and hole.sum() == (np.ptp(ys) + 1) * (np.ptp(xs) + 1)  # one rectangle
        assert np.array_equal(out[~hole], src[~hole])

    coloured = np.asarray(diff_augment(jax.random.PRNGKey(2), x, "color"))
    assert coloured.shape == x.shape and not np.allclose(coloured, x)
    with pytest.raises(ValueError, match="unknown DiffAugment policy 'blur'"):
        diff_augment(jax.random.PRNGKey(3), x, "blur")
