"""``JobError``: the one exception adapters see from training jobs and the style catalogue.

It carries what was refused and its figures, not a sentence: the chat side (``bot.styles``) words
it for people, and logs show ``str(error)``.
"""

from __future__ import annotations

from typing import Any

# Every reason a JobError can give, and the details it carries.
REASONS = {
    "unavailable": (),  # the default style to fine-tune from is not installed
    "bad_name": ("name",),
    "reserved_name": ("name",),  # a built-in style's name
    "bad_steps": ("low", "high"),
    "busy": ("name", "running"),  # this scope's active job (running, else queued)
    "name_taken": ("name",),
    "quota": ("limit",),  # styles per scope
    "queue_full": ("limit",),
    "daily_limit": ("count", "limit", "wait_s"),  # jobs per user in 24 hours
    "upload_cooldown": ("wait_s", "cooldown_s"),  # uploads per user
    "bad_upload": ("problem",),  # training.prepare refused it
    "no_active_job": (),
    "finishing": ("name",),  # its export is being registered: too late to cancel
    "no_such_style": ("name",),  # not a custom style of this scope
    "unknown_style": ("name",),  # neither custom here nor built-in
}


class JobError(Exception):
    """A refusal an admin can act on: ``reason`` (a key of ``REASONS``) and its ``details``.

    ``kind`` is ``"bad input"``, ``"busy"`` (an active job here, a full queue) or ``"cooldown"`` (a
    user's limits) - the values of ``bot.errors.ErrorKind``.
    """

    def __init__(self, reason: str, kind: str = "bad input", **details: Any) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown JobError reason {reason!r}")
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.details = details

    def __str__(self) -> str:
        figures = ", ".join(f"{k}={v!r}" for k, v in self.details.items())
        return f"{self.reason} ({figures})" if figures else self.reason
