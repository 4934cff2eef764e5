"""Buttons under a reply, with their whole state in the button's id so they survive restarts.

An id looks like ``av1:v:ab12cd:0:0.7:1:default`` (verb, seed in base 36, variation, truncation,
count, style): at most 58 characters, inside Telegram's 64-byte ``callback_data`` and Discord's
100-character ``custom_id``. Both adapters use this module; a click becomes an ``AvatarRequest``.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.errors import UserError
from bot.requests import MAX_VARIATION, parse_int, parse_seed, parse_truncation
from gan.styles import STYLE_NAME

PREFIX = "av1"
VERBS = {
    "r": "Reroll",      # a new random face (or grid) in the same style
    "v": "Variations",  # four faces near this one
    "u": "Upscale",     # this face at the upscale size, as a file
    "m": "Morph",       # a GIF from this face to a random one
    "f": "Pick",        # this face on its own (from a grid)
}
EMOJI = {"r": "\N{GAME DIE}", "v": "\N{SPARKLES}", "u": "\N{LEFT-POINTING MAGNIFYING GLASS}",
         "m": "\N{FILM FRAMES}", "f": ""}
MAX_COUNT = 16


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


@dataclass(frozen=True)
class Action:
    """What a button does, and on which face."""

    verb: str
    seed: int
    style: str
    variation: int = 0
    truncation: float = 1.0
    count: int = 1
    label_text: str = ""

    @property
    def label(self) -> str:
        """The button's text."""
        if self.label_text:
            return self.label_text
        return f"{EMOJI[self.verb]} {VERBS[self.verb]}".strip()

    def encode(self) -> str:
        """The button id carrying this action's whole state."""
        return ":".join((PREFIX, self.verb, _b36(self.seed), str(self.variation), f"{self.truncation:g}",
                         str(self.count), self.style))

    @classmethod
    def decode(cls, data: str) -> "Action":
        """Parse a button id; ``ValueError`` when it is not one of ours or is damaged."""
        parts = data.split(":")
        if len(parts) != 7 or parts[0] != PREFIX:
            raise ValueError(f"not an avatar button: {data[:80]!r}")
        _, verb, seed36, variation, truncation, count, style = parts
        try:  # the same checks as typed options (bot.requests)
            if verb not in VERBS or not STYLE_NAME.match(style) or not 0 < len(seed36) <= 13:
                raise ValueError
            seed = parse_seed(str(int(seed36, 36)))
            return cls(verb, seed, style, parse_int(variation, "variation", 0, MAX_VARIATION),
                       parse_truncation(truncation), parse_int(count, "count", 1, MAX_COUNT))
        except (UserError, ValueError):
            raise ValueError(f"damaged avatar button: {data[:80]!r}") from None


def is_action(data: str | None) -> bool:
    """Whether a button id belongs to this bot."""
    return bool(data) and data.startswith(PREFIX + ":")
