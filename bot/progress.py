"""How custom-style training reads in a chat: a job's state and progress line, waits, ETAs and sizes.

``StyleDesk`` (``bot.styles``) builds its messages from these; ``training`` holds no chat wording.
This module imports neither discord nor telegram.
"""

from __future__ import annotations

import math

from training.jobs import CANCELLED, QUEUED, RUNNING, SUCCEEDED, Job, JobEvent

BAR_WIDTH = 12


def format_eta(seconds: float | None) -> str:
    """``about 4 min left``, ``about 40 s left``, ``almost done``, or ``""`` when unknown."""
    if seconds is None:
        return ""
    if seconds < 3:
        return "almost done"
    if seconds >= 90:
        return f"about {round(seconds / 60)} min left"
    return f"about {max(5, round(seconds / 5) * 5)} s left"


def format_wait(seconds: float) -> str:
    """``5 h 12 min``, ``40 min`` or ``1 min`` for waits of a minute or more (rounded up to the
    minute), ``45 s`` for shorter ones (rounded up to the second)."""
    if seconds < 60:
        return f"{max(1, math.ceil(seconds))} s"
    minutes = -(-int(seconds) // 60)
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


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


def describe_job(job: Job) -> str:
    """One line for a chat: what the job is doing or how it ended."""
    if job.status == QUEUED:
        where = f" (position {job.queue_position} in the queue)" if job.queue_position else ""
        return f"Style '{job.name}' is waiting to train{where}."
    if job.status == RUNNING:
        return f"Training style '{job.name}': step {job.step}/{job.total_steps} ({job.percent}%)."
    if job.status == SUCCEEDED:
        return f"Style '{job.name}' is ready."
    if job.status == CANCELLED:
        return f"Training of style '{job.name}' was cancelled."
    return f"Training of style '{job.name}' failed: {job.message}"


def progress_text(event: JobEvent, width: int = BAR_WIDTH) -> str:
    """A one-line progress message with a bar, e.g. ``Training 'ink' [####--------] 33% ...``."""
    job = event.job
    if job.status != RUNNING:
        return describe_job(job)
    filled = int(width * event.step / event.total) if event.total else 0
    bar = "#" * filled + "-" * (width - filled)
    eta = format_eta(event.eta_seconds)
    pct = int(100 * event.step / event.total) if event.total else 0
    return (f"Training '{job.name}' [{bar}] {pct}% - step {event.step}/{event.total}"
            + (f" - {eta}" if eta else ""))
