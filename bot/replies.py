"""Replies: a drawn request turned into the file, text and buttons an adapter sends.

Built in an encoder thread from a ``Plan`` and its faces (already at their final size). The file
carries its reproduction metadata (seed, style, truncation, upscaler, weights hashes, a colour edit),
the ``Command`` says how to ask for the same picture again in the chat, and ``cli`` is the
``avatarbot`` command line that draws the same pixels, where the command line can. A single face in a
style with colour directions gets a row of hair colour buttons (``Reply.colours``). This module
imports neither discord nor telegram.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from bot.actions import Action
from bot.requests import VARIATION_STRENGTH, VARIATIONS, Plan
from gan.imaging import avatar_png, gif_bytes, grid, png_bytes
from gan.latents import MAX_SEED

UPSCALER_LABELS = {"bicubic": "bicubic", "student": "HD (fast)", "cugan": "Real-CUGAN"}
CLI_SIZE = 256  # ``avatarbot generate``'s default --size, left out of the command lines below
# The hair colour buttons show the colour before its name (a coloured circle where Unicode has one).
SWATCHES = {"black": "\N{MEDIUM BLACK CIRCLE}", "brown": "\N{LARGE BROWN CIRCLE}",
            "blonde": "\N{LARGE YELLOW CIRCLE}", "red": "\N{LARGE RED CIRCLE}", "pink": "\N{CHERRY BLOSSOM}",
            "blue": "\N{LARGE BLUE CIRCLE}", "green": "\N{LARGE GREEN CIRCLE}",
            "purple": "\N{LARGE PURPLE CIRCLE}", "white": "\N{MEDIUM WHITE CIRCLE}"}
ORIGINAL = "\N{LEFTWARDS ARROW WITH HOOK} original"  # the button that takes a hair edit off again
COLOUR_ROW = 5  # hair colour buttons per row on both platforms (Discord's most; short on a phone)


@dataclass(frozen=True)
class Command:
    """A command that reproduces a reply; each adapter writes it in its platform's syntax."""

    name: str
    args: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Reply:
    """A finished answer: one file, how to present it, and the buttons under it (``actions`` in one
    row, then ``colours``, the hair colour buttons, in rows of ``COLOUR_ROW``)."""

    kind: str
    media: Literal["photo", "document", "animation"]
    filename: str
    data: bytes
    title: str
    fields: tuple[tuple[str, str], ...]
    command: Command
    hint: str = ""
    actions: tuple[Action, ...] = ()
    weights_sha256: str = ""
    colours: tuple[Action, ...] = ()
    cli: str = ""


def _face_args(plan: Plan) -> list[tuple[str, str]]:
    args = [("name", plan.name)] if plan.name else [("seed", str(plan.seed))]
    if plan.variation:
        args.append(("variation", str(plan.variation)))
    return args


def _common_args(plan: Plan) -> list[tuple[str, str]]:
    args = [("style", plan.style)]
    style_default = plan.ref.truncation if plan.ref is not None else 1.0
    if plan.truncation != 1.0 or style_default != 1.0:  # stays exact if the style's default changes
        args.append(("truncation", f"{plan.truncation:g}"))
    return args + _colour_args(plan)


def _colour_args(plan: Plan) -> list[tuple[str, str]]:
    return [(kind, colour) for kind, colour in (("hair", plan.hair), ("eyes", plan.eyes)) if colour]


def _fields(plan: Plan) -> list[tuple[str, str]]:
    fields = [("Seed", str(plan.seed))]
    if plan.name:
        fields.insert(0, ("Name", plan.name))
    if plan.variation:
        fields.append(("Variation", str(plan.variation)))
    fields += [("Style", plan.style), ("Truncation", f"{plan.truncation:g}")]
    return fields + [(kind.capitalize(), colour) for kind, colour in _colour_args(plan)]


def _colour_words(plan: Plan) -> str:
    """", blue hair, red eyes" for a colour edit ("" without one)."""
    return "".join(f", {colour} {kind}" for kind, colour in _colour_args(plan))


def _colour_suffix(plan: Plan) -> str:
    return "".join(f"-{colour}-{kind}" for kind, colour in _colour_args(plan))


def face_reply(plan: Plan) -> Reply:
    """What the reply to a single-face plan says: its title, fields and reproducing command (no file
    and no buttons yet). ``build_reply`` and Telegram's inline results both describe a face with it."""
    title = plan.name or f"Seed {plan.seed}"
    if plan.variation:
        title += f", variation {plan.variation}"
    return Reply("avatar", "photo", "", b"", title + _colour_words(plan), tuple(_fields(plan)),
                 Command("avatar", tuple(_face_args(plan) + _common_args(plan))))


def cli_command(plan: Plan) -> str:
    """The ``avatarbot`` command line that draws the same picture (the same pixels), or "" where it
    has no such command (variations, morphs)."""
    if plan.kind == "variations" or plan.kind == "morph" or plan.variation:
        return ""
    if plan.count > 1:
        seeds = ",".join(str((plan.seed + i) % MAX_SEED) for i in range(plan.count))
        words = ["avatarbot", "grid", "--seeds", seeds, "--cols", "2", "--cell", str(plan.face_size)]
    else:
        face = ["--name", plan.name] if plan.name else ["--seed", str(plan.seed)]
        words = ["avatarbot", "generate", *face]
        if plan.size != CLI_SIZE:
            words += ["--size", str(plan.size)]
    for key, value in _common_args(plan):
        words += [f"--{key}", value]
    if plan.upscaler:
        words += ["--upscaler", plan.upscaler]
    return shlex.join(words)


def _colour_buttons(plan: Plan, gen, act: dict) -> tuple[Action, ...]:
    """The hair colour row under a single face: each other colour the style draws, and ``ORIGINAL``
    under a face whose hair was recoloured; the seed, variation, truncation and eye colour stay."""
    buttons = [Action("f", plan.seed, variation=plan.variation,
                      label_text=f"{SWATCHES.get(colour, '')} {colour}".strip(), **{**act, "hair": colour})
               for colour in gen.colours("hair") if colour != plan.hair]
    if plan.hair is not None:
        buttons.append(Action("f", plan.seed, variation=plan.variation, label_text=ORIGINAL,
                              **{**act, "hair": None}))
    return tuple(buttons)


def _face_grid(images: np.ndarray, cell: int, metadata: dict) -> bytes:
    """Several faces tiled two per row (one alone) as one PNG."""
    return png_bytes(grid(images, cols=1 if len(images) == 1 else 2, cell=cell), metadata)


def build_reply(plan: Plan, images: np.ndarray, gen) -> Reply:
    """The reply to a plan, from its faces (drawn at ``plan.face_size``) and their generator."""
    meta = gen.metadata(plan.seed, plan.truncation, plan.upscaler, plan.face_size, hair=plan.hair, eyes=plan.eyes)
    sha = gen.weights_sha256
    act = dict(style=plan.style, truncation=plan.truncation, hair=plan.hair, eyes=plan.eyes)
    if plan.kind == "morph":
        args = [("from", plan.name or str(plan.seed)), ("to", plan.target_name or str(plan.target))]
        return Reply("morph", "animation", f"morph-{plan.seed}-{plan.target}.gif",
                     gif_bytes(images, plan.size), f"Seed {plan.seed} \N{RIGHTWARDS ARROW} seed {plan.target}",
                     (("From", str(plan.seed)), ("To", str(plan.target)), ("Style", plan.style),
                      ("Truncation", f"{plan.truncation:g}")),
                     Command("morph", tuple(args + _common_args(plan))), weights_sha256=sha)
    if plan.kind == "variations":
        data = _face_grid(images, plan.size // 2, {**meta, "variations": f"1-{VARIATIONS}",
                                                   "variation_strength": VARIATION_STRENGTH})
        picks = tuple(Action("f", plan.seed, variation=i + 1, label_text=str(i + 1), **act)
                      for i in range(VARIATIONS))
        return Reply("variations", "photo", f"variations-{plan.seed}{_colour_suffix(plan)}.png", data,
                     f"Variations of seed {plan.seed}{_colour_words(plan)}", tuple(_fields(plan)),
                     Command("avatar", (("seed", str(plan.seed)), ("variation", "N")) + tuple(_common_args(plan))),
                     hint=f"N = 1 to {VARIATIONS}, left to right, top to bottom; or pick one below.",
                     actions=picks + (Action("r", plan.seed, **act),), weights_sha256=sha)
    if plan.count > 1:
        seeds = [(plan.seed + i) % MAX_SEED for i in range(plan.count)]
        data = _face_grid(images, plan.size // 2, {**meta, "seeds": ",".join(map(str, seeds))})
        picks = tuple(Action("f", s, label_text=str(i + 1), **act) for i, s in enumerate(seeds))
        return Reply("grid", "photo", f"avatars-{plan.seed}{_colour_suffix(plan)}.png", data,
                     f"Seeds {seeds[0]} to {seeds[-1]}{_colour_words(plan)}",
                     tuple(_fields(plan)) + (("Count", str(plan.count)),),
                     Command("avatar", tuple(_face_args(plan)) + (("count", str(plan.count)),)
                             + tuple(_common_args(plan))),
                     actions=picks + (Action("r", plan.seed, count=plan.count, **act),), weights_sha256=sha,
                     cli=cli_command(plan))
    if plan.name:
        meta["name"] = plan.name
    if plan.variation:
        meta.update(variation=plan.variation, variation_strength=VARIATION_STRENGTH)
    data = avatar_png(images[0], plan.size, meta)
    suffix = (f"-v{plan.variation}" if plan.variation else "") + _colour_suffix(plan)
    described = replace(face_reply(plan), data=data, weights_sha256=sha, cli=cli_command(plan))
    if plan.kind == "upscale":
        upscaler = UPSCALER_LABELS.get(str(meta["upscaler"]), str(meta["upscaler"]))
        return replace(described, kind="upscale", media="document",
                       filename=f"avatar-{plan.seed}{suffix}-{plan.size}px.png",
                       fields=described.fields + (("Size", f"{plan.size} px"), ("Upscaler", upscaler)))
    face = dict(variation=plan.variation, **act)
    actions = [Action("r", plan.seed, **act), Action("v", plan.seed, **face), Action("u", plan.seed, **face),
               Action("m", plan.seed, **face)]
    if plan.variation:  # variations and morphs start from a seed's own face
        actions = [a for a in actions if a.verb in "ru"]
    elif plan.hair or plan.eyes:  # a morph is drawn in the faces' own colours
        actions = [a for a in actions if a.verb != "m"]
    return replace(described, filename=f"avatar-{plan.seed}{suffix}.png", actions=tuple(actions),
                   colours=_colour_buttons(plan, gen, act))
