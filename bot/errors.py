"""The one error type users see: cooldown, busy, bad input, not allowed.

Adapters show a ``UserError`` politely (ephemeral on Discord, a short reply or an alert on Telegram)
in the user's language: ``error.render(locale)``; ``str(error)`` is the English text. Anything else is a
bug, logged once with its traceback, and the user gets ``APOLOGY``.
"""

from __future__ import annotations

import enum
import math

from bot.i18n import DEFAULT, Text, _

APOLOGY = _("Sorry, something went wrong while drawing that. Please try again in a moment.")
RESTARTING = _("I'm restarting right now: please try again in a minute.")


class ErrorKind(enum.Enum):
    """Why a request was refused."""

    COOLDOWN = "cooldown"
    BUSY = "busy"
    BAD_INPUT = "bad input"
    NOT_ALLOWED = "not allowed"


class UserError(Exception):
    """A refusal the user can act on. ``text`` is the message (translated when rendered); a plain
    string is shown as it is, in every language."""

    def __init__(self, kind: ErrorKind, message: Text | str, retry_after: float | None = None) -> None:
        self.text = message if isinstance(message, Text) else Text("{message}", params=(("message", message),))
        super().__init__(str(self.text))
        self.kind = kind
        self.retry_after = retry_after

    @property
    def message(self) -> str:
        """The English text."""
        return str(self.text)

    def render(self, locale: str = DEFAULT) -> str:
        """The message in the user's language."""
        return self.text.render(locale)

    def __str__(self) -> str:
        return self.message

    @classmethod
    def bad_input(cls, message: Text | str) -> "UserError":
        return cls(ErrorKind.BAD_INPUT, message)

    @classmethod
    def cooldown(cls, retry_after: float) -> "UserError":
        wait = max(1, math.ceil(retry_after))
        return cls(ErrorKind.COOLDOWN, _("Slow down a little: try again in {wait} s.").format(wait=wait), retry_after)

    @classmethod
    def busy(cls, retry_after: float, reason: Text | str = _("I'm busy drawing for others")) -> "UserError":
        wait = max(1, math.ceil(retry_after))
        return cls(ErrorKind.BUSY, _("{reason}: try again in {wait} s.").format(reason=reason, wait=wait), retry_after)
