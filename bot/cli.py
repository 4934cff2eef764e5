"""``avatarbot``: draw avatars from the command line, list styles, and run the chat bot.

    avatarbot generate --seed 42 -o avatar.png
    avatarbot generate --name Alice --size 512 -o alice.png
    avatarbot grid --seeds 1-16 -o grid.png
    avatarbot generate --seed 42 --hair blue --eyes red -o blue.png   (styles with colour directions)
    avatarbot morph --from 1 --to 2 -o morph.gif
    avatarbot styles
    avatarbot styles prune [--days N] [--yes]   (custom styles unused for STYLE_PRUNE_DAYS days)
    avatarbot run                   (the chat bot; settings from the environment and .env)
"""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
from pathlib import Path

from bot.paths import default_weights_dir
from gan.runtime import CLIError, run_command

log = logging.getLogger(__name__)

MAX_GRID = 64


def parse_seed_list(text: str) -> list[int]:
    """``"1-16"``, ``"3,7,42"`` or a mix (``"1-4,9"``) -> a list of seeds."""
    from gan.latents import check_seed

    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, dash, hi = part.partition("-")
        try:
            if dash:
                a, b = int(lo), int(hi)
                if b < a:
                    raise CLIError(f"bad seed range {part!r}: the end is before the start")
                if b - a + 1 > MAX_GRID:
                    raise CLIError(f"at most {MAX_GRID} seeds in a grid")
                seeds.extend(range(a, b + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise CLIError(f"bad seed list {text!r}: use numbers and ranges like 1-16 or 3,7,42") from None
    if not seeds:
        raise CLIError("no seeds given")
    if len(seeds) > MAX_GRID:
        raise CLIError(f"at most {MAX_GRID} seeds in a grid")
    try:
        return [check_seed(s) for s in seeds]
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def seed_or_name(text: str) -> int:
    """A seed given as a number, or a name mapped to its stable seed."""
    from gan.latents import check_seed, seed_for_name

    try:
        return check_seed(int(text))
    except ValueError as exc:
        if text.strip().lstrip("-").isdigit():
            raise CLIError(str(exc)) from None
        return seed_for_name(text)


def _load(args: argparse.Namespace):
    from gan.inference import AvatarGenerator
    from gan.styles import StyleError

    from gan.upscalers import UpscalerLibrary, upscalers_dir

    folder = Path(args.weights_dir) / args.style
    try:
        gen = AvatarGenerator.load(folder, upscalers=UpscalerLibrary(upscalers_dir(args.weights_dir)))
    except StyleError as exc:
        if not folder.exists():
            raise CLIError(f"unknown style {args.style!r} (not in {args.weights_dir}); "
                           "`avatarbot styles` lists the installed ones") from None
        raise CLIError(str(exc)) from None
    if getattr(args, "truncation", 0) is None:
        args.truncation = gen.info.default_truncation  # the style's measured default
    return gen


def _truncation(text: str) -> float:
    """argparse type: a truncation from 0.05 to 1."""
    from gan.latents import check_truncation

    try:
        return check_truncation(float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _checked(fn, *a):
    try:
        return fn(*a)
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def cmd_generate(args: argparse.Namespace) -> int:
    from gan.imaging import avatar_png, check_size
    from gan.latents import check_seed, seed_for_name

    if args.seed is not None and args.name is not None:
        raise CLIError("give --seed or --name, not both")
    _checked(check_size, args.size)
    if args.name is not None:
        seed = _checked(seed_for_name, args.name)
    elif args.seed is not None:
        seed = _checked(check_seed, args.seed)
    else:
        seed = secrets.randbelow(2**63)
    gen = _load(args)
    image = _checked(gen.generate, [seed], args.truncation, args.size, args.upscaler, args.hair, args.eyes)[0]
    extra = {"name": args.name} if args.name is not None else {}
    meta = gen.metadata(seed, args.truncation, args.upscaler, args.size, hair=args.hair, eyes=args.eyes, **extra)
    Path(args.output).write_bytes(avatar_png(image, args.size, meta))
    print(f"wrote {args.output} (seed {seed}, style {gen.style}, truncation {args.truncation:g}, "
          f"{args.size} px by {meta['upscaler']}{_edit_text(meta)})")
    return 0


def cmd_grid(args: argparse.Namespace) -> int:
    from gan.imaging import check_size, grid, png_bytes

    seeds = parse_seed_list(args.seeds)
    _checked(check_size, args.cell)
    gen = _load(args)
    images = _checked(gen.generate, seeds, args.truncation, args.cell, args.upscaler, args.hair, args.eyes)
    picture = grid(images, cols=args.cols, cell=args.cell)
    meta = gen.metadata(seeds[0], args.truncation, args.upscaler, args.cell, hair=args.hair, eyes=args.eyes,
                        seeds=",".join(map(str, seeds)))
    Path(args.output).write_bytes(png_bytes(picture, meta))
    print(f"wrote {args.output} ({len(seeds)} faces, style {gen.style}{_edit_text(meta)})")
    return 0


def _edit_text(meta: dict) -> str:
    """", hair blue, eyes red" for the colour edit a PNG's metadata names ("" without one)."""
    return "".join(f", {kind} {meta[kind]}" for kind in ("hair", "eyes") if kind in meta)


def cmd_morph(args: argparse.Namespace) -> int:
    from gan.imaging import check_size, gif_bytes

    a, b = seed_or_name(args.source), seed_or_name(args.target)
    _checked(check_size, args.size)
    if not 2 <= args.steps <= 64:
        raise CLIError("--steps must be between 2 and 64")
    gen = _load(args)
    frames = _checked(gen.interpolate, a, b, args.steps, args.truncation, args.size, args.upscaler)
    Path(args.output).write_bytes(gif_bytes(frames, args.size))
    print(f"wrote {args.output} (seed {a} -> seed {b}, {args.steps} frames, style {gen.style})")
    return 0


def cmd_styles(args: argparse.Namespace) -> int:
    from gan.styles import list_styles

    styles = list_styles(args.weights_dir)
    if not styles:
        print(f"no styles in {args.weights_dir}")
        return 1
    for info in styles:
        m = info.meta.get("metrics", {})
        fid = f"FID {m['fid']:.1f}" if isinstance(m.get("fid"), (int, float)) else "FID n/a"
        desc = info.meta.get("description") or ""
        print(f"{info.name:<16} {info.config.preset:<9} {fid:<10} {info.generator_sha256[:12]}  {desc}")
    return 0


def cmd_styles_prune(args: argparse.Namespace) -> int:
    """List the custom styles no avatar was drawn in for ``--days`` (``STYLE_PRUNE_DAYS``) days, and
    delete them with ``--yes``, the way ``/style delete`` does. Refused while a bot runs on the
    database; the bot's lock is held meanwhile, so none starts until the prune is done."""
    import asyncio

    from bot.instance import InstanceLock, InstanceLockError, lock_path

    settings = _settings()
    days = settings.style_prune_days if args.days is None else args.days
    if not days > 0:
        raise CLIError("--days must be more than 0")
    database = settings.database_path
    if not database.is_file():
        print(f"no custom styles: {database} does not exist")
        return 0
    try:
        lock = InstanceLock.acquire(database)
    except InstanceLockError:
        holder = lock_path(database).read_text(errors="replace").strip()
        who = f" (pid {holder})" if holder.isdigit() else ""
        raise CLIError(f"a bot is running on {database}{who}: stop it first, then prune its styles") from None
    with lock:
        return asyncio.run(_prune(settings, days, args.yes))


async def _prune(settings, days: float, delete: bool) -> int:
    import sqlite3
    import time

    from bot.progress import format_size
    from training.database import Database
    from training.style_store import StyleStore

    def day(t: float) -> str:
        return time.strftime("%Y-%m-%d", time.localtime(t))

    database = Database(settings.database_path)
    try:
        await database.open()
    except (RuntimeError, sqlite3.Error) as exc:  # a newer schema, or not a database
        raise CLIError(f"cannot open {settings.database_path}: {exc}") from None
    try:
        store = StyleStore(database, settings.styles_dir)
        await store.load()
        stale = await store.unused_since(time.time() - days * 86400)
        if not stale:
            print(f"no custom style has gone unused for {days:g} days")
            return 0
        print(f"{'scope':<24} {'name':<32} {'size':>8}  last used")
        for r in stale:
            used = day(r.last_used) if r.last_used is not None else f"never (made {day(r.created_at)})"
            print(f"{r.scope:<24} {r.name:<32} {format_size(r.size_bytes or 0):>8}  {used}")
        total = format_size(sum(r.size_bytes or 0 for r in stale))
        count = f"{len(stale)} style{'s' if len(stale) != 1 else ''} ({total})"
        if not delete:
            print(f"dry run: {count} unused for {days:g} days; run again with --yes to delete them")
            return 0
        for r in stale:
            await store.delete_style(r.scope, r.name)
        print(f"deleted {count}")
        return 0
    finally:
        await database.close()


def _settings():
    """The bot's settings (``.env`` and the environment), or one line naming the bad ones."""
    from pydantic import ValidationError

    from bot.config import Settings

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise CLIError(f"bad setting: {problems}") from None


def cmd_run(args: argparse.Namespace) -> int:
    from bot.runner import run

    return run(_settings(), verbose=args.verbose)


def build_parser() -> argparse.ArgumentParser:
    from gan.upscalers import UPSCALERS

    p = argparse.ArgumentParser(prog="avatarbot", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    def style_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--style", default="default", help="style name (default: default)")
        sp.add_argument("--weights-dir", default=None, help="folder of styles (default: ./weights)")
        sp.add_argument("--truncation", type=_truncation, default=None,
                        help="0.05-1.0: lower gives more typical faces (default: the style's, else 1.0)")
        sp.add_argument("--upscaler", choices=UPSCALERS, default=None,
                        help="how 64-px faces become HD: bicubic (soft), student (crisp, fast) or cugan "
                             "(Real-CUGAN, sharpest, slow); default: the style's (student)")

    def colour_options(sp: argparse.ArgumentParser) -> None:
        from gan.colours import EYE_COLOURS, HAIR_COLOURS

        sp.add_argument("--hair", help=f"hair colour: {', '.join(HAIR_COLOURS)} (styles with colour directions)")
        sp.add_argument("--eyes", help=f"eye colour: {', '.join(EYE_COLOURS)} (styles with colour directions)")

    g = sub.add_parser("generate", help="one avatar as a PNG")
    g.add_argument("--seed", type=int, help="integer in [0, 2**63); random if neither seed nor name")
    g.add_argument("--name", help="a name, mapped to a stable seed")
    g.add_argument("--size", type=int, default=256, help="output size in pixels, 64-512 (default 256)")
    g.add_argument("-o", "--output", default="avatar.png")
    style_options(g)
    colour_options(g)
    g.set_defaults(func=cmd_generate)

    gr = sub.add_parser("grid", help="several avatars in one PNG")
    gr.add_argument("--seeds", default="1-16", help="e.g. 1-16 or 3,7,42 (default 1-16)")
    gr.add_argument("--cols", type=int, default=None)
    gr.add_argument("--cell", type=int, default=128, help="size of each face (default 128)")
    gr.add_argument("-o", "--output", default="grid.png")
    style_options(gr)
    colour_options(gr)
    gr.set_defaults(func=cmd_grid)

    m = sub.add_parser("morph", help="an animated GIF morphing one face into another")
    m.add_argument("--from", dest="source", required=True, help="seed or name")
    m.add_argument("--to", dest="target", required=True, help="seed or name")
    m.add_argument("--steps", type=int, default=24)
    m.add_argument("--size", type=int, default=256)
    m.add_argument("-o", "--output", default="morph.gif")
    style_options(m)
    m.set_defaults(func=cmd_morph)

    s = sub.add_parser("styles", help="list installed styles; `styles prune` removes unused custom styles")
    s.add_argument("--weights-dir", default=None)
    s.set_defaults(func=cmd_styles, uses_tensorflow=False)
    pr = s.add_subparsers(dest="styles_command").add_parser(
        "prune", help="delete the custom styles no avatar was drawn in for N days (a dry run without --yes)")
    pr.add_argument("--days", type=float, default=None, help="days unused (default: STYLE_PRUNE_DAYS, 90)")
    pr.add_argument("--yes", action="store_true", help="delete them (without it, only list them)")
    pr.set_defaults(func=cmd_styles_prune, uses_tensorflow=False)

    r = sub.add_parser("run", help="run the chat bot on every platform that has a token (see .env.example)")
    # The bot starts TensorFlow itself once its settings, tokens and database lock check out: a
    # misconfigured bot says so in a fraction of a second.
    r.set_defaults(func=cmd_run, uses_tensorflow=False)

    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "weights_dir", "unset") is None:
        args.weights_dir = str(default_weights_dir())
    return run_command(args, "avatarbot", logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
