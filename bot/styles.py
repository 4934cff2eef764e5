"""The chat side of custom styles, for every platform: the commands' answers and the progress messages.

Adapters decide who may manage styles (Manage Server on Discord, chat admins on Telegram), download
the upload and call ``StyleDesk``; it calls ``training.jobs.JobManager`` and its style catalogue
(``JobManager.styles``), words a ``JobError`` as the bot's ``UserError`` (``refusal_text``) and keeps
each job's progress message up to date through the adapter's ``ProgressChannel``: one message edited
as the job goes (``bot.progress``: bar, step, ETA), a sample grid now and then, and a final message
(with the style's sample grid when it succeeded). Where the message lives is kept in the job's
``reply_to``, so a restarted bot goes on editing the same message.

This module imports neither discord nor telegram.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from functools import partial
from typing import Any, Protocol

from bot.errors import ErrorKind, UserError
from bot.progress import describe_job, format_size, format_wait, progress_text
from bot.registry import StyleRegistry, job_scope
from bot.replies import Command
from bot.text import ECHO_LIMIT, clip, clip_list, echo, text_length
from gan.styles import StyleError
from training.ingest import notify_when_queued
from training.jobs import SUCCEEDED, Job, JobError, JobEvent, JobManager
from training.prepare import PrepareReport

log = logging.getLogger(__name__)

PER_CHAT = "Custom styles belong to a server or group chat: use this command there."
MAX_STYLE_NAME = 32  # gan.styles.STYLE_NAME: no style has a longer name


def typed_style(value: str | None) -> str | None:
    """A style name as typed, stripped. Text too long to name any style is cut with an ellipsis
    (``bot.text.echo``): it is refused all the same, and the refusal quotes it at a sane length."""
    if value is None:
        return None
    text = str(value).strip()
    return text if len(text) <= max(ECHO_LIMIT, MAX_STYLE_NAME) else echo(text)


def _megabytes(size: int) -> str:
    """Bytes as MB (2**20) with one decimal, rounded up: a file just over a limit never reads as equal to it."""
    return f"{math.ceil(size * 10 / 2**20) / 10:.1f}"


class ProgressChannel(Protocol):
    """How one platform shows a job's progress where it was started. A target is the job's
    ``reply_to``: ``{"platform": ..., <where to post>, "message": <progress message id, once posted>}``."""

    def command_line(self, command: Command) -> str:
        """A command in this platform's syntax."""

    async def post(self, target: dict[str, Any], text: str) -> dict[str, Any]:
        """Post the progress message; return ``target`` with its ``"message"`` id added."""

    async def edit(self, target: dict[str, Any], text: str, picture: bytes | None = None) -> None:
        """Update the progress message's text, and show a sample grid PNG when given."""

    async def announce(self, target: dict[str, Any], text: str, picture: bytes | None = None) -> None:
        """Send a new message (with a picture when given) where the job was started."""


REFUSALS = {
    "unavailable": "Custom styles are unavailable: the default style is not installed.",
    "bad_name": "Invalid style name {name!r}: use 1-32 lowercase letters, digits and '-', starting with a "
                "letter or digit.",
    "reserved_name": "'{name}' is the name of a built-in style; choose another name.",
    "bad_steps": "The step budget must be between {low} and {high}.",
    "busy": "Style '{name}' is already {doing} here; wait for it to finish or cancel it.",
    "name_taken": "A style named '{name}' already exists here; delete it first or choose another name.",
    "quota": "This server or chat already has {limit} custom styles, the most it may have; free a slot by "
             "deleting one first (/style delete on Discord, /style_delete on Telegram).",
    "queue_full": "The training queue is full; please try again later.",
    "daily_limit": "You have started {count} training jobs in the last 24 hours, the most allowed is {limit}; "
                   "you can train again in {wait}.",
    "upload_cooldown": "You can send one training upload every {cooldown}; please wait {wait} before sending "
                       "another.",
    "bad_upload": "Upload refused: {problem}.",
    "no_active_job": "No style is training here.",
    "finishing": "Style '{name}' is finishing right now; try again in a moment.",
    "no_such_style": "There is no custom style named '{name}' here.",
    "unknown_style": "Unknown style '{name}'.",
}


def refusal_text(exc: JobError) -> str:
    """What a refused style command says to the admin."""
    details = dict(exc.details)
    if "running" in details:
        details["doing"] = "training" if details["running"] else "queued"
    if "wait_s" in details:
        details["wait"] = format_wait(details["wait_s"])
    if "cooldown_s" in details:
        details["cooldown"] = format_wait(details["cooldown_s"])
    return REFUSALS[exc.reason].format(**details)


def _user_error(exc: JobError) -> UserError:
    try:
        kind = ErrorKind(exc.kind)
    except ValueError:
        kind = ErrorKind.BAD_INPUT
    return UserError(kind, refusal_text(exc), exc.details.get("wait_s"))


def upload_summary(job: Job) -> str:
    """What ingestion kept and skipped, e.g. ``kept 38 images; skipped: 2 duplicate``."""
    report = job.report or {}
    return PrepareReport(kept=int(report.get("kept", 0)), skipped=Counter(report.get("skipped") or {})).summary()


class StyleDesk:
    """Custom-style commands for every platform, and the progress of their jobs."""

    def __init__(self, jobs: JobManager, registry: StyleRegistry, max_upload_bytes: int) -> None:
        self.jobs = jobs
        self.registry = registry
        self.max_upload_bytes = max_upload_bytes
        self._channels: dict[str, ProgressChannel] = {}
        self._targets: dict[int, dict[str, Any]] = {}  # job id -> its progress message, once posted
        self._texts: dict[int, str] = {}  # job id -> the progress message's current text
        self._moved: dict[int, dict[str, Any]] = {}  # job id -> where its progress goes since its chat moved
        jobs.subscribe(self._on_event)

    def add_channel(self, platform: str, channel: ProgressChannel) -> None:
        """Show the progress of ``platform``'s jobs through ``channel``."""
        self._channels[platform] = channel

    # -- commands ---------------------------------------------------------------------------------

    def check_upload_size(self, size: int | None, download_limit: int | None = None, platform: str = "") -> None:
        """Refuse an upload known to be too big, before downloading it. ``download_limit`` is the most
        ``platform`` lets a bot download (Telegram's Bot API: 20 MB); the smaller of it and
        ``STYLE_MAX_UPLOAD_MB`` applies, and the answer says which one it was."""
        if size is None:
            return
        if download_limit is not None and download_limit < self.max_upload_bytes:
            if size > download_limit:
                raise UserError.bad_input(f"That file is {_megabytes(size)} MB; {platform} lets bots download "
                                          f"files of at most {download_limit / 2**20:g} MB: send a smaller zip.")
        elif size > self.max_upload_bytes:
            raise UserError.bad_input(f"That file is {_megabytes(size)} MB; uploads may be at most "
                                      f"{self.max_upload_bytes / 2**20:g} MB.")

    async def train(self, platform: str, chat_id: str, user_id: str, name: str, upload: bytes,
                    steps: int | None, target: dict[str, Any]) -> str:
        """Ingest the upload and queue a job; the answer says what was kept and skipped, and when it starts."""
        self.check_upload_size(len(upload))
        scope = self._scope(platform, chat_id)
        name = (typed_style(name) or "").lower()
        reply_to = {**target, "platform": platform}
        with notify_when_queued(partial(self._tell_queued, reply_to)):  # uploads are checked one at a time
            job = await self._call(self.jobs.submit(scope, name, upload, requested_by=f"{platform}:{user_id}",
                                                    steps=steps, reply_to=reply_to))
        when = ("Training starts now" if job.queue_position is None
                else f"It is number {job.queue_position} in the training queue")
        return (f"Training style '{job.name}' ({job.total_steps} steps) from your upload: {upload_summary(job)}. "
                f"{when}; a progress message shows how it goes.")

    def list_text(self, platform: str, chat_id: str, bold: bool = False, limit: int | None = None) -> str:
        """The chat's styles, built-in and custom, the default marked, then what its custom styles
        take on disk (e.g. "Custom styles here: 3 styles, 41 MB"); within ``limit`` characters (a
        platform's message limit) the style lines that do not fit end as "... and N more"."""
        lines = []
        for entry in self.registry.entries(platform, chat_id):
            name = f"**{entry.name}**" if bold else entry.name
            tags = [t for t, on in (("default", entry.default), ("custom", entry.custom)) if on]
            line = name + (f" ({', '.join(tags)})" if tags else "")
            lines.append(line + (f": {entry.description}" if entry.description else ""))
        footer = self._usage_line(platform, chat_id)
        text = "\n".join(lines + ([footer] if footer else [])) or "No styles installed."
        if limit is None:
            return text
        listed = clip_list(lines, limit - text_length(footer) - 1 if footer else limit, sep="\n")
        return (listed + "\n" + footer if listed and footer else listed) or clip(text, limit)

    def _usage_line(self, platform: str, chat_id: str) -> str:
        scope, catalogue = job_scope(platform, chat_id), self.registry.catalogue
        count, size = catalogue.usage(scope) if scope and catalogue is not None else (0, 0)
        if not count:
            return ""
        return f"Custom styles here: {count} style{'s' if count != 1 else ''}, {format_size(size)}"

    async def status_text(self, platform: str, chat_id: str) -> str:
        """The chat's current or latest training job, in one line."""
        job = await self._call(self.jobs.status(self._scope(platform, chat_id)))
        return describe_job(job) if job is not None else "No style has been trained here yet."

    async def cancel(self, platform: str, chat_id: str, user_id: str) -> str:
        """Cancel the chat's active job."""
        job = await self._call(self.jobs.cancel(self._scope(platform, chat_id), by=f"{platform}:{user_id}"))
        return describe_job(job)

    async def delete(self, platform: str, chat_id: str, name: str) -> str:
        """Delete one of the chat's custom styles."""
        name = (typed_style(name) or "").lower()
        await self._call(self.jobs.styles.delete_style(self._scope(platform, chat_id), name))
        return f"Style '{name}' deleted."

    async def set_default(self, platform: str, chat_id: str, name: str) -> str:
        """Make a built-in or custom style the chat's default."""
        name = (typed_style(name) or "").lower()
        await self._call(self.jobs.styles.set_default(self._scope(platform, chat_id), name,
                                                      builtin=self.registry.builtin_names))
        return f"'{name}' is now the default style here."

    def custom_names(self, platform: str, chat_id: str) -> list[str]:
        """The chat's custom style names (for autocompletion; never blocks)."""
        scope = job_scope(platform, chat_id)
        return self.jobs.styles.style_names(scope) if scope else []

    async def move_chat(self, platform: str, old_chat_id: str, new_chat_id: str, target: dict[str, Any]) -> None:
        """A chat got a new id (a Telegram group upgraded to a supergroup): its styles, default style
        and jobs go with it, and its active job's progress goes to ``target`` in the new chat."""
        old, new = self._scope(platform, old_chat_id), self._scope(platform, new_chat_id)
        moved_to = {**target, "platform": platform}
        job = await self._call(self.jobs.move_scope(old, new, reply_to=moved_to))
        if job is not None:  # its progress message stays in the old chat: the next event posts a new one
            self._moved[job.id] = moved_to
            self._targets.pop(job.id, None)
            self._texts.pop(job.id, None)

    @staticmethod
    def _scope(platform: str, chat_id: str) -> str:
        scope = job_scope(platform, chat_id)
        if scope is None:
            raise UserError.bad_input(PER_CHAT)
        return scope

    @staticmethod
    async def _call(coro):
        try:
            return await coro
        except JobError as exc:
            raise _user_error(exc) from None
        except RuntimeError:  # the job manager is not running: the bot is starting or stopping
            raise UserError(ErrorKind.BUSY, "I'm restarting right now: please try again in a minute.", 60) from None

    # -- progress ---------------------------------------------------------------------------------

    async def _on_event(self, event: JobEvent) -> None:
        job = event.job
        target = self._targets.get(job.id) or self._moved.get(job.id) or job.reply_to
        if not isinstance(target, dict):
            return  # a job started elsewhere (not from a chat)
        channel = self._channels.get(str(target.get("platform")))
        if channel is None:
            return
        text = progress_text(event)
        if "message" not in target:
            posted = await channel.post(target, text)
            if self._moved.get(job.id, target) is not target:
                return  # its chat moved while this was posted: the next event posts in the new chat
            target = posted
            self._targets[job.id], self._texts[job.id] = target, text
            await self.jobs.set_reply_to(job.id, target)
        if event.final:
            self._targets.pop(job.id, None)
            self._texts.pop(job.id, None)
            self._moved.pop(job.id, None)
            if job.status == SUCCEEDED:
                await self._load_style(job)
            await channel.edit(target, text)
            await channel.announce(target, self._final_text(job, channel), event.sample_png)
            return
        if event.kind == "sample":
            await channel.edit(target, self._texts.get(job.id, text), event.sample_png)
        elif text != self._texts.get(job.id):
            self._texts[job.id] = text
            await channel.edit(target, text)

    async def _tell_queued(self, target: dict[str, Any], ahead: int) -> None:
        """Tell the chat that its upload waits for others to be checked first."""
        channel = self._channels.get(str(target.get("platform")))
        if channel is not None:
            others = f"{ahead} other upload{'' if ahead == 1 else 's'}"
            await channel.announce(target, f"Your upload is queued behind {others}; it is checked when its turn comes.")

    async def _load_style(self, job: Job) -> None:
        """Load a new style's generator before saying it is ready, so that its first avatar needs no wait."""
        ref = self.registry.custom_ref(job.scope, job.name)
        if ref is None:
            return  # deleted meanwhile
        try:
            await asyncio.wrap_future(self.registry.load(ref))
        except StyleError:
            pass  # logged by the registry; requests for the style are told it is not available

    @staticmethod
    def _final_text(job: Job, channel: ProgressChannel) -> str:
        if job.status == SUCCEEDED:
            usage = channel.command_line(Command("avatar", (("style", job.name),)))
            return f"Style '{job.name}' is ready: try {usage} here."
        return describe_job(job)
