"""``avatarbot-train distill``: train the fast student upscaler on Real-CUGAN's output.

One run directory, resumable like a GAN run::

    RUN/options.json         the options (a second call resumes with them)
    RUN/pairs/               64-px faces and the teacher's 256-px output, in chunks as they are made
    RUN/checkpoints/         the student and its optimizer (TensorFlow checkpoints)
    RUN/history.jsonl        loss and held-out PSNR as training goes
    RUN/samples/             bicubic | student | teacher on held-out faces

The faces are half the style's own (seeds from a range apart from the held-out seeds 0-199, at
truncations from 0.5 to 1: the bot draws faces at any truncation) and half real pictures from a folder (the held-out ones are a fixed
sample). ``export`` writes ``weights/upscalers/<name>/`` with the held-out figures.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from gan.student import StudentConfig

log = logging.getLogger(__name__)

HELD_OUT = 200
TRAIN_SEED_BASE = 1_000_000_000  # training faces come from seeds far from the held-out 0..199
CHUNK = 128
LOSSES = ("l1", "mse", "l1-luma")
# BT.601 luma weights (of R, G, B), the Y that ``psnr_y`` scores; "l1-luma" adds the L1 error of this Y
# to the RGB one, LUMA_WEIGHT times over, so the student spends its capacity where the eye (and the
# super-resolution convention) looks: line work and shading rather than hue.
LUMA = (0.299, 0.587, 0.114)
LUMA_WEIGHT = 2.0


@dataclass
class DistillOptions:
    """What a distillation run is made of (saved as ``options.json``)."""

    style: str
    teacher: str
    real: str = ""
    pairs: int = 4000
    truncation_min: float = 0.5  # generated training faces are drawn at truncations from this to 1
    steps: int = 12000
    batch_size: int = 16
    crop: int = 48
    lr: float = 2e-3
    checkpoint_every: int = 500
    seed: int = 0
    held_out: int = HELD_OUT
    student: dict = field(default_factory=lambda: StudentConfig().to_dict())
    init: str = ""  # a student upscaler folder whose weights the run starts from (a fine-tune)
    loss: str = "l1"  # "l1", "mse" (PSNR's own measure: a fine-tune's last steps) or "l1-luma"
    ema: float = 0.0  # decay of an average of the weights that is scored and exported (0: the weights)

    def save(self, run_dir: Path) -> None:
        (run_dir / "options.json").write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, run_dir: Path) -> "DistillOptions":
        return cls(**json.loads((run_dir / "options.json").read_text()))


def _teacher(options: DistillOptions):
    from gan.batching import FixedBatchRunner
    from gan.upscalers import load_network

    model, info = load_network(options.teacher)
    if info.scale != 4:
        raise ValueError(f"the teacher must upscale 4x ({info.name} is {info.scale}x)")
    probe = np.random.default_rng(0).random((4, 64, 64, 3), np.float32)
    return FixedBatchRunner(model, (64, 64, 3), (4, 16), probe, what="teacher"), info


def _teach(runner, faces: np.ndarray) -> np.ndarray:
    from gan.cugan import to_uint8

    return to_uint8(runner(faces.astype(np.float32) / 255.0))


def _generated_faces(gen, seeds: list[int], truncations: np.ndarray) -> np.ndarray:
    from gan.latents import latents_for_seeds

    z = latents_for_seeds(seeds, gen.latent_dim) * truncations[:, None].astype(np.float32)
    return gen.render_latents(z)


def _real_split(options: DistillOptions) -> tuple[list[Path], list[Path]]:
    from gan.data import list_images

    files = list_images(options.real)
    order = np.random.default_rng(options.seed).permutation(len(files))
    held = [files[i] for i in order[:options.held_out]]
    return held, [files[i] for i in order[options.held_out:]]


def _read_faces(paths: list[Path]) -> np.ndarray:
    from gan.data import read_image

    return np.stack([read_image(p, 64) for p in paths])


def make_pairs(run_dir: Path, options: DistillOptions, progress: bool = True) -> None:
    """Draw the faces and the teacher's output, chunk by chunk (a killed run resumes at its last chunk)."""
    from tqdm import tqdm

    pairs = run_dir / "pairs"
    pairs.mkdir(exist_ok=True)
    n_gen = options.pairs if not options.real else options.pairs // 2
    n_real = options.pairs - n_gen
    jobs = [("heldout-gen", None), *[(f"gen-{i:04d}", i) for i in range(math.ceil(n_gen / CHUNK))]]
    if options.real:
        jobs += [("heldout-real", None), *[(f"real-{i:04d}", i) for i in range(math.ceil(n_real / CHUNK))]]
    todo = [(name, i) for name, i in jobs if not (pairs / f"{name}.npz").exists()]
    if not todo:
        return
    from gan.inference import AvatarGenerator

    runner, _ = _teacher(options)
    gen = AvatarGenerator.load(options.style)
    held_real, train_real = _real_split(options) if options.real else ([], [])
    rng_trunc = np.random.default_rng(options.seed + 1)
    truncations = rng_trunc.uniform(options.truncation_min, 1.0, n_gen)
    for name, i in tqdm(todo, desc="teacher", unit="chunk", disable=not progress):
        if name == "heldout-gen":
            faces = _generated_faces(gen, list(range(options.held_out)), np.ones(options.held_out))
        elif name == "heldout-real":
            faces = _read_faces(held_real)
        elif name.startswith("gen-"):
            lo, hi = i * CHUNK, min(n_gen, (i + 1) * CHUNK)
            faces = _generated_faces(gen, list(range(TRAIN_SEED_BASE + lo, TRAIN_SEED_BASE + hi)),
                                     truncations[lo:hi])
        else:
            lo, hi = i * CHUNK, min(n_real, (i + 1) * CHUNK)
            faces = _read_faces(train_real[lo:hi])
        hr = _teach(runner, faces)
        tmp = pairs / f"{name}.tmp.npz"
        np.savez(tmp, lr=faces, hr=hr)
        os.replace(tmp, pairs / f"{name}.npz")


def _load_pairs(run_dir: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    files = sorted((run_dir / "pairs").glob(f"{prefix}*.npz"))
    files = [f for f in files if not f.name.endswith(".tmp.npz")]
    if not files:
        return np.zeros((0, 64, 64, 3), np.uint8), np.zeros((0, 256, 256, 3), np.uint8)
    loaded = [np.load(f) for f in files]
    return np.concatenate([d["lr"] for d in loaded]), np.concatenate([d["hr"] for d in loaded])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean PSNR (dB) over the images of two uint8 batches."""
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    mse = np.maximum(np.mean(diff ** 2, axis=tuple(range(1, diff.ndim))), 1e-10)
    return float(np.mean(10 * np.log10(255.0 ** 2 / mse)))


def psnr_y(a: np.ndarray, b: np.ndarray, shave: int = 4) -> float:
    """Mean PSNR (dB) of the luma (ITU-R BT.601 Y, 16-235) with ``shave`` border pixels left out:
    the usual convention of super-resolution papers, which ignores colour error."""
    def luma(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64) / 255.0
        return 16 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]

    diff = (luma(a) - luma(b))[:, shave:-shave, shave:-shave]
    mse = np.maximum(np.mean(diff ** 2, axis=(1, 2)), 1e-10)
    return float(np.mean(10 * np.log10(255.0 ** 2 / mse)))


def held_out_scores(upscale, run_dir: Path) -> dict[str, float]:
    """PSNR against the teacher on the held-out generated (and real) faces, for ``upscale(lr) -> hr``:
    ``psnr_*`` over RGB, ``psnr_y_*`` over luma (the super-resolution convention)."""
    scores = {}
    for part in ("gen", "real"):
        lr, hr = _load_pairs(run_dir, f"heldout-{part}")
        if len(lr):
            out = upscale(lr)
            scores[f"psnr_{part}"] = round(psnr(out, hr), 2)
            scores[f"psnr_y_{part}"] = round(psnr_y(out, hr), 2)
    return scores


def train(run_dir: Path, options: DistillOptions, progress: bool = True) -> dict:
    """Train (or resume) the student; returns the final held-out scores."""
    import tensorflow as tf
    from tqdm import tqdm

    from gan.cugan import to_uint8
    from gan.runtime import sigterm_as_interrupt
    from gan.student import build_student

    lr_train, hr_train = _load_pairs(run_dir, "gen-")
    lr_real, hr_real = _load_pairs(run_dir, "real-")
    lr_train, hr_train = np.concatenate([lr_train, lr_real]), np.concatenate([hr_train, hr_real])
    n = len(lr_train)
    if n == 0:
        raise ValueError(f"{run_dir} holds no training pairs")
    if options.loss not in LOSSES:
        raise ValueError(f"unknown loss {options.loss!r} (use {' or '.join(LOSSES)})")
    config = StudentConfig.from_dict(options.student)
    student = build_student(config)
    # Small-batch Adam keeps the held-out PSNR wandering by a tenth of a dB from one checkpoint to the
    # next even at a low learning rate; an average of the weights (``ema``) sits at the better end.
    average = build_student(config) if options.ema else None
    schedule = tf.keras.optimizers.schedules.CosineDecay(options.lr, options.steps, alpha=0.02)
    optimizer = tf.keras.optimizers.Adam(schedule)
    optimizer.build(student.trainable_variables)  # so a checkpoint restores its slots at once
    step_var = tf.Variable(0, dtype=tf.int64)
    ckpt = tf.train.Checkpoint(student=student, optimizer=optimizer, step=step_var,
                               **({"average": average} if average is not None else {}))
    manager = tf.train.CheckpointManager(ckpt, run_dir / "checkpoints", max_to_keep=2)
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint)
        log.info("resumed the student at step %d", int(step_var.numpy()))
    else:
        if options.init:
            student.set_weights(init_student(options.init).get_weights())
            log.info("the student starts from %s", options.init)
        if average is not None:
            average.set_weights(student.get_weights())
    scored = average if average is not None else student
    crop, batch = options.crop, options.batch_size
    rng = np.random.default_rng(options.seed + int(step_var.numpy()))

    @tf.function
    def step(lr, hr):
        with tf.GradientTape() as tape:
            error = student(lr, training=True) - hr
            if options.loss == "mse":
                loss = tf.reduce_mean(tf.square(error))
            else:
                loss = tf.reduce_mean(tf.abs(error))
            if options.loss == "l1-luma":
                loss += LUMA_WEIGHT * tf.reduce_mean(tf.abs(tf.tensordot(error, tf.constant(LUMA), axes=1)))
        grads = tape.gradient(loss, student.trainable_variables)
        optimizer.apply_gradients(zip(grads, student.trainable_variables))
        if average is not None:
            for a, w in zip(average.weights, student.weights):
                a.assign(options.ema * a + (1.0 - options.ema) * w)
        return loss

    def sample_batch():
        idx = rng.integers(0, n, batch)
        ys, xs = rng.integers(0, 64 - crop + 1, batch), rng.integers(0, 64 - crop + 1, batch)
        lr = np.stack([lr_train[i, y:y + crop, x:x + crop] for i, y, x in zip(idx, ys, xs)])
        hr = np.stack([hr_train[i, 4 * y:4 * (y + crop), 4 * x:4 * (x + crop)] for i, y, x in zip(idx, ys, xs)])
        flip = rng.random(batch) < 0.5
        lr[flip], hr[flip] = lr[flip, :, ::-1], hr[flip, :, ::-1]
        return lr.astype(np.float32) / 255.0, hr.astype(np.float32) / 255.0

    def predict(lr):
        return np.concatenate([to_uint8(scored(lr[i:i + 50].astype(np.float32) / 255.0, training=False))
                               for i in range(0, len(lr), 50)])

    history = (run_dir / "history.jsonl").open("a")
    start = int(step_var.numpy())
    bar = tqdm(total=options.steps, initial=start, desc="distill", unit="step", disable=not progress)
    losses, t0 = [], time.perf_counter()
    try:
        with sigterm_as_interrupt():
            for s in range(start, options.steps):
                losses.append(float(step(*sample_batch())))
                step_var.assign(s + 1)
                bar.update(1)
                done = s + 1
                if done % options.checkpoint_every == 0 or done == options.steps:
                    manager.save(checkpoint_number=done)
                    scores = held_out_scores(predict, run_dir)
                    record = {"step": done, "loss": round(float(np.mean(losses)), 5),
                              "seconds": round(time.perf_counter() - t0, 1), **scores}
                    history.write(json.dumps(record) + "\n")
                    history.flush()
                    bar.set_postfix(loss=record["loss"], **scores)
                    losses, t0 = [], time.perf_counter()
    except KeyboardInterrupt:
        manager.save(checkpoint_number=int(step_var.numpy()))
        log.info("interrupted: checkpoint saved at step %d", int(step_var.numpy()))
        raise
    finally:
        bar.close()
        history.close()
    return held_out_scores(predict, run_dir)


def init_student(folder: str):
    """The trained student in an upscaler folder, to fine-tune from; its shape becomes the run's."""
    from gan.upscalers import load_network

    model, info = load_network(folder)
    if info.kind != "student":
        raise ValueError(f"{folder} is a {info.kind} upscaler, not a student to start from")
    return model


def _lineage(folder: str) -> dict:
    """What a fine-tuned student started from: that student's weights hash and its own training record
    (so the exported folder says how to redo the whole chain without the run directories)."""
    from gan.upscalers import read_upscaler

    info = read_upscaler(folder, verify_hash=False)
    return {"name": info.name, "weights_sha256": info.weights_sha256, "training": info.meta.get("training", {})}


def mean_gradient(images: np.ndarray) -> float:
    """Mean gradient magnitude of the luma (0-255): how crisp the line work is."""
    x = np.asarray(images, np.float64)
    luma = x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114
    dx, dy = np.diff(luma, axis=2)[:, :-1, :], np.diff(luma, axis=1)[:, :, :-1]
    return float(np.mean(np.sqrt(dx ** 2 + dy ** 2)))


def export(run_dir: Path, out_folder: Path) -> Path:
    """Write the trained student as an upscaler folder, with held-out figures and a comparison grid."""
    import tensorflow as tf

    from gan.cugan import to_uint8
    from gan.imaging import grid
    from gan.student import build_student
    from gan.upscalers import read_upscaler, resize, write_upscaler

    options = DistillOptions.load(run_dir)
    config = StudentConfig.from_dict(options.student)
    student = build_student(config)
    step_var = tf.Variable(0, dtype=tf.int64)
    # the averaged weights where the run kept them: they are the ones its history scored
    ckpt = tf.train.Checkpoint(**{"average" if options.ema else "student": student}, step=step_var)
    latest = tf.train.latest_checkpoint(run_dir / "checkpoints")
    if latest is None:
        raise FileNotFoundError(f"{run_dir} has no student checkpoint yet")
    ckpt.restore(latest).expect_partial()

    def predict(lr):
        return np.concatenate([to_uint8(student(lr[i:i + 50].astype(np.float32) / 255.0, training=False))
                               for i in range(0, len(lr), 50)])

    metrics = held_out_scores(predict, run_dir)
    bicubic = held_out_scores(lambda lr: resize(lr, 256), run_dir)
    metrics.update({f"bicubic_{k}": v for k, v in bicubic.items()})
    lr, hr = _load_pairs(run_dir, "heldout-gen")
    out = predict(lr)
    metrics["sharpness_vs_bicubic"] = round(mean_gradient(out) / mean_gradient(resize(lr, 256)), 3)
    metrics["teacher_sharpness_vs_bicubic"] = round(mean_gradient(hr) / mean_gradient(resize(lr, 256)), 3)
    teacher = read_upscaler(options.teacher, verify_hash=False)
    write_upscaler(
        out_folder, student, "student", config.scale, config=config.to_dict(),
        teacher={"name": teacher.name, "weights_sha256": teacher.weights_sha256},
        training={"style": options.style, "real": options.real, "pairs": options.pairs,
                  "truncation_min": options.truncation_min,
                  "steps": int(step_var.numpy()), "batch_size": options.batch_size, "crop": options.crop,
                  "lr": options.lr, "loss": options.loss, "ema": options.ema,
                  **({"init": _lineage(options.init)} if options.init else {})},
        metrics={**metrics, "held_out": f"{options.held_out} generated faces (seeds 0-{options.held_out - 1})"
                 + (f" and {options.held_out} real pictures" if options.real else "")})
    # bicubic | student | teacher, on three held-out generated faces and one real picture
    rows = []
    lr_real, hr_real = _load_pairs(run_dir, "heldout-real")
    shown = [(lr[i:i + 1], hr[i]) for i in range(min(3, len(lr)))]
    if len(lr_real):
        shown.append((lr_real[:1], hr_real[0]))
    for face, teacher_out in shown:
        rows += [resize(face, 256)[0], predict(face)[0], teacher_out]
    grid(rows, cols=3, cell=256).save(out_folder / "comparison.png", optimize=True)
    log.info("exported the student to %s: %s", out_folder, metrics)
    return out_folder
