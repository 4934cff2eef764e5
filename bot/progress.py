"""How custom-style training reads in a chat: a job's state and progress line, waits, ETAs and sizes.

``StyleDesk`` (``bot.styles``) builds its messages from these, in the chat's language (``locale``,
``bot.i18n``; English by default); ``training`` holds no chat wording. This module imports neither
discord nor telegram.
"""

from __future__ import annotations

import math

from bot.i18n import DEFAULT, Text, _
from training.jobs import CANCELLED, QUEUED, RUNNING, SUCCEEDED, Job, JobEvent

BAR_WIDTH = 12


def format_eta(seconds: float | None, locale: str = DEFAULT) -> str:
    """``about 4 min left``, ``about 40 s left``, ``almost done``, or ``""`` when unknown."""
    if seconds is None:
        return ""
    if seconds < 3:
        return _("almost done").render(locale)
    if seconds >= 90:
        return _("about {minutes} min left").format(minutes=round(seconds / 60)).render(locale)
    return _("about {seconds} s left").format(seconds=max(5, round(seconds / 5) * 5)).render(locale)


def wait_text(seconds: float) -> Text:
    """``5 h 12 min``, ``40 min`` or ``1 min`` for waits of a minute or more (rounded up to the
    minute), ``45 s`` for shorter ones (rounded up to the second), to render in a user's language."""
    if seconds < 60:
        return _("{seconds} s").format(seconds=max(1, math.ceil(seconds)))
    minutes = -(-int(seconds) // 60)
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return _("{minutes} min").format(minutes=minutes)
    if minutes:
        return _("{hours} h {minutes} min").format(hours=hours, minutes=minutes)
    return _("{hours} h").format(hours=hours)


def format_wait(seconds: float, locale: str = DEFAULT) -> str:
    """``wait_text`` in ``locale``."""
    return wait_text(seconds).render(locale)


def format_size(size: int) -> str:
    """Bytes in the units people read: ``0 KB``, ``820 KB``, ``41 MB``, ``1.2 GB`` (powers of 1024,
    rounded up, so a non-empty style never reads as nothing)."""
    for unit, scale in (("KB", 2**10), ("MB", 2**20), ("GB", 2**30)):
        value = size / scale
        if value < 1024 or unit == "GB":
            if value >= 10 or unit == "KB":
                return f"{math.ceil(value)} {unit}"
            return f"{math.ceil(value * 10) / 10:g} {unit}"
    raise AssertionError("unreachable")


def describe_job(job: Job, locale: str = DEFAULT, held_back: bool = False) -> str:
    """One line for a chat: what the job is doing or how it ended (``held_back``: its style waits for an
    admin to publish it, ``training.gate``)."""
    if job.status == QUEUED:
        if job.queue_position:
            text = _("Style '{name}' is waiting to train (position {position} in the queue).").format(
                name=job.name, position=job.queue_position)
        else:
            text = _("Style '{name}' is waiting to train.").format(name=job.name)
    elif job.status == RUNNING:
        text = _("Training style '{name}': step {step}/{total} ({percent}%).").format(
            name=job.name, step=job.step, total=job.total_steps, percent=job.percent)
    elif job.status == SUCCEEDED and held_back:
        text = _("Style '{name}' is trained but held back: an admin can publish it with the Publish button under "
                 "its message.").format(name=job.name)
    elif job.status == SUCCEEDED:
        text = _("Style '{name}' is ready.").format(name=job.name)
    elif job.status == CANCELLED:
        text = _("Training of style '{name}' was cancelled.").format(name=job.name)
    else:  # the reason comes from the training side (jobs ended before reasons were stored: English)
        text = _("Training of style '{name}' failed: {reason}").format(name=job.name, reason=job.reason or job.message)
    return text.render(locale)


def progress_text(event: JobEvent, width: int = BAR_WIDTH, locale: str = DEFAULT, held_back: bool = False) -> str:
    """A one-line progress message with a bar, e.g. ``Training 'ink' [####--------] 33% ...``."""
    job = event.job
    if job.status != RUNNING:
        return describe_job(job, locale, held_back)
    filled = int(width * event.step / event.total) if event.total else 0
    bar = "#" * filled + "-" * (width - filled)
    eta = format_eta(event.eta_seconds, locale)
    pct = int(100 * event.step / event.total) if event.total else 0
    text = _("Training '{name}' [{bar}] {percent}% - step {step}/{total}").format(
        name=job.name, bar=bar, percent=pct, step=event.step, total=event.total).render(locale)
    return text + (f" - {eta}" if eta else "")
