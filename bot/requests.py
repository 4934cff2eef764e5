"""What users ask for and how it is checked: one home for every option check.

An adapter turns a command or a button into an ``AvatarRequest`` with the options as typed; the
service calls ``make_plan`` to check them all and work out exactly which faces to draw. The button
decoder (``bot.actions``) checks the options carried in a button id with the same functions, so a
seed, truncation or colour means the same thing wherever it comes from. Hair and eye colours are
checked against what the style can draw (its colour directions, ``gan.edits``), which the service
tells ``make_plan`` through a ``Colours`` function. Every refusal is a ``UserError``
with a message fit for the user. This module imports neither discord nor telegram.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Literal, Mapping, Sequence

import numpy as np

from bot.errors import UserError
from bot.i18n import DEFAULT, _
from bot.text import echo
from gan.colours import canonical_colour
from gan.latents import MAX_SEED, latents_for_seeds, seed_for_name, slerp, variation_latents

if TYPE_CHECKING:
    from bot.actions import Action
    from bot.registry import StyleRef, StyleRegistry

Kind = Literal["avatar", "variations", "upscale", "morph"]
KINDS = ("avatar", "variations", "upscale", "morph")
VARIATIONS = 4  # faces shown by the Variations button
VARIATION_STRENGTH = 0.4
MAX_VARIATION = 64
MAX_NAME = 100
MIN_TRUNCATION, MAX_TRUNCATION = 0.05, 1.0
UPSCALE_WITH = "cugan"  # the Upscale button's upscaler: the sharpest one
_INT = re.compile(r"^\s*[+-]?\d+\s*$")
_MAX_DIGITS = len(str(MAX_SEED))  # longer numbers are refused before int() (no digit-limit errors)
COLOUR_KINDS = ("hair", "eyes")
BOTH = _("Give a seed or a name, not both.")
# A style's colours by kind ("hair", "eyes"; empty without colour directions), from its resolved ref.
Colours = Callable[["StyleRef"], Mapping[str, Sequence[str]]]


def looks_like_seed(text: str) -> bool:
    """Whether free text means a seed (an integer) rather than a name."""
    return bool(_INT.match(text))


def whole_number(text: str) -> int | None:
    """The integer ``text`` spells, or None; huge numbers come back as None before ``int()`` sees them."""
    text = text.strip()
    if not looks_like_seed(text) or len(text.lstrip("+-")) > _MAX_DIGITS:
        return None
    return int(text)


def parse_seed(value: int | str) -> int:
    """A seed from what the user typed: a whole number in [0, 2**63)."""
    seed = whole_number(str(value))
    if seed is None or not 0 <= seed < MAX_SEED:
        raise UserError.bad_input(_("The seed must be a whole number from 0 to {max}.").format(max=MAX_SEED - 1))
    return seed


def parse_name(name: str) -> tuple[int, str]:
    """A name's stable seed, and the name as shown back."""
    name = str(name).strip()
    if len(name) > MAX_NAME:
        raise UserError.bad_input(_("That name is too long (at most {max} characters).").format(max=MAX_NAME))
    return seed_for_name(name), name


def parse_seed_or_name(value: int | str | None, what: str) -> tuple[int, str | None]:
    """A seed if the text is a number, else a name's seed (with the name)."""
    if value is None or str(value).strip() == "":
        raise UserError.bad_input(_("Give a seed or a name for '{option}'.").format(option=what))
    text = str(value).strip()
    if looks_like_seed(text):
        return parse_seed(text), None
    return parse_name(text)


def parse_int(value: int | str, what: str, lo: int, hi: int) -> int:
    """A whole number option in [lo, hi]."""
    number = whole_number(str(value))
    if number is None or not lo <= number <= hi:
        raise UserError.bad_input(_("{option} must be a whole number from {low} to {high}.").format(
            option=what, low=lo, high=hi))
    return number


def parse_truncation(value: float | str) -> float:
    """Truncation psi in [0.05, 1], rounded to two decimals (as buttons carry it)."""
    try:
        psi = float(str(value).strip())
    except ValueError:
        psi = math.nan
    if not MIN_TRUNCATION <= psi <= MAX_TRUNCATION:  # also refuses NaN
        raise UserError.bad_input(_("truncation must be a number from 0.05 to 1 (lower: more typical faces)."))
    return round(psi, 2)


def parse_colour(value: str | None, kind: str, style: str, colours: Sequence[str]) -> str | None:
    """A hair or eye colour as the style names it ("Silver" -> "white"), None when not asked for, or a
    ``UserError`` naming the colours there are (or saying the style has none)."""
    if value is None or str(value).strip() == "":
        return None
    if not colours:
        raise UserError.bad_input(_("Style {style} has no colour controls: hair and eye colours work only in "
                                    "styles that ship colour directions.").format(style=repr(style)))
    name = canonical_colour(value)
    if name not in colours:
        unknown = (_("Unknown eye colour {colour}. Eye colours in style {style}: {colours}.") if kind == "eyes"
                   else _("Unknown hair colour {colour}. Hair colours in style {style}: {colours}."))
        raise UserError.bad_input(unknown.format(colour=repr(echo(str(value).strip())), style=repr(style),
                                                 colours=", ".join(colours)))
    return name


@dataclass(frozen=True)
class AvatarRequest:
    """What a user asked for, on any platform, as typed (``make_plan`` checks it).

    ``seed`` and ``target`` (the end of a morph) take an integer or its text; for a morph both also
    take a name. ``user_id`` and ``chat_id`` are the platform's ids; for Discord the chat is the
    server (or the DM channel). ``locale`` is the user's language (``bot.i18n``): the reply's texts
    are rendered in it.
    """

    platform: str
    user_id: str
    chat_id: str
    kind: Kind = "avatar"
    seed: int | str | None = None
    name: str | None = None
    target: int | str | None = None
    style: str | None = None
    count: int | str = 1
    truncation: float | str | None = None  # None: the style's default
    variation: int | str = 0
    hair: str | None = None  # a colour name (or alias) of the style's colour directions
    eyes: str | None = None
    locale: str = DEFAULT

    @classmethod
    def from_action(cls, action: "Action", platform: str, user_id: str, chat_id: str,
                    locale: str = DEFAULT) -> "AvatarRequest":
        """The request a button click makes."""
        base = cls(platform, user_id, chat_id, style=action.style, truncation=action.truncation,
                   hair=action.hair, eyes=action.eyes, locale=locale)
        if action.verb == "r":
            return replace(base, count=action.count)
        if action.verb == "v":
            return replace(base, kind="variations", seed=action.seed)
        if action.verb == "u":
            return replace(base, kind="upscale", seed=action.seed, variation=action.variation)
        if action.verb == "m":
            return replace(base, kind="morph", seed=action.seed)
        return replace(base, seed=action.seed, variation=action.variation)


@dataclass(frozen=True)
class Plan:
    """A checked request: exactly which faces to draw, at which size, through which upscaler, and how
    to deliver them (``ref``: the resolved style, whose folder and weights hash pick the generator;
    ``upscaler`` None means the style's own; ``hair`` and ``eyes`` the colour edit, applied to every
    face's latent by ``AvatarGenerator.edit`` before the faces are drawn)."""

    kind: str
    style: str
    seed: int
    truncation: float
    size: int
    name: str | None = None
    variation: int = 0
    count: int = 1
    target: int | None = None
    target_name: str | None = None
    frames: int = 0
    ref: "StyleRef | None" = None
    upscaler: str | None = None
    hair: str | None = None
    eyes: str | None = None

    @property
    def cost(self) -> int:
        """Faces to draw."""
        return {"variations": VARIATIONS, "morph": self.frames}.get(self.kind, self.count)

    @property
    def media(self) -> Literal["photo", "document", "animation"]:
        return {"upscale": "document", "morph": "animation"}.get(self.kind, "photo")  # type: ignore[return-value]

    @property
    def face_size(self) -> int:
        """The size each face is drawn at: the picture's, or half of it for the faces of a grid."""
        return self.size // 2 if self.kind == "variations" or self.count > 1 else self.size

    def latents(self, dim: int) -> np.ndarray:
        """The (cost, dim) latents of the faces, from the public seed contract (before any colour edit)."""
        psi = self.truncation
        if self.kind == "variations":
            return variation_latents(self.seed, dim, VARIATIONS, VARIATION_STRENGTH, psi)
        if self.kind == "morph":
            ends = latents_for_seeds([self.seed, self.target], dim)
            return (slerp(ends[0], ends[1], self.frames) * np.float32(psi)).astype(np.float32)
        if self.variation:
            return variation_latents(self.seed, dim, self.variation, VARIATION_STRENGTH, psi)[-1:]
        return latents_for_seeds([(self.seed + i) % MAX_SEED for i in range(self.count)], dim, psi)


def _no_colours(ref: "StyleRef") -> Mapping[str, Sequence[str]]:
    return {}


def make_plan(request: AvatarRequest, registry: "StyleRegistry", output_size: int, upscale_size: int,
              max_grid: int, morph_frames: int, colours: Colours = _no_colours) -> Plan:
    """Check every option of a request and work out exactly what to draw (or raise ``UserError``).
    ``colours`` tells which hair and eye colours a style can draw; it is asked only when the request
    names a colour."""
    if request.kind not in KINDS:
        raise UserError.bad_input(_("Unknown request {kind}.").format(kind=repr(request.kind)))
    ref = registry.resolve(request.style, request.platform, request.chat_id)
    style = ref.name
    given = request.truncation is not None and str(request.truncation).strip() != ""
    psi = parse_truncation(request.truncation) if given else ref.truncation
    edit = {}
    if any(str(getattr(request, kind) or "").strip() for kind in COLOUR_KINDS):
        drawable = colours(ref)
        edit = {kind: parse_colour(getattr(request, kind), kind, style, drawable.get(kind, ()))
                for kind in COLOUR_KINDS}
    if request.kind == "morph":
        if edit:
            raise UserError.bad_input(_("A morph is drawn in the faces' own colours: leave out hair and eyes."))
        seed, name = parse_seed_or_name(request.seed, "from")
        if request.target is None or str(request.target).strip() == "":
            target, target_name = secrets.randbelow(MAX_SEED), None
        else:
            target, target_name = parse_seed_or_name(request.target, "to")
        return Plan("morph", style, seed, psi, min(output_size, 256), name=name, target=target,
                    target_name=target_name, frames=morph_frames, ref=ref)
    if request.seed is not None and request.name is not None and str(request.name).strip():
        raise UserError.bad_input(BOTH)
    if request.name is not None and str(request.name).strip():
        seed, name = parse_name(request.name)
    elif request.seed is None or str(request.seed).strip() == "":
        if request.kind != "avatar":
            raise UserError.bad_input(_("Which face? Give a seed."))
        seed, name = secrets.randbelow(MAX_SEED), None
    else:
        seed, name = parse_seed(request.seed), None
    variation = parse_int(request.variation, "variation", 0, MAX_VARIATION)
    count = parse_int(request.count, "count", 1, max_grid)
    if count > 1 and (variation or request.kind != "avatar"):
        raise UserError.bad_input(_("count works only for plain avatars (no variation)."))
    if request.kind == "variations":
        return Plan("variations", style, seed, psi, output_size, name=name, ref=ref, **edit)
    if request.kind == "upscale":
        return Plan("upscale", style, seed, psi, upscale_size, name=name, variation=variation, ref=ref,
                    upscaler=UPSCALE_WITH, **edit)
    return Plan("avatar", style, seed, psi, output_size, name=name, variation=variation, count=count, ref=ref,
                **edit)
