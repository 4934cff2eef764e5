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
from functools import partial
from typing import Any, Protocol

from bot.errors import RESTARTING, ErrorKind, UserError
from bot.i18n import DEFAULT, Text, _, ngettext, render
from bot.progress import describe_job, format_size, progress_text, wait_text
from bot.registry import StyleRegistry, job_scope
from bot.replies import Command
from bot.text import ECHO_LIMIT, clip, clip_list, echo, text_length
from gan.styles import StyleError
from training.ingest import notify_when_queued
from training.jobs import SUCCEEDED, Job, JobError, JobEvent, JobManager
from training.prepare import skip_list

log = logging.getLogger(__name__)

PER_CHAT = _("Custom styles belong to a server or group chat: use this command there.")
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

    async def announce(self, target: dict[str, Any], text: str, picture: bytes | None = None,
                       buttons: list[tuple[str, str]] | None = None) -> None:
        """Send a new message (with a picture when given, and ``(label, id)`` buttons under it) where
        the job was started."""


REFUSALS = {
    "unavailable": _("Custom styles are unavailable: the default style is not installed."),
    "bad_name": _("Invalid style name {quoted}: use 1-32 lowercase letters, digits and '-', starting with a "
                  "letter or digit."),
    "reserved_name": _("'{name}' is the name of a built-in style; choose another name."),
    "bad_steps": _("The step budget must be between {low} and {high}."),
    "busy": _("Style '{name}' is already {doing} here; wait for it to finish or cancel it."),
    "name_taken": _("A style named '{name}' already exists here; delete it first or choose another name."),
    "quota": _("This server or chat already has {limit} custom styles, the most it may have; free a slot by "
               "deleting one first (/style delete on Discord, /style_delete on Telegram)."),
    "queue_full": _("The training queue is full; please try again later."),
    "daily_limit": _("You have started {count} training jobs in the last 24 hours, the most allowed is {limit}; "
                     "you can train again in {wait}."),
    "upload_cooldown": _("You can send one training upload every {cooldown}; please wait {wait} before sending "
                         "another."),
    "bad_upload": _("Upload refused: {problem}."),
    "no_active_job": _("No style is training here."),
    "finishing": _("Style '{name}' is finishing right now; try again in a moment."),
    "no_such_style": _("There is no custom style named '{name}' here."),
    "unknown_style": _("Unknown style '{name}'."),
}


GATE_PREFIX = "sg1"  # a quality-gate button id: "sg1:p:<style>" (Publish) or "sg1:d:<style>" (Discard)
GATE_VERBS = {"p": _("Publish"), "d": _("Discard")}


def gate_buttons(name: str, locale: str = DEFAULT) -> list[tuple[str, str]]:
    """The Publish and Discard buttons under a held-back style's message: ``(label, id)``; the id
    carries the style's name, so they work after a restart (at most 38 characters)."""
    return [(label.render(locale), f"{GATE_PREFIX}:{verb}:{name}") for verb, label in GATE_VERBS.items()]


def is_gate_button(data: str | None) -> bool:
    """Whether a button id is a quality-gate button."""
    return bool(data) and data.startswith(GATE_PREFIX + ":")


def _ratio(figures: dict[str, Any]) -> str:
    return f"{float(figures['ratio']):.2f}"


def _kid(figures: dict[str, Any], key: str) -> str:
    """A KID for a chat: the unbiased estimate dips below zero when a style is as close as can be
    measured, which reads as 0."""
    return f"{max(float(figures[key]), 0.0):.4f}"


def refusal(exc: JobError) -> Text:
    """What a refused style command says to the admin, to render in their language. The upload
    problem (``bad_upload``) is worded by the training side, translated here."""
    details = dict(exc.details)
    if "running" in details:
        details["doing"] = _("training") if details["running"] else _("queued")
    if "wait_s" in details:
        details["wait"] = wait_text(details["wait_s"])
    if "cooldown_s" in details:
        details["cooldown"] = wait_text(details["cooldown_s"])
    if "name" in details:
        details["quoted"] = repr(details["name"])
    return REFUSALS[exc.reason].format(**details)


def refusal_text(exc: JobError, locale: str = DEFAULT) -> str:
    """What a refused style command says to the admin, in ``locale``."""
    return refusal(exc).render(locale)


def _user_error(exc: JobError) -> UserError:
    try:
        kind = ErrorKind(exc.kind)
    except ValueError:
        kind = ErrorKind.BAD_INPUT
    return UserError(kind, refusal(exc), exc.details.get("wait_s"))


def upload_summary(job: Job, locale: str = DEFAULT) -> str:
    """What ingestion kept and skipped, e.g. ``kept 38 images; skipped: 2 duplicate`` (the reasons are
    ``training.prepare``'s, translated)."""
    report = job.report or {}
    kept, skipped = int(report.get("kept", 0)), report.get("skipped") or {}
    text = ngettext("kept {count} image", "kept {count} images", kept).format(count=kept)
    if skipped:
        text = _("{kept}; skipped: {reasons}").format(kept=text, reasons=skip_list(skipped))
    return text.render(locale)


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
                raise UserError.bad_input(_("That file is {size} MB; {platform} lets bots download files of at "
                                            "most {limit} MB: send a smaller zip.").format(
                    size=_megabytes(size), platform=platform, limit=f"{download_limit / 2**20:g}"))
        elif size > self.max_upload_bytes:
            raise UserError.bad_input(_("That file is {size} MB; uploads may be at most {limit} MB.").format(
                size=_megabytes(size), limit=f"{self.max_upload_bytes / 2**20:g}"))

    async def train(self, platform: str, chat_id: str, user_id: str, name: str, upload: bytes,
                    steps: int | None, target: dict[str, Any], locale: str = DEFAULT) -> str:
        """Ingest the upload and queue a job; the answer says what was kept and skipped, and when it starts.
        The job's progress messages speak ``locale`` too (kept in its ``reply_to``)."""
        self.check_upload_size(len(upload))
        scope = self._scope(platform, chat_id)
        name = (typed_style(name) or "").lower()
        reply_to = {**target, "platform": platform, "locale": locale}
        with notify_when_queued(partial(self._tell_queued, reply_to)):  # uploads are checked one at a time
            job = await self._call(self.jobs.submit(scope, name, upload, requested_by=f"{platform}:{user_id}",
                                                    steps=steps, reply_to=reply_to))
        when = (_("Training starts now") if job.queue_position is None
                else _("It is number {position} in the training queue").format(position=job.queue_position))
        return _("Training style '{name}' ({steps} steps) from your upload: {summary}. {when}; a progress message "
                 "shows how it goes.").format(name=job.name, steps=job.total_steps,
                                              summary=upload_summary(job, locale), when=when).render(locale)

    def list_text(self, platform: str, chat_id: str, bold: bool = False, limit: int | None = None,
                  locale: str = DEFAULT) -> str:
        """The chat's styles, built-in and custom, the default marked, then what its custom styles
        take on disk (e.g. "Custom styles here: 3 styles, 41 MB"); within ``limit`` characters (a
        platform's message limit) the style lines that do not fit end as "... and N more"."""
        lines = []
        for entry in self.registry.entries(platform, chat_id):
            name = f"**{entry.name}**" if bold else entry.name
            tags = [t.render(locale) for t, on in ((_("default"), entry.default), (_("custom"), entry.custom)) if on]
            line = name + (f" ({', '.join(tags)})" if tags else "")
            lines.append(line + (f": {render(entry.description, locale)}" if entry.description else ""))
        scope, catalogue = job_scope(platform, chat_id), self.registry.catalogue
        for pending in catalogue.pending_names(scope) if scope and catalogue is not None else []:
            lines.append(_("{name} (held back: not published yet)").format(name=pending).render(locale))
        footer = self._usage_line(platform, chat_id, locale)
        text = "\n".join(lines + ([footer] if footer else [])) or _("No styles installed.").render(locale)
        if limit is None:
            return text
        listed = clip_list(lines, limit - text_length(footer) - 1 if footer else limit, sep="\n", locale=locale)
        return (listed + "\n" + footer if listed and footer else listed) or clip(text, limit)

    def _usage_line(self, platform: str, chat_id: str, locale: str = DEFAULT) -> str:
        scope, catalogue = job_scope(platform, chat_id), self.registry.catalogue
        count, size = catalogue.usage(scope) if scope and catalogue is not None else (0, 0)
        if not count:
            return ""
        return ngettext("Custom styles here: {count} style, {size}", "Custom styles here: {count} styles, {size}",
                        count).format(count=count, size=format_size(size)).render(locale)

    async def status_text(self, platform: str, chat_id: str, locale: str = DEFAULT) -> str:
        """The chat's current or latest training job, in one line."""
        job = await self._call(self.jobs.status(self._scope(platform, chat_id)))
        return (describe_job(job, locale, self._held_back(job)) if job is not None
                else _("No style has been trained here yet.").render(locale))

    async def cancel(self, platform: str, chat_id: str, user_id: str, locale: str = DEFAULT) -> str:
        """Cancel the chat's active job."""
        job = await self._call(self.jobs.cancel(self._scope(platform, chat_id), by=f"{platform}:{user_id}"))
        return describe_job(job, locale)

    async def delete(self, platform: str, chat_id: str, name: str, locale: str = DEFAULT) -> str:
        """Delete one of the chat's custom styles."""
        name = (typed_style(name) or "").lower()
        await self._call(self.jobs.styles.delete_style(self._scope(platform, chat_id), name))
        return _("Style '{name}' deleted.").format(name=name).render(locale)

    async def gate_button(self, platform: str, chat_id: str, data: str, locale: str = DEFAULT) -> str:
        """Publish or discard a style the quality gate held back (a Publish or Discard button; the
        adapter has checked that an admin pressed it). Returns what to tell the chat."""
        _prefix, verb, name = (data.split(":", 2) + ["", ""])[:3]
        if verb not in GATE_VERBS:
            raise UserError.bad_input(_("This button no longer works."))
        scope = self._scope(platform, chat_id)
        record = self.jobs.styles.any_record(scope, name)
        if record is None or not record.pending:
            raise UserError.bad_input(_("Style '{name}' is no longer waiting to be published.").format(name=name))
        if verb == "d":
            await self._call(self.jobs.styles.delete_style(scope, name))
            return _("Style '{name}' discarded.").format(name=name).render(locale)
        await self._call(self.jobs.styles.publish(scope, name))
        await self._load_style_named(scope, name)
        return _("Style '{name}' is published: members can draw in it now.").format(name=name).render(locale)

    def gate_settled(self, platform: str, chat_id: str, data: str) -> bool:
        """Whether the style under a Publish or Discard button no longer waits for an admin (published,
        discarded or expired): its buttons have done their work and can come off the message."""
        name = (data.split(":", 2) + ["", ""])[2]
        scope = job_scope(platform, chat_id)
        record = self.jobs.styles.any_record(scope, name) if scope else None
        return record is None or not record.pending

    async def set_default(self, platform: str, chat_id: str, name: str, locale: str = DEFAULT) -> str:
        """Make a built-in or custom style the chat's default."""
        name = (typed_style(name) or "").lower()
        await self._call(self.jobs.styles.set_default(self._scope(platform, chat_id), name,
                                                      builtin=self.registry.builtin_names))
        return _("'{name}' is now the default style here.").format(name=name).render(locale)

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
            raise UserError(ErrorKind.BUSY, RESTARTING, 60) from None

    # -- progress ---------------------------------------------------------------------------------

    async def _on_event(self, event: JobEvent) -> None:
        job = event.job
        target = self._targets.get(job.id) or self._moved.get(job.id) or job.reply_to
        if not isinstance(target, dict):
            return  # a job started elsewhere (not from a chat)
        channel = self._channels.get(str(target.get("platform")))
        if channel is None:
            return
        locale = str(target.get("locale") or DEFAULT)  # the language of whoever started the job
        text = progress_text(event, locale=locale, held_back=self._held_back(job))
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
            # Publish and Discard only under a held-back style (channels without buttons still work).
            extra = {"buttons": gate_buttons(job.name, locale)} if self._held_back(job) else {}
            await channel.announce(target, self._final_text(job, channel, locale), event.sample_png, **extra)
            return
        if event.kind == "sample":
            await channel.edit(target, self._texts.get(job.id, text), event.sample_png)
        elif text != self._texts.get(job.id):
            self._texts[job.id] = text
            await channel.edit(target, text)

    def _held_back(self, job: Job) -> bool:
        """Whether the job's style is registered but waits for an admin to publish it."""
        record = self.jobs.styles.any_record(job.scope, job.name) if job.status == SUCCEEDED else None
        return record is not None and record.pending and record.job_id == job.id

    async def _tell_queued(self, target: dict[str, Any], ahead: int) -> None:
        """Tell the chat that its upload waits for others to be checked first."""
        channel = self._channels.get(str(target.get("platform")))
        if channel is not None:
            text = ngettext("Your upload is queued behind {count} other upload; it is checked when its turn comes.",
                            "Your upload is queued behind {count} other uploads; it is checked when its turn comes.",
                            ahead).format(count=ahead)
            await channel.announce(target, text.render(str(target.get("locale") or DEFAULT)))

    async def _load_style(self, job: Job) -> None:
        """Load a new style's generator before saying it is ready, so that its first avatar needs no wait."""
        await self._load_style_named(job.scope, job.name)

    async def _load_style_named(self, scope: str, name: str) -> None:
        ref = self.registry.custom_ref(scope, name)
        if ref is None:
            return  # deleted meanwhile
        try:
            await asyncio.wrap_future(self.registry.load(ref))
        except StyleError:
            pass  # logged by the registry; requests for the style are told it is not available

    def _final_text(self, job: Job, channel: ProgressChannel, locale: str = DEFAULT) -> str:
        if job.status != SUCCEEDED:
            return describe_job(job, locale)
        record = self.jobs.styles.any_record(job.scope, job.name)
        figures = record.gate if record is not None else None
        if record is not None and record.pending:
            days = f"{self.jobs.settings.pending_days:g}"
            if figures is None or "ratio" not in figures:
                text = _("Style '{name}' could not be compared with the default style, so it is not published: "
                         "members cannot draw in it until an admin presses Publish. Discard deletes it; "
                         "unpublished, it is deleted after {days} days.").format(name=job.name, days=days)
            else:
                text = _("Style '{name}' came out further from your pictures than the default style: closer to "
                         "your pictures by {ratio} times than the default style (KID {kid_style}; the default "
                         "style's {kid_default}). It is not published: members cannot draw in it until an admin "
                         "presses Publish. Discard deletes it; unpublished, it is deleted after {days} days.").format(
                    name=job.name, ratio=_ratio(figures), kid_style=_kid(figures, "kid_style"),
                    kid_default=_kid(figures, "kid_default"), days=days)
            return text.render(locale)
        usage = channel.command_line(Command("avatar", (("style", job.name),)))
        text = _("Style '{name}' is ready: try {usage} here.").format(name=job.name, usage=usage).render(locale)
        if figures is not None and "ratio" in figures:
            text += " " + _("It is closer to your pictures by {ratio} times than the default style (KID {kid_style}; "
                            "the default style's {kid_default}).").format(
                ratio=_ratio(figures), kid_style=_kid(figures, "kid_style"),
                kid_default=_kid(figures, "kid_default")).render(locale)
        return text
