"""The chat side of custom styles, for every platform: the commands' answers and the progress messages.

Adapters decide who may manage styles (Manage Server on Discord, chat admins on Telegram), download
the upload and call ``StyleDesk``; it calls ``training.jobs.JobManager``, turns a ``JobError`` into the
bot's ``UserError`` and keeps each job's progress message up to date through the adapter's
``ProgressChannel``: one message edited as the job goes (bar, step, ETA), a sample grid now and then,
and a final message (with the style's sample grid when it succeeded). Where the message lives is kept
in the job's ``reply_to``, so a restarted bot goes on editing the same message.

This module imports neither discord nor telegram.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from typing import Any, Protocol

from bot.errors import ErrorKind, UserError
from bot.registry import StyleRegistry, job_scope
from bot.replies import Command
from bot.text import ECHO_LIMIT, clip, clip_list, echo
from training.jobs import SUCCEEDED, Job, JobError, JobEvent, JobManager, progress_text
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


def _user_error(exc: JobError) -> UserError:
    try:
        kind = ErrorKind(exc.kind)
    except ValueError:
        kind = ErrorKind.BAD_INPUT
    return UserError(kind, exc.message)


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
        job = await self._call(self.jobs.submit(scope, name, upload, requested_by=f"{platform}:{user_id}",
                                                steps=steps, reply_to={**target, "platform": platform}))
        when = ("Training starts now" if job.queue_position is None
                else f"It is number {job.queue_position} in the training queue")
        return (f"Training style '{job.name}' ({job.total_steps} steps) from your upload: {upload_summary(job)}. "
                f"{when}; a progress message shows how it goes.")

    def list_text(self, platform: str, chat_id: str, bold: bool = False, limit: int | None = None) -> str:
        """The chat's styles, built-in and custom, the default marked; within ``limit`` characters
        (a platform's message limit) the lines that do not fit end as "... and N more"."""
        lines = []
        for entry in self.registry.entries(platform, chat_id):
            name = f"**{entry.name}**" if bold else entry.name
            tags = [t for t, on in (("default", entry.default), ("custom", entry.custom)) if on]
            line = name + (f" ({', '.join(tags)})" if tags else "")
            lines.append(line + (f": {entry.description}" if entry.description else ""))
        text = "\n".join(lines) or "No styles installed."
        if limit is None:
            return text
        return clip_list(lines, limit, sep="\n") or clip(text, limit)

    async def status_text(self, platform: str, chat_id: str) -> str:
        """The chat's current or latest training job, in one line."""
        job = await self._call(self.jobs.status(self._scope(platform, chat_id)))
        return job.describe() if job is not None else "No style has been trained here yet."

    async def cancel(self, platform: str, chat_id: str, user_id: str) -> str:
        """Cancel the chat's active job."""
        job = await self._call(self.jobs.cancel(self._scope(platform, chat_id), by=f"{platform}:{user_id}"))
        return job.describe()

    async def delete(self, platform: str, chat_id: str, name: str) -> str:
        """Delete one of the chat's custom styles."""
        name = (typed_style(name) or "").lower()
        await self._call(self.jobs.delete_style(self._scope(platform, chat_id), name))
        return f"Style '{name}' deleted."

    async def set_default(self, platform: str, chat_id: str, name: str) -> str:
        """Make a built-in or custom style the chat's default."""
        name = (typed_style(name) or "").lower()
        await self._call(self.jobs.set_default(self._scope(platform, chat_id), name,
                                               builtin=self.registry.builtin_names))
        return f"'{name}' is now the default style here."

    def custom_names(self, platform: str, chat_id: str) -> list[str]:
        """The chat's custom style names (for autocompletion; never blocks)."""
        scope = job_scope(platform, chat_id)
        return self.jobs.style_names(scope) if scope else []

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
        target = self._targets.get(job.id) or job.reply_to
        if not isinstance(target, dict):
            return  # a job started elsewhere (not from a chat)
        channel = self._channels.get(str(target.get("platform")))
        if channel is None:
            return
        text = progress_text(event)
        if "message" not in target:
            target = await channel.post(target, text)
            self._targets[job.id], self._texts[job.id] = target, text
            await self.jobs.set_reply_to(job.id, target)
        if event.final:
            self._targets.pop(job.id, None)
            self._texts.pop(job.id, None)
            await channel.edit(target, text)
            await channel.announce(target, self._final_text(job, channel), event.sample_png)
            return
        if event.kind == "sample":
            await channel.edit(target, self._texts.get(job.id, text), event.sample_png)
        elif text != self._texts.get(job.id):
            self._texts[job.id] = text
            await channel.edit(target, text)

    @staticmethod
    def _final_text(job: Job, channel: ProgressChannel) -> str:
        if job.status == SUCCEEDED:
            usage = channel.command_line(Command("avatar", (("style", job.name),)))
            return f"Style '{job.name}' is ready: try {usage} here."
        return job.describe()
