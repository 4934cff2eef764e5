"""Replies: a drawn request turned into the file, text and buttons an adapter sends.

Built in an encoder thread from a ``Plan`` and its faces (already at their final size). The file
carries its reproduction metadata (seed, style, truncation, upscaler, weights hashes, a colour edit),
the ``Command`` says how to ask for the same picture again in the chat, and ``cli`` is the
``avatarbot`` command line that draws the same pixels, where the command line can. A single face in a
style with colour directions gets a row of hair colour buttons (``Reply.colours``). Its texts (title,
field names, hint, button labels) stay ``bot.i18n.Text`` until ``Reply.localized`` renders them in a
user's language: one cached reply serves every language. This module imports neither discord nor
telegram.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from bot.actions import Action
from bot.i18n import Text, _, render
from bot.requests import VARIATION_STRENGTH, VARIATIONS, Plan
from gan.imaging import avatar_png, gif_bytes, grid, png_bytes
from gan.latents import MAX_SEED

UPSCALER_LABELS = {"bicubic": "bicubic", "student": _("HD (fast)"), "cugan": "Real-CUGAN"}
CLI_SIZE = 256  # ``avatarbot generate``'s default --size, left out of the command lines below
# The hair colour buttons show the colour before its name (a coloured circle where Unicode has one).
SWATCHES = {"black": "\N{MEDIUM BLACK CIRCLE}", "brown": "\N{LARGE BROWN CIRCLE}",
            "blonde": "\N{LARGE YELLOW CIRCLE}", "red": "\N{LARGE RED CIRCLE}", "pink": "\N{CHERRY BLOSSOM}",
            "blue": "\N{LARGE BLUE CIRCLE}", "green": "\N{LARGE GREEN CIRCLE}",
            "purple": "\N{LARGE PURPLE CIRCLE}", "white": "\N{MEDIUM WHITE CIRCLE}"}
# Colour words as chat texts show them, translated (the values users type, the reproducing command and
# the PNG metadata keep the English word).
COLOUR_NAMES = {"black": _("black"), "brown": _("brown"), "blonde": _("blonde"), "red": _("red"),
                "pink": _("pink"), "blue": _("blue"), "green": _("green"), "purple": _("purple"),
                "white": _("white")}
# The button that takes a hair edit off again.
ORIGINAL = _("{arrow} original").format(arrow="\N{LEFTWARDS ARROW WITH HOOK}")
COLOUR_ROW = 5  # hair colour buttons per row on both platforms (Discord's most; short on a phone)


@dataclass(frozen=True)
class Command:
    """A command that reproduces a reply; each adapter writes it in its platform's syntax."""

    name: str
    args: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Reply:
    """A finished answer: one file, how to present it, and the buttons under it (``actions`` in one
    row, then ``colours``, the hair colour buttons, in rows of ``COLOUR_ROW``). Texts are ``str`` or
    lazy ``Text`` until ``localized``."""

    kind: str
    media: Literal["photo", "document", "animation"]
    filename: str
    data: bytes
    title: "str | Text"
    fields: tuple[tuple["str | Text", "str | Text"], ...]
    command: Command
    hint: "str | Text" = ""
    actions: tuple[Action, ...] = ()
    weights_sha256: str = ""
    colours: tuple[Action, ...] = ()
    cli: str = ""

    def localized(self, locale: str) -> "Reply":
        """This reply with every text, button labels included, in ``locale`` (``bot.i18n``)."""
        return replace(self, title=render(self.title, locale), hint=render(self.hint, locale),
                       fields=tuple((render(k, locale), render(v, locale)) for k, v in self.fields),
                       actions=tuple(a.localized(locale) for a in self.actions),
                       colours=tuple(a.localized(locale) for a in self.colours))


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


COLOUR_FIELDS = {"hair": _("Hair"), "eyes": _("Eyes")}


def _fields(plan: Plan) -> list[tuple[Text, str]]:
    fields = [(_("Seed"), str(plan.seed))]
    if plan.name:
        fields.insert(0, (_("Name"), plan.name))
    if plan.variation:
        fields.append((_("Variation"), str(plan.variation)))
    fields += [(_("Style"), plan.style), (_("Truncation"), f"{plan.truncation:g}")]
    return fields + [(COLOUR_FIELDS[kind], colour) for kind, colour in _colour_args(plan)]


def _with_colours(title: "str | Text", plan: Plan) -> "str | Text":
    """A title followed by a colour edit's words: "Seed 42, blue hair, red eyes"."""
    if plan.hair:
        title = _("{title}, {colour} hair").format(title=title, colour=colour_name(plan.hair))
    if plan.eyes:
        title = _("{title}, {colour} eyes").format(title=title, colour=colour_name(plan.eyes))
    return title


def colour_name(colour: str) -> "str | Text":
    """A colour word to show in a chat, translated when it renders (an unknown word as it is)."""
    return COLOUR_NAMES.get(colour, colour)


def _colour_suffix(plan: Plan) -> str:
    return "".join(f"-{colour}-{kind}" for kind, colour in _colour_args(plan))


def face_reply(plan: Plan) -> Reply:
    """What the reply to a single-face plan says: its title, fields and reproducing command (no file
    and no buttons yet). ``build_reply`` and Telegram's inline results both describe a face with it."""
    title: str | Text = plan.name or _("Seed {seed}").format(seed=plan.seed)
    if plan.variation:
        title = _("{title}, variation {variation}").format(title=title, variation=plan.variation)
    return Reply("avatar", "photo", "", b"", _with_colours(title, plan), tuple(_fields(plan)),
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


def _swatched(colour: str) -> "str | Text":
    """A hair colour button's label: its swatch, then its translated name."""
    if colour not in SWATCHES:
        return colour_name(colour)
    # Not marked for translation: only the colour inside it is a word.
    return Text("{swatch} {colour}").format(swatch=SWATCHES[colour], colour=colour_name(colour))


def _colour_buttons(plan: Plan, gen, act: dict) -> tuple[Action, ...]:
    """The hair colour row under a single face: each other colour the style draws, and ``ORIGINAL``
    under a face whose hair was recoloured; the seed, variation, truncation and eye colour stay."""
    buttons = [Action("f", plan.seed, variation=plan.variation,
                      label_text=_swatched(colour), **{**act, "hair": colour})
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
                     gif_bytes(images, plan.size),
                     _("Seed {seed} {arrow} seed {target}").format(seed=plan.seed, arrow="\N{RIGHTWARDS ARROW}",
                                                                   target=plan.target),
                     ((_("From"), str(plan.seed)), (_("To"), str(plan.target)), (_("Style"), plan.style),
                      (_("Truncation"), f"{plan.truncation:g}")),
                     Command("morph", tuple(args + _common_args(plan))), weights_sha256=sha)
    if plan.kind == "variations":
        data = _face_grid(images, plan.size // 2, {**meta, "variations": f"1-{VARIATIONS}",
                                                   "variation_strength": VARIATION_STRENGTH})
        picks = tuple(Action("f", plan.seed, variation=i + 1, label_text=str(i + 1), **act)
                      for i in range(VARIATIONS))
        return Reply("variations", "photo", f"variations-{plan.seed}{_colour_suffix(plan)}.png", data,
                     _with_colours(_("Variations of seed {seed}").format(seed=plan.seed), plan), tuple(_fields(plan)),
                     Command("avatar", (("seed", str(plan.seed)), ("variation", "N")) + tuple(_common_args(plan))),
                     hint=_("N = 1 to {count}, left to right, top to bottom; or pick one below.").format(
                         count=VARIATIONS),
                     actions=picks + (Action("r", plan.seed, **act),), weights_sha256=sha)
    if plan.count > 1:
        seeds = [(plan.seed + i) % MAX_SEED for i in range(plan.count)]
        data = _face_grid(images, plan.size // 2, {**meta, "seeds": ",".join(map(str, seeds))})
        picks = tuple(Action("f", s, label_text=str(i + 1), **act) for i, s in enumerate(seeds))
        return Reply("grid", "photo", f"avatars-{plan.seed}{_colour_suffix(plan)}.png", data,
                     _with_colours(_("Seeds {first} to {last}").format(first=seeds[0], last=seeds[-1]), plan),
                     tuple(_fields(plan)) + ((_("Count"), str(plan.count)),),
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
        upscaler: str | Text = UPSCALER_LABELS.get(str(meta["upscaler"]), str(meta["upscaler"]))
        return replace(described, kind="upscale", media="document",
                       filename=f"avatar-{plan.seed}{suffix}-{plan.size}px.png",
                       fields=described.fields + ((_("Size"), f"{plan.size} px"), (_("Upscaler"), upscaler)))
    face = dict(variation=plan.variation, **act)
    actions = [Action("r", plan.seed, **act), Action("v", plan.seed, **face), Action("u", plan.seed, **face),
               Action("m", plan.seed, **face)]
    if plan.variation:  # variations and morphs start from a seed's own face
        actions = [a for a in actions if a.verb in "ru"]
    elif plan.hair or plan.eyes:  # a morph is drawn in the faces' own colours
        actions = [a for a in actions if a.verb != "m"]
    return replace(described, filename=f"avatar-{plan.seed}{suffix}.png", actions=tuple(actions),
                   colours=_colour_buttons(plan, gen, act))
