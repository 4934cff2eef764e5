"""Benchmark: train a custom style the way the bot does, and measure its time and how close it gets.

    python benchmarks/style.py                      # 200 faces in a grayscale manga look, default budget
    python benchmarks/style.py --look teal --steps 20 --kid-samples 200    # a quick check
    python benchmarks/style.py --gate               # the quality gate in the job too

1. Builds a distinct 200-image style set from the shared anime faces (``--look``: ``manga`` is
   grayscale with flattened tones and inked edges, ``teal`` a strong teal-and-orange colour grade),
   zipped like an admin's upload.
2. Submits it to a ``training.jobs.JobManager`` (its own database and folders in ``--workdir``), which
   ingests it and fine-tunes the default style in a worker process with the default step budget
   (``training.recipe.FEW_SHOT.steps``), exactly as the bot does.
3. Reports the wall time from upload to registered style (goal: at most 10 minutes on the 2-core CPU)
   and the KID of the style set against the default style and against the fine-tuned style (goal: the
   fine-tuned style at least 3x closer). With ``--gate`` the job also runs the quality gate
   (``training.gate``) on the upload, as a bot with ``STYLE_GATE_INCEPTION_WEIGHTS`` set does, and its
   figures and seconds (budget: 60 s) are reported.

Prints one JSON object (also written to ``-o``). Nothing here needs a network.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageFilter, ImageOps

log = logging.getLogger("benchmarks.style")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
GOAL_WALL_S = 600.0
GOAL_KID_RATIO = 3.0


def manga(img: Image.Image) -> Image.Image:
    """Grayscale in four flat tones, with the strongest edges inked black."""
    gray = ImageOps.autocontrast(ImageOps.grayscale(img), cutoff=1)
    tones = gray.point(lambda v: min(255, (v // 64) * 85 + 15))
    edges = gray.filter(ImageFilter.GaussianBlur(0.6)).filter(ImageFilter.FIND_EDGES)
    ink = edges.point(lambda v: 0 if v > 60 else 255)
    return ImageChops.darker(tones, ink).convert("RGB")


def teal(img: Image.Image) -> Image.Image:
    """A strong teal-and-orange grade: shadows pushed to teal, highlights to orange."""
    x = np.asarray(img.convert("RGB"), np.float32) / 255.0
    luma = x @ np.array([0.299, 0.587, 0.114], np.float32)
    shadow = np.array([0.0, 0.45, 0.55], np.float32)
    light = np.array([1.0, 0.62, 0.25], np.float32)
    graded = shadow + (light - shadow) * luma[..., None] ** 0.8
    out = 0.25 * x + 0.75 * graded
    return Image.fromarray(np.clip(out * 255 + 0.5, 0, 255).astype(np.uint8))


LOOKS = {"manga": manga, "teal": teal}


def build_style_set(faces: Path, n: int, look: str, out: Path, seed: int = 0) -> tuple[np.ndarray, bytes]:
    """``n`` faces picked at random (fixed seed) in the given look: (N, 64, 64, 3) uint8 and a zip."""
    files = sorted(p for p in faces.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if len(files) < n:
        raise SystemExit(f"{faces} holds {len(files)} images; {n} are needed")
    picked = [files[i] for i in sorted(np.random.default_rng(seed).choice(len(files), n, replace=False))]
    out.mkdir(parents=True, exist_ok=True)
    images = []
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, path in enumerate(picked):
            with Image.open(path) as im:
                styled = LOOKS[look](im.convert("RGB").resize((64, 64), Image.Resampling.LANCZOS))
            target = out / f"{i:04d}.png"
            styled.save(target)
            zf.write(target, f"{look}/{target.name}")
            images.append(np.asarray(styled))
    return np.stack(images), buf.getvalue()


async def train(args: argparse.Namespace, workdir: Path, upload: bytes) -> tuple[Path, dict]:
    """Run one job through the JobManager; returns the registered style folder and timings."""
    from bot.progress import progress_text
    from training.gate import GateSpec
    from training.jobs import SUCCEEDED, JobManager, JobSettings
    from training.recipe import FEW_SHOT

    gate = GateSpec(inception_weights=str(args.inception_weights)) if args.gate else None
    settings = JobSettings(default_steps=args.steps, max_steps=max(FEW_SHOT.max_steps, args.steps),
                           batch_size=args.batch_size, progress_interval_s=10.0, gate=gate)
    settings.model_overrides.update(args.overrides)
    manager = JobManager(workdir / "jobs.db", workdir / "styles", args.default_style, settings)
    seen: list[tuple[float, int]] = []  # (time, step) of progress reports, for the training speed

    def report(event) -> None:
        if event.kind == "progress":
            seen.append((time.perf_counter(), event.step))
        print(progress_text(event), file=sys.stderr, flush=True)

    manager.subscribe(report)
    await manager.start()
    try:
        t0 = time.perf_counter()
        job = await manager.submit("bench:1", f"bench-{args.look}", upload, requested_by="benchmark")
        done = await manager.wait(job.id)
        wall = time.perf_counter() - t0
        if done.status != SUCCEEDED:
            raise SystemExit(f"the job {done.status}: {done.message}\n{done.error or ''}")
        folder = manager.styles.resolve_style("bench:1", done.name)
    finally:
        await manager.stop()
    meta = json.loads((folder / "style.json").read_text())
    training = meta["training"]
    speed = None
    if len(seen) >= 2 and seen[-1][1] > seen[0][1]:
        speed = round((seen[-1][1] - seen[0][1]) * args.batch_size / (seen[-1][0] - seen[0][0]), 1)
    return folder, {"wall_s": round(wall, 1), "steps": training["steps"], "images_seen": training["images_seen"],
                    "train_images_per_s": speed, "mixed_precision": training["mixed_precision"],
                    **({"gate": meta.get("gate")} if args.gate else {})}


def kid_against(style_feats: np.ndarray, folder: Path, n: int, extractor) -> dict:
    """KID (mean, std) of ``n`` faces of a style folder against the style set's features."""
    from gan.inference import AvatarGenerator
    from gan.metrics import kid

    faces = AvatarGenerator.load(folder).generate(list(range(n)))
    mean, std = kid(extractor(faces), style_feats)
    return {"kid": round(mean, 5), "kid_std": round(std, 5)}


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the benchmark, print (and optionally write) the JSON result."""
    from gan.config import GANConfig, parse_overrides
    from gan.runtime import cpu_summary, tensorflow_environment
    from training.recipe import FEW_SHOT

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--faces", type=Path, default=SHARED / "anime-faces-64", help="folder of source faces")
    p.add_argument("--images", type=int, default=200, help="size of the style set")
    p.add_argument("--look", choices=sorted(LOOKS), default="manga")
    p.add_argument("--steps", type=int, default=FEW_SHOT.steps, help="step budget (default: the bot's default)")
    p.add_argument("--batch-size", type=int, default=FEW_SHOT.batch_size,
                   help="pictures a step (default: the bot's)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", dest="overrides",
                   help="override a fine-tuning model setting, e.g. --set g_anchor=0 (see gan.config)")
    p.add_argument("--default-style", type=Path, default=REPO / "weights" / "default",
                   help="the style folder to fine-tune from")
    p.add_argument("--inception-weights", type=Path,
                   default=SHARED / "inception" / "inception_v3_fid_notop.weights.h5")
    p.add_argument("--kid-samples", type=int, default=1000, help="faces generated per style for KID")
    p.add_argument("--gate", action="store_true",
                   help="run the quality gate in the job, as the bot does with STYLE_GATE_INCEPTION_WEIGHTS set "
                        "(its figures and seconds are reported; the wall time includes it)")
    p.add_argument("--workdir", type=Path, help="keep the job database, style and style set here")
    p.add_argument("-o", "--output", type=Path, help="also write the result JSON here")
    args = p.parse_args(argv)
    try:
        args.overrides = parse_overrides(args.overrides)
        GANConfig.from_dict({**FEW_SHOT.model_overrides, **args.overrides})  # a bad key fails here, not in the worker
    except (TypeError, ValueError) as exc:
        p.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tensorflow_environment()  # for the worker process, which inherits it

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="style-bench-"))
    load_before = os.getloadavg()
    try:
        style_images, upload = build_style_set(args.faces, args.images, args.look, workdir / "style-set")
        folder, timing = asyncio.run(train(args, workdir, upload))

        from gan.metrics import InceptionFeatures

        extractor = InceptionFeatures(args.inception_weights)
        style_feats = extractor(style_images)
        before = kid_against(style_feats, args.default_style, args.kid_samples, extractor)
        after = kid_against(style_feats, folder, args.kid_samples, extractor)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    ratio = before["kid"] / after["kid"] if after["kid"] > 0 else float("inf")
    result = {
        "look": args.look,
        "images": args.images,
        "batch_size": args.batch_size,
        **timing,
        "kid_default_vs_style": before,
        "kid_finetuned_vs_style": after,
        "kid_ratio": round(ratio, 2),
        "goal_wall_ok": timing["wall_s"] <= GOAL_WALL_S,
        "goal_kid_ok": ratio >= GOAL_KID_RATIO,
        "kid_samples": args.kid_samples,
        "default_style": str(args.default_style),
        "hardware": f"{cpu_summary()}, {os.cpu_count()} cores",
        "load_average_before": [round(x, 2) for x in load_before],
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
