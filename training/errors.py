"""``JobError``: the one exception adapters see from training jobs and the style catalogue; and
``Message``: a chat text from the training side that the bot translates.

A ``JobError`` carries what was refused and its figures, not a sentence: the chat side
(``bot.styles``) words it for people, and logs show ``str(error)``. What only the training side can
word (why an upload was refused, why a job failed, why a picture was skipped) travels as a
``Message``: an English template marked with ``N_`` (which babel extracts into the bot's
catalogues) and its parameters, rendered in each reader's language by ``bot.i18n``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


def N_(template: str) -> str:
    """Mark a chat text for translation without translating it here (the gettext convention); the
    bot looks the template up in the reader's catalogue when it shows it."""
    return template


@dataclass(frozen=True)
class Message:
    """An English ``template`` (marked with ``N_``) and its named ``params``: numbers, strings, other
    ``Message`` values, or lists of them (a list reads as "a, b and c"). ``str()`` is the English text."""

    template: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        if not self.params:
            return self.template
        return self.template.format(**{k: _english(v) for k, v in self.params.items()})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (``from_dict`` reads it back)."""
        return {"template": self.template, "params": {k: _to_json(v) for k, v in self.params.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Message":
        """A message from ``to_dict``'s form; raises ``ValueError`` on anything else."""
        if not isinstance(data, Mapping) or not isinstance(data.get("template"), str):
            raise ValueError(f"not a message: {data!r}")
        params = data.get("params") or {}
        if not isinstance(params, Mapping):
            raise ValueError(f"not a message: {data!r}")
        return cls(data["template"], {str(k): _from_json(v) for k, v in params.items()})


def _english(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return english_list([str(_english(v)) for v in value])
    return str(value) if isinstance(value, Message) else value


def english_list(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b, and c``: the English list pattern of CLDR, which the bot's
    ``babel.lists.format_list`` follows in every language."""
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + ", and " + items[-1]


def _to_json(value: Any) -> Any:
    if isinstance(value, Message):
        return value.to_dict()
    return [_to_json(v) for v in value] if isinstance(value, (list, tuple)) else value


def _from_json(value: Any) -> Any:
    if isinstance(value, Mapping):
        return Message.from_dict(value)
    return [_from_json(v) for v in value] if isinstance(value, list) else value


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
        figures = ", ".join(f"{k}={str(v) if isinstance(v, Message) else v!r}" for k, v in self.details.items())
        return f"{self.reason} ({figures})" if figures else self.reason
