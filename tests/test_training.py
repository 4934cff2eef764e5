"""Training: data pipeline, resumable runs, Ctrl-C, export, the train CLI, distribution, evaluation."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import INCEPTION_WEIGHTS, REPO, in_process_cli, make_image_folder, make_style, tiny_config


def _options(data, **kw):
    from gan.config import TrainOptions

    base = dict(data=str(data), model=tiny_config(), batch_size=4, steps=4, steps_per_epoch=2,
                checkpoint_every=2, sample_seeds=[0, 1, 2, 3])
    base.update(kw)
    return TrainOptions(**base)


def test_corrupt_files_in_training_folder_are_skipped_and_counted(tmp_path):
    from gan.data import load_folder, make_dataset

    folder = make_image_folder(tmp_path / "imgs" / "nested", 6)
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    (tmp_path / "imgs" / "notes.png").write_text("this is text, not a picture")
    Image.new("RGB", (90, 70), (10, 200, 30)).save(tmp_path / "imgs" / "wide.webp")
    Image.new("RGB", (50, 50), (200, 10, 30)).save(folder / "small.png")
    images, stats = load_folder(tmp_path / "imgs", 68)
    assert stats.loaded == 8 and images.shape == (8, 68, 68, 3)
    assert stats.skipped == {"corrupt or unreadable": 1, "not an image": 1}
    assert "8 images loaded" in stats.summary() and "1 skipped (not an image)" in stats.summary()
    batch = next(iter(make_dataset(images, 4, 64, 4)))
    assert batch.shape == (4, 64, 64, 3)
    assert -1.0 <= float(batch.numpy().min()) and float(batch.numpy().max()) <= 1.0


def test_training_folder_without_images_is_a_clear_error(tmp_path):
    from gan.data import load_folder

    (tmp_path / "x.jpg").write_text("nope")
    with pytest.raises(ValueError, match="no usable images"):
        load_folder(tmp_path)


def test_run_writes_samples_plot_logs_and_resumes_from_its_step(tmp_path, image_folder):
    from gan.trainer import Trainer

    run = tmp_path / "run"
    assert Trainer(run, _options(image_folder), progress_bar=False, log_every=1).run() == "done"
    assert (run / "options.json").exists()
    assert sorted(p.name for p in (run / "checkpoints").iterdir())[-1] == "step-000000004.npz"
    assert (run / "samples" / "step-000000004.png").exists() and (run / "loss.png").exists()
    assert list((run / "logs").iterdir())
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [1, 2, 3, 4]

    # Train longer: the same directory resumes at step 4, not from scratch.
    options = json.loads((run / "options.json").read_text())
    options["steps"] = 6
    from gan.config import TrainOptions

    trainer = Trainer(run, TrainOptions.from_dict(options), progress_bar=False, log_every=1)
    seen = []
    trainer.on_progress = lambda step, total, logs: seen.append(step)
    assert trainer.run() == "done"
    assert seen == [5, 6] and trainer.step == 6


def test_interrupt_saves_a_checkpoint_and_the_next_run_continues(tmp_path, image_folder):
    from gan.trainer import Trainer

    run = tmp_path / "run"

    def stop_at_3(step, total, logs):
        if step == 3:
            raise KeyboardInterrupt

    trainer = Trainer(run, _options(image_folder, steps=6, checkpoint_every=100), progress_bar=False,
                      on_progress=stop_at_3)
    assert trainer.run() == "interrupted"
    assert (run / "checkpoints" / "step-000000003.npz").exists()
    resumed = Trainer(run, progress_bar=False)  # options come from options.json
    assert resumed.setup() == 3
    assert resumed.run() == "done" and resumed.step == 6


def test_run_directory_saves_options_keeps_history_and_finds_the_checkpoint_to_resume(tmp_path, image_folder):
    """gan.rundir.RunDir, which both trainers write a run through and export reads it through."""
    from gan.model import GAN
    from gan.rundir import RunDir

    run = RunDir(tmp_path / "run")
    assert not run.is_run() and run.latest_checkpoint() is None and run.history() == []
    assert run.trained_on() is None and run.wall_time() is None
    options = _options(image_folder)
    run.start(options, "machine A")
    assert run.is_run() and run.options_file.read_text() == options.to_json()
    assert RunDir(run.path).load_options() == options
    run.record(2, {"d_loss": 0.5, "g_loss": 1.5})
    run.start(options, "machine B")  # resumed elsewhere
    run.record(4, {"d_loss": 0.25})
    rows = RunDir(run.path).history()
    assert [(r["step"], r["images"], r["hardware"]) for r in rows] == [(2, 8, "machine A"), (4, 16, "machine B")]
    assert list(rows[0]) == ["step", "images", "time", "hardware", "d_loss", "g_loss"] and rows[0]["g_loss"] == 1.5
    assert RunDir(run.path).trained_on() == "machine B"

    def built() -> GAN:
        gan = GAN(tiny_config())
        gan.compile()
        gan.build_all()
        return gan

    gan = built()
    for step in (1, 3):
        gan.g_optimizer.iterations.assign(step)
        run.save_checkpoint(gan)
    assert [p.name for p in run.checkpoints()] == ["step-000000001.npz", "step-000000003.npz"]
    assert run.checkpoint(1).name == "step-000000001.npz" and run.checkpoint(2) is None
    assert run.checkpoint() == run.latest_checkpoint() == run.checkpoint_dir / "step-000000003.npz"
    assert RunDir(run.path).resume(built()) == 3 and not run.finished(3) and run.finished(4)

    path, picture = run.write_samples(gan)
    assert path == run.samples_dir / "step-000000003.png" and (run.samples_dir / "latest.png").exists()
    assert picture.size[0] > 64 and run.plot_losses() == run.loss_plot and run.loss_plot.exists()

    def stopped(bar) -> None:
        raise KeyboardInterrupt

    gan.g_optimizer.iterations.assign(4)
    assert run.session(3, stopped, lambda: run.save_checkpoint(gan), progress_bar=False) == "interrupted"
    assert run.latest_checkpoint().name == "step-000000004.npz"


def test_a_run_keeps_the_checkpoints_of_its_keep_every_steps_for_later_evaluation(tmp_path, image_folder):
    """Recipes are compared at equal images seen: ``--keep-every`` keeps those steps' checkpoints,
    which the newest-three rule would delete, and resuming may change it."""
    from gan.model import GAN
    from gan.rundir import RunDir

    gan = GAN(tiny_config())
    gan.compile()
    gan.build_all()

    def saved(run: RunDir) -> list[int]:
        for step in range(1, 11):
            gan.g_optimizer.iterations.assign(step)
            run.save_checkpoint(gan)
        return [int(p.stem.split("-")[1]) for p in run.checkpoints()]

    kept = RunDir(tmp_path / "kept")
    kept.start(_options(image_folder, checkpoint_every=1, keep_every=4), "here")
    assert saved(kept) == [4, 8, 9, 10]
    plain = RunDir(tmp_path / "plain")  # the default: every 10 epochs of 2 steps
    plain.start(_options(image_folder, checkpoint_every=1), "here")
    assert saved(plain) == [8, 9, 10]


def test_train_cli_takes_keep_every_for_new_and_resumed_runs_and_refuses_what_cannot_be_kept(
        train_cli, tmp_path, image_folder):
    from gan.rundir import RunDir

    new = train_cli("train", str(tmp_path / "r"), "--data", str(image_folder), "--checkpoint-every", "250",
                    "--keep-every", "2500", "--dry-run")
    assert new.returncode == 0, new.stderr
    assert json.loads(new.stdout)["keep_every"] == 2500
    odd = train_cli("train", str(tmp_path / "r"), "--data", str(image_folder), "--checkpoint-every", "300",
                    "--keep-every", "1000", "--dry-run")
    assert odd.returncode == 2 and "--keep-every must be 0 or a multiple of --checkpoint-every (300)" in odd.stderr

    run = RunDir(tmp_path / "old")
    run.start(_options(image_folder, steps=100, lr_decay_start=60), "here")
    resumed = train_cli("train", str(run.path), "--keep-every", "20", "--dry-run")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["keep_every"] == 20 and json.loads(resumed.stdout)["steps"] == 100
    # Shortening a run below the step its learning rates start falling at is refused, not trained.
    short = train_cli("train", str(run.path), "--steps", "50", "--dry-run")
    assert short.returncode == 2 and "--lr-decay-start must be at least 0 and below --steps" in short.stderr


def test_the_same_train_command_again_resumes_and_another_model_is_refused(train_cli, tmp_path, image_folder):
    command = ["train", str(tmp_path / "r"), "--data", str(image_folder), "--steps", "2", "--steps-per-epoch", "1",
               "--batch-size", "4", "--set", "g_channels=8", "--set", "d_channels=8", "--set", "latent_dim=8"]
    assert train_cli(*command).returncode == 0
    again = train_cli(*command, "--steps", "3", "--dry-run")  # up-arrow, change the budget, enter
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["steps"] == 3 and json.loads(again.stdout)["model"]["d_channels"] == 8
    wider = train_cli(*command, "--set", "d_channels=16", "--dry-run")
    assert wider.returncode == 2 and "already holds a run with other options (preset/--set)" in wider.stderr
    other = train_cli(*command, "--preset", "seed", "--dry-run")
    assert other.returncode == 2 and "preset/--set" in other.stderr


def test_run_directory_and_checkpoints_import_neither_tensorflow_nor_styles():
    """The JAX trainer reads and writes runs where there is no TensorFlow, and gan.styles (export)
    depends on gan.checkpoint, never the other way."""
    script = ("import sys, gan.rundir, gan.checkpoint; "
              "loaded = {'tensorflow', 'keras', 'gan.styles'} & set(sys.modules); assert not loaded, loaded")
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


def test_learning_rate_schedule_warms_up_holds_and_decays_to_zero():
    from gan.trainer import LearningRate

    # Up from zero over 2 steps, flat until step 4, then down to zero at step 8.
    rates = [LearningRate(1.0, warmup=2, decay_start=4, end=8)(s) for s in range(10)]
    assert rates == pytest.approx([0.5, 1, 1, 1, 1, 0.75, 0.5, 0.25, 0, 0])
    assert LearningRate(1.0)(123) == 1.0


def test_learning_rates_warm_up_decay_to_zero_and_keep_their_curve_across_a_resume(tmp_path, image_folder):
    from gan.trainer import Trainer

    run = tmp_path / "run"
    options = _options(image_folder, steps=8, checkpoint_every=100, lr_decay_start=4, lr_warmup_steps=2)
    base = options.model.g_lr

    def stop_at_6(step, total, logs):
        if step == 6:
            raise KeyboardInterrupt

    first = Trainer(run, options, progress_bar=False, on_progress=stop_at_6)
    first.setup()
    assert float(first.gan.g_optimizer.learning_rate) == pytest.approx(base * 0.5)  # warming up
    assert first.run() == "interrupted"
    resumed = Trainer(run, progress_bar=False)
    assert resumed.setup() == 6
    for opt, lr in ((resumed.gan.g_optimizer, base), (resumed.gan.d_optimizer, options.model.d_lr)):
        assert float(opt.learning_rate) == pytest.approx(lr * 0.5)  # halfway from step 4 to step 8
    used = []  # the generator's rate in each step after the resume
    resumed.on_progress = lambda step, total, logs: used.append(float(resumed.gan.g_optimizer.learning_rate))
    assert resumed.run() == "done"
    assert used == pytest.approx([base * 0.5, base * 0.25])  # steps 6 and 7; zero would be step 8


def test_resume_refuses_a_checkpoint_of_another_model(tmp_path, image_folder):
    from gan import checkpoint as ckpt
    from gan.model import GAN

    run = tmp_path / "run"
    gan = GAN(tiny_config())
    gan.compile()
    gan.build_all()
    path = ckpt.save_checkpoint(gan, run)
    other = GAN(tiny_config(g_channels=16))
    other.compile()
    with pytest.raises(ValueError, match="does not match this model"):
        ckpt.load_checkpoint(other, path)


def test_export_run_gives_a_loadable_style(tmp_path, image_folder):
    from gan.inference import AvatarGenerator
    from gan.styles import export_run
    from gan.trainer import Trainer

    run = tmp_path / "run"
    Trainer(run, _options(image_folder, steps=2), progress_bar=False).run()
    folder = export_run(run, "mystyle", tmp_path / "weights", description="from a test")
    meta = json.loads((folder / "style.json").read_text())
    assert meta["training"]["steps"] == 2 and meta["training"]["images_seen"] == 8
    assert set(meta["weights"]) == {"generator.weights.h5", "discriminator.weights.h5"}
    faces = AvatarGenerator.load(folder).generate([1, 2])
    assert faces.shape == (2, 64, 64, 3)


def test_export_names_the_style_in_other_languages_and_refuses_a_malformed_one(tmp_path, image_folder, train_cli):
    from gan.styles import read_style
    from gan.trainer import Trainer

    run = tmp_path / "run"
    Trainer(run, _options(image_folder, steps=1), progress_bar=False).run()
    weights = tmp_path / "weights"
    done = train_cli("export", str(run), "--name", "ink", "--weights-dir", str(weights),
                     "--description", "Ink faces", "--description-in", "ja=墨の顔", "--description-in", "zh=水墨头像",
                     "--description-in", "zh_Hant=水墨頭像")
    assert done.returncode == 0, done.stderr
    info = read_style(weights / "ink")
    assert (info.description(), info.description("ja"), info.description("zh"), info.description("zh_Hant"),
            info.description("ko")) == ("Ink faces", "墨の顔", "水墨头像", "水墨頭像", "Ink faces")
    refused = train_cli("export", str(run), "--name", "ink2", "--weights-dir", str(weights), "--description-in", "墨の顔")
    assert refused.returncode == 2 and "expected LANG=TEXT" in refused.stderr
    assert not (weights / "ink2").exists()
    # A run that replaces a style takes over what the old one said of itself: lines, notes, presets table.
    (tmp_path / "notes.md").write_text("## How it was trained\n\nIn one phase.\n")
    (tmp_path / "presets.json").write_text(json.dumps([{"preset": "narrow", "images_seen": 4, "fid": 99.0}]))
    assert train_cli("card", str(weights / "ink"), "--notes", str(tmp_path / "notes.md"), "--comparison",
                     str(tmp_path / "presets.json")).returncode == 0
    done = train_cli("export", str(run), "--name", "ink3", "--weights-dir", str(weights), "--card-from",
                     str(weights / "ink"), "--description-in", "ja=新しい墨の顔")
    assert done.returncode == 0, done.stderr
    info = read_style(weights / "ink3")
    assert (info.description(), info.description("ja"), info.description("zh")) == ("Ink faces", "新しい墨の顔", "水墨头像")
    card = (weights / "ink3" / "MODEL_CARD.md").read_text()
    assert card.rstrip().endswith("In one phase.") and "| narrow | 4 | n/a | 99.0 | n/a |" in card


def _cli(*args, cwd=REPO):
    """``avatarbot-train ARGS...`` in a process of its own: its exit status and two output streams."""
    return subprocess.run([sys.executable, "-m", "training", *args], cwd=cwd, capture_output=True, text=True)


@pytest.fixture
def train_cli(capsys):
    """``avatarbot-train ARGS...`` in this process, as ``python -m training`` runs it."""
    from training.cli import main

    return in_process_cli(capsys, main, "avatarbot-train")


def test_fine_tuning_run_takes_the_model_settings_of_the_style_it_starts_from(train_cli, tmp_path, tiny_style,
                                                                                 image_folder):
    out = train_cli("train", str(tmp_path / "r"), "--data", str(image_folder), "--init-from",
                    str(tiny_style / "default"), "--set", "ema_decay=0.99", "--dry-run")
    assert out.returncode == 0, out.stderr
    model = json.loads(out.stdout)["model"]
    assert (model["g_channels"], model["d_channels"], model["ema_decay"]) == (8, 8, 0.99)
    missing = train_cli("train", str(tmp_path / "r2"), "--data", str(image_folder), "--init-from",
                        str(tmp_path / "nope"))
    assert missing.returncode == 2 and "not a style folder or run directory" in missing.stderr


def test_train_cli_dry_run_and_bad_arguments(train_cli, tmp_path, image_folder):
    out = train_cli("train", str(tmp_path / "r"), "--data", str(image_folder), "--preset", "seed",
                    "--steps", "9", "--bf16", "--dry-run")
    assert out.returncode == 0, out.stderr
    options = json.loads(out.stdout)
    assert options["steps"] == 9 and options["model"]["preset"] == "seed" and options["mixed_precision"]
    assert not (tmp_path / "r" / "checkpoints").exists()

    missing = train_cli("train", str(tmp_path / "r2"), "--data", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "data folder not found" in missing.stderr
    typo = train_cli("train", str(tmp_path / "r3"), "--data", str(image_folder), "--set", "g_chanels=3")
    assert typo.returncode == 2 and "unknown config keys" in typo.stderr
    late = train_cli("train", str(tmp_path / "r4"), "--data", str(image_folder), "--steps", "9",
                     "--lr-decay-start", "9")
    assert late.returncode == 2 and "--lr-decay-start must be" in late.stderr


def test_mirrored_strategy_on_two_logical_cpus(tmp_path, image_folder):
    """tf.distribute across two logical CPU devices: the run trains and checkpoints."""
    script = f"""
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tests.test_training import _options
from gan.trainer import Trainer
t = Trainer({str(tmp_path / 'run')!r}, _options({str(image_folder)!r}, strategy="mirrored", steps=2),
            progress_bar=False)
assert t.run() == "done", "run did not finish"
print("replicas", t.strategy.num_replicas_in_sync, "step", t.step)
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "replicas 2 step 2" in out.stdout


def test_bfloat16_training_keeps_float32_outputs(tmp_path, image_folder):
    import keras

    from gan.model import GAN
    from gan.trainer import set_precision

    set_precision(True)
    try:
        gan = GAN(tiny_config())
        gan.compile()
        assert gan.generator.layers[2].compute_dtype == "bfloat16"
        real = np.random.default_rng(0).uniform(-1, 1, (4, 64, 64, 3)).astype("float32")
        logs = gan.train_step(real)
        assert np.isfinite(float(logs["g_loss"]))
        z = np.zeros((2, gan.config.latent_dim), "float32")
        assert gan.generator(z).dtype == "float32" and gan.discriminator(gan.generator(z)).dtype == "float32"
    finally:
        set_precision(False)
    assert keras.mixed_precision.global_policy().name == "float32"


def test_native_bfloat16_is_read_from_the_cpu_flags():
    from gan.runtime import cpu_has_native_bf16

    zen = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\n"
    sapphire = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
    assert not cpu_has_native_bf16(zen) and not cpu_has_native_bf16("")
    assert cpu_has_native_bf16(sapphire)


def test_benchmarks_name_what_the_cpu_speed_depends_on():
    from gan.runtime import cpu_summary

    zen = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\n"
    genoa = "model name\t: AMD EPYC 9R14\nflags\t\t: avx2 avx512f avx512_bf16\n"
    assert cpu_summary(zen, {"TF_ENABLE_ONEDNN_OPTS": "1"}) == "AMD EPYC (AVX2, no native bfloat16; oneDNN on)"
    assert cpu_summary(genoa, {}) == "AMD EPYC 9R14 (AVX-512, native bfloat16; oneDNN as TensorFlow picks)"
    assert cpu_summary("", {"TF_ENABLE_ONEDNN_OPTS": "0"}) == "unknown CPU (no AVX2, no native bfloat16; oneDNN off)"


def test_tensorflow_environment_turns_onednn_on_and_keeps_what_the_user_set(monkeypatch):
    from gan.runtime import tensorflow_environment

    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    assert tensorflow_environment({}) == {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "1"}
    mine = {"TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "0"}
    assert tensorflow_environment(dict(mine)) == mine  # an operator's choice wins
    assert tensorflow_environment({}, quiet=False) == {"TF_ENABLE_ONEDNN_OPTS": "1"}  # -v: every notice
    monkeypatch.setattr("platform.machine", lambda: "aarch64")  # left to TensorFlow's own default there
    assert tensorflow_environment({}) == {"TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="oneDNN is set on x86-64 only")
def test_tensorflow_runs_with_onednn_in_the_tools_processes():
    # A command run the way both CLIs run theirs, in a process whose environment does not ask for
    # oneDNN: TensorFlow must run its oneDNN kernels there, whatever this CPU is.
    script = ("import argparse; from gan.runtime import run_command\n"
              "def check(args):\n"
              "    from tensorflow.python.util import _pywrap_util_port\n"
              "    print('oneDNN', _pywrap_util_port.IsMklEnabled())\n"
              "    return 0\n"
              "raise SystemExit(run_command(argparse.Namespace(verbose=False, func=check), 'check', 30))\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "oneDNN True" in out.stdout


def test_bfloat16_run_warns_where_it_is_emulated_and_resumes_in_float32(train_cli, tmp_path, image_folder, caplog):
    from gan.runtime import bf16_is_fast
    from gan.trainer import Trainer, set_precision

    run = tmp_path / "run"
    try:
        with caplog.at_level("WARNING", logger="gan.trainer"):
            assert Trainer(run, _options(image_folder, mixed_precision=True, steps=2),
                           progress_bar=False).run() == "done"
    finally:
        set_precision(False)
    warned = "emulated on this machine" in caplog.text
    assert warned is not bf16_is_fast()

    # Moved to a machine without native bfloat16: the run goes on from its step in float32.
    out = train_cli("train", str(run), "--no-bf16", "--steps", "4", "--no-progress")
    assert out.returncode == 0, out.stderr
    assert "done at step 4" in out.stdout
    assert json.loads((run / "options.json").read_text())["mixed_precision"] is False


def test_anchor_penalty_is_zero_at_the_start_and_survives_a_resume(tmp_path, image_folder):
    """g_anchor holds the fine-tuned generator to its starting one: no penalty before it moves,
    and a resumed run anchors to the starting weights, not to the checkpoint it resumes."""
    from gan.model import coarse_luminance_l1
    from gan.styles import export_run
    from gan.trainer import Trainer

    base = tmp_path / "base"
    Trainer(base, _options(image_folder, steps=2), progress_bar=False).run()
    start = export_run(base, "start", tmp_path / "weights")
    run = tmp_path / "run"
    options = _options(image_folder, steps=4, checkpoint_every=2, init_from=str(start),
                       model=tiny_config(g_anchor=2.0))
    trainer = Trainer(run, options, progress_bar=False)
    trainer.setup()
    gan = trainer.gan
    z = np.random.default_rng(0).standard_normal((4, 128)).astype("float32")
    same = coarse_luminance_l1(gan.generator(z, training=False), gan.anchor_generator(z, training=False))
    np.testing.assert_allclose(same.numpy(), 0.0, atol=1e-6)
    starting = [w.copy() for w in gan.anchor_generator.get_weights()]
    assert trainer.run() == "done"
    resumed = Trainer(run, progress_bar=False)
    assert resumed.setup() == 4
    for a, b in zip(starting, resumed.gan.anchor_generator.get_weights()):
        np.testing.assert_array_equal(a, b)
    moved = coarse_luminance_l1(resumed.gan.generator(z, training=False),
                                resumed.gan.anchor_generator(z, training=False))
    assert float(np.mean(moved.numpy())) > 0  # training moved the generator; the anchor stayed


def test_standardized_anchor_lets_tones_change_but_not_the_layout():
    import tensorflow as tf

    from gan.model import coarse_luminance_l1

    rng = np.random.default_rng(0)
    layout = rng.uniform(-1, 1, (2, 8, 8, 3))  # face-like: large areas of light and dark
    face = tf.constant(np.repeat(np.repeat(layout, 8, axis=1), 8, axis=2), tf.float32)
    regraded = 0.4 * face - 0.3  # another brightness and contrast, same layout
    flipped = tf.reverse(face, axis=[1])  # the same tones, another layout
    def standardized(a, b):
        return coarse_luminance_l1(a, b, standardize=True)

    assert float(tf.reduce_max(standardized(regraded, face))) < 0.01
    assert float(tf.reduce_min(coarse_luminance_l1(regraded, face))) > 0.1  # the plain anchor objects
    assert float(tf.reduce_min(standardized(flipped, face))) > 0.1


@pytest.mark.parametrize("batch_stats", [True, False])
def test_fine_tuning_can_keep_the_discriminators_batchnorm_statistics(batch_stats):
    from gan.model import GAN

    gan = GAN(tiny_config(d_batch_stats=batch_stats))
    gan.compile()
    moving = [w for w in gan.discriminator.non_trainable_weights if "moving" in w.path]
    before = [w.numpy().copy() for w in moving]
    trainable_before = [w.numpy().copy() for w in gan.discriminator.trainable_weights]
    gan.train_step(np.random.default_rng(0).uniform(-1, 1, (8, 64, 64, 3)).astype("float32"))
    stats_changed = any(not np.array_equal(b, w.numpy()) for b, w in zip(before, moving))
    assert moving and stats_changed == batch_stats
    # D still learns either way
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(trainable_before, gan.discriminator.trainable_weights))


@pytest.mark.skipif(not INCEPTION_WEIGHTS.exists(), reason="shared Inception weights not present")
def test_kid_near_zero_for_a_folder_against_itself_and_large_against_noise(tmp_path):
    from gan.metrics import InceptionFeatures, fid, kid

    from tests.conftest import ANIME_FACES
    from gan.data import load_folder

    faces, _ = load_folder(ANIME_FACES, 64, max_images=60)
    noise = np.random.default_rng(0).integers(0, 256, faces.shape, dtype=np.uint8)
    extractor = InceptionFeatures(INCEPTION_WEIGHTS, batch_size=30)
    f_faces, f_noise = extractor(faces), extractor(noise)
    same, _ = kid(f_faces, f_faces, subsets=10, subset_size=50)
    other, _ = kid(f_faces, f_noise, subsets=10, subset_size=50)
    assert abs(same) < 0.01 and other > 0.2
    assert fid(f_faces, f_faces) < 1e-3 < 100 < fid(f_faces, f_noise)


@pytest.mark.parametrize("n_a, n_b", [(20, 30), (200, 150)])
def test_fid_agrees_with_the_textbook_formula_for_few_and_many_images(n_a, n_b):
    """The textbook FID (scipy's matrix square root of S1 S2), with fewer images than feature
    dimensions (FID's shortcut through the images) and with more (through the covariances)."""
    from scipy import linalg

    from gan.metrics import fid

    rng = np.random.default_rng(3)
    a = np.abs(rng.normal(size=(n_a, 64))) * rng.uniform(0, 2, 64)
    b = np.abs(rng.normal(0.3, 1.2, size=(n_b, 64)))
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    textbook = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert fid(a, b) == pytest.approx(textbook, rel=1e-6)
    assert abs(fid(a, a)) < 1e-9


class _MeanColour:
    """A cheap feature extractor with InceptionFeatures' interface that counts its calls."""

    weights_id = "mean-colour"

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, images: np.ndarray, desc: str = "features") -> np.ndarray:
        self.calls += 1
        return images.reshape(len(images), -1, 3).mean(axis=1)


def test_real_features_are_cached_by_content_not_by_path_or_file_times(tmp_path):
    import shutil

    from gan.metrics import folder_features

    extractor = _MeanColour()
    original = make_image_folder(tmp_path / "real", 12)
    first = folder_features(original, 12, extractor)
    assert extractor.calls == 1
    # a copy elsewhere with new modification times (a moved or re-provisioned dataset) is a cache hit
    copy = shutil.copytree(original, tmp_path / "elsewhere" / "real", copy_function=shutil.copyfile)
    np.testing.assert_array_equal(folder_features(copy, 12, extractor), first)
    assert extractor.calls == 1, "the same pictures in a new place were measured again"
    # another picture under the same name is not
    make_image_folder(tmp_path / "other", 1, seed=7)
    shutil.copyfile(tmp_path / "other" / "0000.jpg", copy / "0003.jpg")
    changed = folder_features(copy, 12, extractor)
    assert extractor.calls == 2 and not np.array_equal(changed, first)


def test_a_styles_features_are_cached_by_its_weights_for_the_next_quality_gate(tmp_path, tiny_style, caplog):
    """Every job's quality gate compares against the default style's faces: measured once, then
    read back, wherever the style folder lies; another style, or a damaged cache file, is measured."""
    import shutil

    from gan.metrics import style_features

    cache = Path(os.environ["XDG_CACHE_HOME"]) / "avatarbot" / "features"
    before = set(cache.glob("*.npy"))
    extractor = _MeanColour()
    first = style_features(tiny_style / "default", 8, extractor)
    (written,) = set(cache.glob("*.npy")) - before
    moved = shutil.copytree(tiny_style / "default", tmp_path / "moved" / "default")
    np.testing.assert_array_equal(style_features(moved, 8, extractor), first)
    assert extractor.calls == 1, "the same style was measured again"
    style_features(moved, 8, extractor, cache=False)
    assert extractor.calls == 2
    other = make_style(tmp_path / "other", g_channels=12)
    assert not np.array_equal(style_features(other, 8, extractor), first) and extractor.calls == 3
    written.write_bytes(b"not an array")
    np.testing.assert_array_equal(style_features(moved, 8, extractor), first)
    assert extractor.calls == 4 and "measuring again" in caplog.text
    np.testing.assert_array_equal(style_features(moved, 8, extractor), first)
    assert extractor.calls == 4, "the damaged file was not replaced"


@pytest.mark.skipif(not INCEPTION_WEIGHTS.exists(), reason="shared Inception weights not present")
def test_evaluate_cli_reports_fid_and_kid_of_a_style(tmp_path, tiny_style, image_folder):
    out = _cli("evaluate", str(tiny_style / "default"), "--real", str(image_folder), "--num-fake", "20",
               "--num-real", "20", "--batch-size", "10", "--inception-weights", str(INCEPTION_WEIGHTS),
               "-o", str(tmp_path / "m.json"))
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "m.json").read_text())
    assert result["num_fake"] == 20 and result["num_real"] == 20 and result["style"] == "default"
    assert result["fid"] > 0 and "kid" in result
    assert json.loads(out.stdout) == result, "the progress bars stay off stdout, which is the JSON result"
    assert "generated features" in out.stderr and "20/20" in out.stderr, "a long evaluate shows how far it is"
    assert "real features" in out.stderr, "a fresh cache measures the real images too"


@pytest.mark.skipif(not INCEPTION_WEIGHTS.exists(), reason="shared Inception weights not present")
def test_evaluate_write_records_the_figures_in_the_style_and_its_card(train_cli, tmp_path, tiny_style,
                                                                      image_folder):
    style = tmp_path / "default"
    shutil.copytree(tiny_style / "default", style)
    args = ["--real", str(image_folder), "--num-fake", "20", "--num-real", "20", "--batch-size", "10",
            "--inception-weights", str(INCEPTION_WEIGHTS), "--write", "--no-progress"]
    out = train_cli("evaluate", str(style), *args)
    assert out.returncode == 0, out.stderr[-2000:]
    metrics = json.loads((style / "style.json").read_text())["metrics"]
    assert metrics["num_fake"] == 20 and metrics["fid"] > 0
    assert f"FID **{metrics['fid']:.1f}**" in (style / "MODEL_CARD.md").read_text()
    out = train_cli("evaluate", str(tmp_path / "not-a-style"), *args)
    assert out.returncode == 2 and "not one (export the run first)" in out.stderr


def test_augmentation_is_an_exact_crop_and_flip_of_the_source():
    from gan.data import make_dataset

    images = np.random.default_rng(0).integers(0, 256, (6, 68, 68, 3), dtype=np.uint8)
    batch = next(iter(make_dataset(images, 6, 64, crop_margin=4))).numpy()
    for out in np.rint((batch + 1) * 127.5).astype(np.uint8):
        candidates = [im[y:y + 64, x:x + 64] for im in images for y in range(5) for x in range(5)]
        assert any(np.array_equal(out, c) or np.array_equal(out, c[:, ::-1]) for c in candidates), \
            "an augmented image is not a pixel-exact crop (or mirrored crop) of a training image"


def test_colour_transfer_matches_the_targets_mean_and_covariance():
    from gan.model import colour_transfer

    rng = np.random.default_rng(0)
    source = rng.normal(size=(5000, 3)) @ np.array([[0.5, 0.1, 0.0], [0.2, 0.3, 0.1], [0.0, 0.2, 0.6]]) + 0.2
    gray = np.repeat(rng.uniform(-1, 1, (4000, 1)), 3, axis=1)  # a grayscale picture set
    matrix, offset = colour_transfer(source, gray)
    moved = source @ matrix.T + offset
    np.testing.assert_allclose(moved.mean(0), gray.mean(0), atol=1e-6)
    np.testing.assert_allclose(np.cov(moved.T), np.cov(gray.T), atol=1e-3)
    assert np.abs(moved - moved.mean(1, keepdims=True)).max() < 0.05  # every pixel turned gray


@pytest.fixture(scope="module")
def base_style(tmp_path_factory, image_folder):
    """A tiny default style (two training steps), exported: the base custom styles start from."""
    from gan.styles import export_run
    from gan.trainer import Trainer

    root = tmp_path_factory.mktemp("base")
    Trainer(root / "run", _options(image_folder, steps=2), progress_bar=False).run()
    return export_run(root / "run", "base", root / "weights")


def _fine_tune_head(base_style, pictures, out, **head):
    """Export a style trained for two steps with a style head on ``pictures``, from ``base_style``."""
    import dataclasses

    from gan.styles import export_run, read_style
    from gan.trainer import Trainer

    model = dataclasses.replace(read_style(base_style).config, g_frozen_layers=5, **head)
    Trainer(out / "run", _options(pictures, model=model, steps=2, init_from=str(base_style)),
            progress_bar=False).run()
    return export_run(out / "run", "custom", out / "weights")


def test_a_new_style_head_starts_with_the_colours_of_its_pictures(tmp_path, base_style):
    """Fine-tuning with a style head fits the head's colour layer to the pictures first, so even
    after two steps the style draws in their colours (here an amber cast), unlike the default."""
    from gan.inference import AvatarGenerator

    amber = tmp_path / "amber"
    amber.mkdir()
    for i, path in enumerate(sorted(make_image_folder(tmp_path / "src", 12).iterdir())):
        rgb = np.asarray(Image.open(path).convert("RGB"), np.float32) * [1.0, 0.6, 0.2]
        Image.fromarray(rgb.astype(np.uint8)).save(amber / f"{i}.png")
    style = _fine_tune_head(base_style, amber, tmp_path, g_head=4)

    def mean_colour(faces: np.ndarray) -> np.ndarray:
        return faces.reshape(-1, 3).astype(np.float64).mean(0)

    pictures = mean_colour(np.stack([np.asarray(Image.open(p)) for p in amber.iterdir()]))
    assert np.abs(mean_colour(AvatarGenerator.load(style).generate(list(range(8)))) - pictures).max() < 10
    assert np.abs(mean_colour(AvatarGenerator.load(base_style).generate(list(range(8)))) - pictures).max() > 40


def test_a_palette_head_draws_in_the_flat_tones_of_its_pictures(tmp_path, base_style):
    """With ``g_palette`` the style head draws each pixel in one of a few flat colours fitted to the
    pictures: a set in four gray tones gives avatars in those four tones (and the style exports and
    loads like any other), where the default's pixels take every value in between."""
    from gan.inference import AvatarGenerator

    tones = np.array([15, 100, 185, 255])
    toned = tmp_path / "toned"
    toned.mkdir()
    for i, path in enumerate(sorted(make_image_folder(tmp_path / "src", 12).iterdir())):
        gray = np.asarray(Image.open(path).convert("L"), np.int64)
        Image.fromarray(tones[np.clip(gray // 64, 0, 3)].astype(np.uint8)).convert("RGB").save(toned / f"{i}.png")
    style = _fine_tune_head(base_style, toned, tmp_path, g_head=4, g_palette=4)

    def on_tones(faces: np.ndarray) -> float:
        """Share of pixels within 8 levels of one of the four tones in all three channels."""
        gaps = np.abs(faces.astype(np.int64)[..., None] - tones).min(axis=-1)
        return float((gaps.max(axis=-1) <= 8).mean())

    assert on_tones(AvatarGenerator.load(style).generate(list(range(8)))) > 0.9
    assert on_tones(AvatarGenerator.load(base_style).generate(list(range(8)))) < 0.5


def test_precision_falls_with_off_manifold_samples_and_recall_with_mode_collapse():
    from gan.metrics import precision_recall

    rng = np.random.default_rng(0)
    real = rng.normal(size=(400, 8))
    good = rng.normal(size=(400, 8))
    half_broken = np.concatenate([rng.normal(size=(200, 8)), rng.normal(10, 1, size=(200, 8))])
    collapsed = rng.normal(scale=0.1, size=(400, 8))
    p_good, r_good = precision_recall(good, real)
    p_half, _ = precision_recall(half_broken, real)
    p_coll, r_coll = precision_recall(collapsed, real)
    assert p_good > 0.8 and r_good > 0.8
    assert 0.35 < p_half < 0.6, "the far-off half of the samples is not counted as plausible"
    assert p_coll > 0.95 and r_coll < 0.2, "a collapsed generator covers little of the data"
    with pytest.raises(ValueError):
        precision_recall(good[:3], real)


def test_the_chosen_truncation_never_has_lower_precision_than_truncation_one():
    from training.truncation import choose_truncation

    rows = [{"truncation": 1.0, "fid": 30.0, "precision": 0.70}, {"truncation": 0.9, "fid": 29.0, "precision": 0.74},
            {"truncation": 0.8, "fid": 28.0, "precision": 0.69}, {"truncation": 0.7, "fid": 35.0, "precision": 0.80}]
    assert choose_truncation(rows) == 0.9, "0.8 has the best FID but fewer plausible faces than 1.0"
    assert choose_truncation(rows[:1]) == 1.0


def test_a_model_card_without_the_notes_marker_is_not_redrawn_over_its_notes(train_cli, tmp_path, tiny_style):
    style = tmp_path / "default"
    shutil.copytree(tiny_style / "default", style)
    old_card = "# Style `default`\n\nNotes written before the marker existed.\n"
    (style / "MODEL_CARD.md").write_text(old_card)
    out = train_cli("card", str(style))
    assert out.returncode == 2 and "has no notes marker" in out.stderr and "Traceback" not in out.stderr
    assert (style / "MODEL_CARD.md").read_text() == old_card
    (tmp_path / "bad.json").write_text('{"preset": "not a list"}')
    out = train_cli("card", str(style), "--notes", str(tmp_path / "bad.json"), "--comparison", str(tmp_path / "bad.json"))
    assert out.returncode == 2 and "expected a JSON list" in out.stderr
    assert (style / "MODEL_CARD.md").read_text() == old_card and "comparison" not in (style / "style.json").read_text()


@pytest.mark.skipif(not INCEPTION_WEIGHTS.exists(), reason="shared Inception weights not present")
def test_truncation_study_records_the_default_that_the_style_then_uses(train_cli, tmp_path, tiny_style,
                                                                       image_folder):
    from PIL import Image

    from gan.styles import StyleError, read_style

    style = tmp_path / "default"
    shutil.copytree(tiny_style / "default", style)
    (tmp_path / "notes.md").write_text("## Data\n\nWhere the faces came from.\n")
    (tmp_path / "presets.json").write_text(json.dumps([{"preset": "wide D", "images_seen": 64000, "fid": 48.2,
                                                        "kid": 0.0327}]))
    out = train_cli("card", str(style), "--notes", str(tmp_path / "notes.md"), "--comparison",
                    str(tmp_path / "presets.json"))
    assert out.returncode == 0, out.stderr
    out = train_cli("truncation", str(style), "--real", str(image_folder), "--values", "1,0.5", "--num-fake", "20",
                    "--num-real", "20", "--batch-size", "20", "--inception-weights", str(INCEPTION_WEIGHTS),
                    "--write", "--no-progress")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| truncation | FID | KID (x1000) | precision | recall |" in out.stdout
    info = read_style(style)  # the weights' hashes still verify
    study = info.meta["truncation_study"]
    assert [r["truncation"] for r in study["results"]] == [1.0, 0.5]
    assert all(0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1 and r["fid"] > 0 for r in study["results"])
    assert info.default_truncation in (1.0, 0.5) and study["command"].startswith("avatarbot-train truncation")
    assert f"--inception-weights {INCEPTION_WEIGHTS} --write" in study["command"], "the command reproduces the study"
    with Image.open(style / "truncation.png") as grid:
        assert grid.height < grid.width / 3, "one row per truncation, eight seeds each"
    card = (style / "MODEL_CARD.md").read_text()  # redrawn by --write, its notes and presets table kept
    assert "### Truncation" in card and "truncation.png" in card
    assert f"the rule keeps {info.default_truncation:g}." in card
    assert card.rstrip().endswith("Where the faces came from.") and "| wide D | 64,000 | n/a | 48.2 | 32.7 |" in card
    meta = json.loads((style / "style.json").read_text())
    meta["truncation"] = 3
    (style / "style.json").write_text(json.dumps(meta))
    with pytest.raises(StyleError, match="truncation"):
        read_style(style)
