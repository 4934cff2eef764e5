"""The one error type users see: cooldown, busy, bad input, not allowed.

Adapters show a ``UserError`` politely (ephemeral on Discord, a short reply or an alert on Telegram);
anything else is a bug, logged once with its traceback, and the user gets ``APOLOGY``.
"""

from __future__ import annotations

import enum
import math

APOLOGY = "Sorry, something went wrong while drawing that. Please try again in a moment."


class ErrorKind(enum.Enum):
    """Why a request was refused."""

    COOLDOWN = "cooldown"
    BUSY = "busy"
    BAD_INPUT = "bad input"
    NOT_ALLOWED = "not allowed"


class UserError(Exception):
    """A refusal the user can act on; ``str(error)`` is the message to show them."""

    def __init__(self, kind: ErrorKind, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message

    @classmethod
    def bad_input(cls, message: str) -> "UserError":
        return cls(ErrorKind.BAD_INPUT, message)

    @classmethod
    def cooldown(cls, retry_after: float) -> "UserError":
        wait = max(1, math.ceil(retry_after))
        return cls(ErrorKind.COOLDOWN, f"Slow down a little: try again in {wait} s.", retry_after)

    @classmethod
    def busy(cls, retry_after: float, reason: str = "I'm busy drawing for others") -> "UserError":
        wait = max(1, math.ceil(retry_after))
        return cls(ErrorKind.BUSY, f"{reason}: try again in {wait} s.", retry_after)
