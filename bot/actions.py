"""Buttons under a reply, with their whole state in the button's id so they survive restarts.

An id looks like ``av1:v:ab12cd:0:.7:1:default`` (verb, seed in base 36, variation, truncation,
count, style). A face with a colour edit adds it to the verb: ``f5-`` is a face with hair colour 5
and no eye colour, by index in ``gan.colours.HAIR_COLOURS`` and ``EYE_COLOURS`` (in base 36, ``-``
for none). An id is at most 64 characters (a 13-digit seed, variation 64, truncation .05, a
32-character style and both colours), inside Telegram's 64-byte ``callback_data`` and Discord's
100-character ``custom_id``; ids of earlier versions (truncation written ``0.7``) still decode.
Both adapters use this module; a click becomes an ``AvatarRequest``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bot.errors import UserError
from bot.i18n import DEFAULT, Text, _, render
from bot.requests import MAX_VARIATION, parse_int, parse_seed, parse_truncation
from gan.colours import EYE_COLOURS, HAIR_COLOURS, canonical_colour
from gan.styles import STYLE_NAME

PREFIX = "av1"
VERBS = {
    "r": _("Reroll"),      # a new random face (or grid) in the same style
    "v": _("Variations"),  # four faces near this one
    "u": _("Upscale"),     # this face at the upscale size, as a file
    "m": _("Morph"),       # a GIF from this face to a random one
    "f": _("Pick"),        # this face on its own (from a grid)
}
EMOJI = {"r": "\N{GAME DIE}", "v": "\N{SPARKLES}", "u": "\N{LEFT-POINTING MAGNIFYING GLASS}",
         "m": "\N{FILM FRAMES}", "f": ""}
MAX_COUNT = 16
NO_COLOUR = "-"
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_PALETTES = {"hair": HAIR_COLOURS, "eyes": EYE_COLOURS}


def _b36(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _DIGITS[r] + out
        if n == 0:
            return out


def _colour_char(kind: str, colour: str | None) -> str:
    """One character for a colour: its index in the ``gan.colours`` list of its kind, or ``-``."""
    return NO_COLOUR if colour is None else _DIGITS[_PALETTES[kind].index(canonical_colour(colour))]


def _colour_of(kind: str, char: str) -> str | None:
    """The colour a character of an id stands for (``ValueError`` when none)."""
    if char == NO_COLOUR:
        return None
    index = _DIGITS.index(char)
    if index >= len(_PALETTES[kind]):
        raise ValueError(char)
    return _PALETTES[kind][index]


@dataclass(frozen=True)
class Action:
    """What a button does, and on which face."""

    verb: str
    seed: int
    style: str
    variation: int = 0
    truncation: float = 1.0
    count: int = 1
    label_text: "str | Text" = ""
    hair: str | None = None  # the colour edit of the faces it draws (names from gan.colours)
    eyes: str | None = None

    @property
    def label(self) -> str:
        """The button's text in English (``localized`` gives it in a user's language)."""
        return self.label_in(DEFAULT)

    def label_in(self, locale: str) -> str:
        """The button's text in ``locale``."""
        if self.label_text:
            return render(self.label_text, locale)
        return f"{EMOJI[self.verb]} {VERBS[self.verb].render(locale)}".strip()

    def localized(self, locale: str) -> "Action":
        """This action with its label rendered in ``locale`` (the id does not change)."""
        return replace(self, label_text=self.label_in(locale))

    def encode(self) -> str:
        """The button id carrying this action's whole state."""
        verb = self.verb
        if self.hair is not None or self.eyes is not None:
            verb += _colour_char("hair", self.hair) + _colour_char("eyes", self.eyes)
        truncation = f"{self.truncation:g}".removeprefix("0")  # ".7": one character to spare for colours
        return ":".join((PREFIX, verb, _b36(self.seed), str(self.variation), truncation, str(self.count),
                         self.style))

    @classmethod
    def decode(cls, data: str) -> "Action":
        """Parse a button id; ``ValueError`` when it is not one of ours or is damaged."""
        parts = data.split(":")
        if len(parts) != 7 or parts[0] != PREFIX:
            raise ValueError(f"not an avatar button: {data[:80]!r}")
        _prefix, verb_colours, seed36, variation, truncation, count, style = parts
        verb, colours = verb_colours[:1], verb_colours[1:]
        try:  # the same checks as typed options (bot.requests)
            if (verb not in VERBS or len(colours) not in (0, 2) or colours == NO_COLOUR * 2
                    or not STYLE_NAME.match(style) or not 0 < len(seed36) <= 13):
                raise ValueError
            hair, eyes = (_colour_of("hair", colours[0]), _colour_of("eyes", colours[1])) if colours else (None, None)
            seed = parse_seed(str(int(seed36, 36)))
            return cls(verb, seed, style, parse_int(variation, "variation", 0, MAX_VARIATION),
                       parse_truncation(truncation), parse_int(count, "count", 1, MAX_COUNT), hair=hair, eyes=eyes)
        except (UserError, ValueError):
            raise ValueError(f"damaged avatar button: {data[:80]!r}") from None


def is_action(data: str | None) -> bool:
    """Whether a button id belongs to this bot."""
    return bool(data) and data.startswith(PREFIX + ":")
