"""Custom-style training jobs: the queue in the database, and the manager that runs them.

A server admin's upload becomes a job: the pictures are ingested safely (``training.prepare``) into
the job's own folder, a row is queued in the database, and a worker process
(``python -m training.worker JOB_DIR``, see ``training.worker``) fine-tunes the default style on
them with the ``training.recipe.FEW_SHOT`` settings. The bot never runs training itself: a crash in a
worker can never take it down. What the manager and a worker say to each other is ``training.protocol``;
the registered styles are ``training.style_store.StyleStore`` (``JobManager.styles``), in the same
SQLite file (``training.database``).

Rules the manager keeps:

* one active (queued or running) job per scope, enforced by a unique index; a global limit on
  running workers (``JobSettings.max_concurrent``), with queued jobs told their position;
* a style is registered (its row inserted, its size on disk measured) only after its export is
  complete and verified with ``gan.styles.read_style``, in the same transaction that marks the job
  succeeded; ``styles.job_id`` is unique, so nothing is registered twice;
* a style the quality gate (``JobSettings.gate``, ``training.gate``) found further from the pictures
  than the default style is registered as pending: not drawable until ``StyleStore.publish``, and
  deleted after ``pending_days`` unpublished;
* a failed or cancelled job leaves no style row and its files are removed;
* a job left running by a bot that died is resumed from its last checkpoint on the next ``start``
  (or failed with a message after ``max_attempts`` starts); ``stop`` asks workers to save a
  checkpoint (SIGTERM) and leaves their jobs queued, so nothing is lost across a restart;
* an orderly stop is a pause, never a crash: a worker that saved a checkpoint and exited with
  ``training.protocol.EXIT_INTERRUPTED`` (whoever signalled it), or that ``stop`` stopped, leaves its job
  queued with the attempt given back (``stop`` gives it back before it waits, so even a bot killed
  while it waits costs the job nothing); ``stop_scheduling`` starts no more workers, from the moment
  the bot's shutdown signal arrives;
* workers run in their own session, so a Ctrl+C to the bot's terminal reaches the bot alone, and
  the bot stops them itself.

A scope names where a style is visible (``training.style_store.make_scope``); ``move_scope`` moves a
chat's styles, default and jobs to its new id (a Telegram group upgraded to a supergroup).

Adapters see one exception, ``training.errors.JobError`` (a reason and its figures, which the chat
side words), and progress through ``subscribe``: each ``JobEvent`` carries the job, its step, total,
an ETA, a sample grid PNG now and then, and whether the job reached its final state.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import logging
import os
import re
import secrets
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncContextManager, Awaitable, Callable, Iterable, Literal

import aiosqlite

from gan.runtime import tensorflow_environment
from gan.styles import StyleError, check_style_name, read_style
from training import protocol
from training.database import Database
from training.errors import JobError, Message, N_
from training.gate import GateSpec, passed, read_figures
from training.ingest import ingest_upload
from training.prepare import Limits, PrepareError
from training.protocol import JobSpec
from training.recipe import FEW_SHOT
from training.style_store import StyleRecord, StyleStore, check_scope, folder_size, remove_dir

log = logging.getLogger(__name__)

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
ACTIVE_STATES = (QUEUED, RUNNING)
FINAL_STATES = (SUCCEEDED, FAILED, CANCELLED)

DAY_S = 24 * 3600.0  # the window of the per-user daily job limit
EXPIRE_CHECK_S = 3600.0  # how often held-back styles past their days are looked for (they wait days)
_JOB_DIR = re.compile(r"^job-[0-9a-f]+$")


@dataclass
class JobSettings:
    """How jobs run. ``STYLE_TRAIN_STEPS`` maps to ``default_steps``."""

    default_steps: int = FEW_SHOT.steps
    max_steps: int = FEW_SHOT.max_steps
    min_steps: int = FEW_SHOT.min_steps
    max_styles_per_scope: int = 5  # registered styles plus an active job for a new name
    max_queued: int = 20  # jobs waiting for a worker, all scopes together
    max_jobs_per_user_per_day: int = 3  # jobs one requester submitted in the last 24 hours
    upload_cooldown_s: float = 60.0  # between two uploads one requester may send (0: no cooldown)
    max_concurrent: int = 1
    # "idle": workers train on the cores nothing else wants (SCHED_IDLE, nice 15, a session of their own
    # at nice 15), so replies keep their speed; "normal": they compete like any process, for a machine
    # kept busy by other work, where idle training would crawl.
    priority: Literal["idle", "normal"] = "idle"
    max_attempts: int = 2  # worker starts per job: a crashed worker is retried once
    batch_size: int = FEW_SHOT.batch_size
    checkpoint_every: int = 100
    sample_every: int = 250  # steps between sample grids sent to the chat
    progress_interval_s: float = 5.0  # the worker reports progress at most this often
    min_images: int = 20
    limits: Limits = field(default_factory=Limits)  # upload caps; min_images above overrides its own
    face_cascade: str | None = None  # OpenCV cascade XML: crop anime faces from uploads
    mixed_precision: bool | None = None  # None: bfloat16 when the CPU has AMX or a GPU is present
    model_overrides: dict[str, Any] = field(default_factory=lambda: dict(FEW_SHOT.model_overrides))
    # Added to model_overrides when the pictures are drawn in a few flat colours; {} never adds them.
    flat_colour_overrides: dict[str, Any] = field(default_factory=lambda: dict(FEW_SHOT.flat_colour_overrides))
    lr_warmup_steps: int = FEW_SHOT.lr_warmup_steps  # capped at a fifth of a job's budget
    lr_decay: bool = FEW_SHOT.lr_decay
    jobs_dir: Path | None = None  # default: a "jobs" folder next to the database
    stop_timeout_s: float = 60.0  # how long stop() waits for workers to save a checkpoint
    job_timeout_s: float = 3 * 3600.0  # a worker running longer is killed and its job failed
    python: str = sys.executable
    seed: int = 0
    # The quality gate (training.gate): None measures nothing and publishes every style at once.
    gate: GateSpec | None = None
    pending_days: float = 7.0  # a style the gate held back and nobody published is deleted after this


@dataclass(frozen=True)
class Job:
    """One training job as stored in the database (``queue_position`` only for queued jobs)."""

    id: int
    scope: str
    name: str
    status: str
    step: int
    total_steps: int
    message: str
    error: str | None
    attempts: int
    created_at: float
    updated_at: float
    requested_by: str
    data_dir: Path
    run_dir: Path
    reply_to: Any = None
    report: dict | None = None
    pid: int | None = None  # the worker's process id while it runs
    queue_position: int | None = None
    reason: Message | None = None  # why it failed or was cancelled, to translate (``message`` is its English)

    @property
    def job_dir(self) -> Path:
        """The job's own folder (data, run, export, worker log)."""
        return self.run_dir.parent

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATES

    @property
    def percent(self) -> int:
        return int(100 * self.step / self.total_steps) if self.total_steps else 0


@dataclass(frozen=True)
class JobEvent:
    """What an adapter needs to update its progress message.

    ``kind`` is ``queued``, ``started``, ``progress``, ``sample``, ``requeued`` or ``finished``;
    ``sample_png`` holds a sample grid (for ``sample``, and the style's grid when it succeeds);
    ``final`` is true once the job succeeded, failed or was cancelled (``job.status`` says which).
    """

    kind: str
    job: Job
    step: int
    total: int
    eta_seconds: float | None = None
    sample_png: bytes | None = None

    @property
    def final(self) -> bool:
        return self.job.final


EventCallback = Callable[[JobEvent], Awaitable[None] | None]


@dataclass
class _Handle:
    """A running job's worker process and what the manager asked of it."""

    job: Job
    task: asyncio.Task | None = None
    proc: asyncio.subprocess.Process | None = None
    cancel_requested: bool = False
    stopping: bool = False
    finalizing: bool = False
    timed_out: bool = False
    export_path: Path | None = None
    error: Message | None = None  # why it failed or was cancelled
    step: int = 0


class JobManager:
    """The job queue and the worker processes (one asyncio event loop; ``start`` first)."""

    def __init__(self, db_path: str | os.PathLike, styles_root: str | os.PathLike,
                 default_style_dir: str | os.PathLike, settings: JobSettings | None = None,
                 reserved_names: Iterable[str] = (), clock: Callable[[], float] = time.monotonic) -> None:
        """``default_style_dir`` is the style folder fine-tuned from (e.g. ``weights/default``);
        ``reserved_names`` (the built-in styles) cannot be used for custom styles; ``clock`` times
        the upload cooldown."""
        self.db_path = Path(db_path)
        self.styles_root = Path(styles_root)
        self.default_style_dir = Path(default_style_dir)
        self.settings = settings or JobSettings()
        self.jobs_dir = Path(self.settings.jobs_dir or self.db_path.parent / "jobs")
        self.reserved_names = frozenset(reserved_names)
        self.database = Database(self.db_path)
        self.styles = StyleStore(self.database, self.styles_root)
        self._db: aiosqlite.Connection | None = None
        self._lock = self.database.lock
        self._changed = asyncio.Condition()
        self._running: dict[int, _Handle] = {}
        self._clock = clock
        self._uploads: dict[str, float] = {}  # requester -> when their last upload was read (cooldown)
        self._subscribers: list[EventCallback] = []
        self._events: asyncio.Queue | None = None
        self._dispatcher: asyncio.Task | None = None
        self._expirer: asyncio.Task | None = None
        self._closing = False
        self._ready = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open (and create or migrate) the database, recover unfinished jobs, start queued ones.

        Jobs a previous bot process left ``running`` are queued again to resume from their last
        checkpoint, or failed with a message once they have used ``max_attempts`` starts. The caller
        makes sure no other process uses the same database (``avatarbot run`` holds a lock beside it):
        this removes job folders that no job of this database owns.
        """
        # Before the first await: a stop_scheduling() that comes while this starts must hold.
        self._closing = False
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.styles_root.mkdir(parents=True, exist_ok=True)
        self._db = await self.database.open()
        await self.styles.start()
        self._events = asyncio.Queue()
        self._dispatcher = asyncio.create_task(self._dispatch(), name="job-events")
        async with self._lock:
            await self._recover()
        await asyncio.to_thread(self._remove_strays, await self._active_job_dirs())
        await self.expire_pending()
        self._expirer = asyncio.create_task(self._expire_every(EXPIRE_CHECK_S), name="pending-styles")
        self._ready = True
        async with self._lock:
            await self._schedule()
        log.info("job manager started: %s (%d styles)", self.db_path, len(self.styles))

    def stop_scheduling(self) -> None:
        """Start no more workers, from now on; running ones go on until ``stop``. The bot calls this
        the moment a shutdown signal arrives. Jobs submitted meanwhile stay queued for the next start."""
        self._closing = True

    async def stop(self) -> None:
        """Stop gracefully: workers get SIGTERM, save a checkpoint and exit; their jobs stay queued
        and resume on the next ``start``, the stop costing them no attempt. Waits up to
        ``stop_timeout_s``, then kills."""
        if self._db is None:
            return
        self._closing = True
        self._ready = False
        async with self._lock:
            handles = list(self._running.values())
            # A worker that already exited is recording its own outcome (_finish): leave it be.
            stopped = [h for h in handles if not h.finalizing]
            for handle in stopped:
                handle.stopping = True
            try:
                # Given back before the signal: a bot killed while it waits below (a container's
                # short stop timeout) leaves the jobs running with nothing counted, and the next
                # start resumes them like any restart.
                await self._give_back_attempts(stopped)
            finally:
                for handle in stopped:
                    _signal(handle.proc, signal.SIGTERM)
        tasks = [h.task for h in handles if h.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.settings.stop_timeout_s)
            if pending:
                log.warning("%d worker(s) did not stop in %.0f s: killing them", len(pending),
                            self.settings.stop_timeout_s)
                for handle in handles:
                    _signal(handle.proc, signal.SIGKILL)
                await asyncio.wait(pending, timeout=30)
        if self._dispatcher is not None:
            await self._events.put(None)
            try:
                await asyncio.wait_for(self._dispatcher, timeout=10)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._dispatcher.cancel()
            self._dispatcher = None
        if self._expirer is not None:
            self._expirer.cancel()
            await asyncio.gather(self._expirer, return_exceptions=True)
            self._expirer = None
        await self.styles.stop()
        self._db = None
        await self.database.close()
        log.info("job manager stopped")

    async def __aenter__(self) -> "JobManager":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ adapters' API

    async def expire_pending(self) -> list[StyleRecord]:
        """Delete the styles the quality gate held back that nobody published within ``pending_days``
        (at every start, then every ``EXPIRE_CHECK_S``); returns them."""
        expired = await self.styles.expired_pending(time.time() - self.settings.pending_days * DAY_S)
        for record in expired:
            log.info("style %s/%s was held back by the quality gate and not published in %g days: deleting it",
                     record.scope, record.name, self.settings.pending_days)
            await self.styles.delete_style(record.scope, record.name)
        return expired

    async def _expire_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await self.expire_pending()
            except (JobError, aiosqlite.Error, OSError) as exc:  # tried again at the next check
                log.warning("could not delete expired held-back styles: %s", exc)

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback(event)`` (a function or coroutine function) for every ``JobEvent``.

        Events are delivered in order by one task; a slow or failing callback never blocks a worker.
        Returns a function that unsubscribes.
        """
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    async def submit(self, scope: str, name: str, upload: bytes | str | os.PathLike,
                     requested_by: str = "", steps: int | None = None, reply_to: Any = None) -> Job:
        """Ingest an upload (zip bytes, or a zip file or folder path) and queue a training job.

        Raises ``JobError`` for a bad name, a name already used in this scope or reserved, a step
        budget outside ``min_steps``..``max_steps``, an active job in this scope or a full queue
        (kind ``busy``), a scope with ``max_styles_per_scope`` styles already, a requester who
        submitted ``max_jobs_per_user_per_day`` jobs in the last 24 hours or sent an upload less than
        ``upload_cooldown_s`` ago (kind ``cooldown``; an empty ``requested_by`` is not limited), or an
        upload that is refused (``bad_upload``, with the reason). All but the upload's refusal come
        before the upload is read and write nothing; the cooldown runs from when an upload is read.
        Returns the job, already ``running`` or ``queued`` with its ``queue_position``.
        """
        self._check_open()
        scope = check_scope(scope)
        name = self._check_name(name)
        steps = self._check_steps(steps)
        if not (self.default_style_dir / "style.json").is_file():
            log.error("cannot train custom styles: no style.json in %s", self.default_style_dir)
            raise JobError("unavailable")
        async with self._lock:
            self._refuse_during_upload_cooldown(str(requested_by))
            await self._refuse(scope, name, str(requested_by))
            self._start_upload_cooldown(str(requested_by))
        job_dir = self.jobs_dir / f"job-{time.time_ns():x}{secrets.token_hex(4)}"
        data_dir, run_dir = job_dir / "data", job_dir / "run"
        try:
            report = await self._ingest(upload, data_dir)
        except PrepareError as exc:
            await asyncio.to_thread(shutil.rmtree, job_dir, True)
            raise JobError("bad_upload", problem=exc.message) from None
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, job_dir, True)
            raise
        try:
            async with self._lock:
                await self._refuse(scope, name, str(requested_by))  # again: the ingest let others in
                now = time.time()
                async with self._transaction() as db:
                    cursor = await db.execute(
                        "INSERT INTO jobs (scope, name, status, total_steps, message, created_at, updated_at,"
                        " requested_by, data_dir, run_dir, reply_to, report)"
                        " VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (scope, name, steps, f"queued: {report.summary()}", now, now, str(requested_by),
                         str(data_dir), str(run_dir), _dumps(reply_to), json.dumps(report.to_dict())))
                    job_id = cursor.lastrowid
                log.info("job %d queued: %s/%s, %d steps (%s)", job_id, scope, name, steps, report.summary())
                await self._schedule()
                job = await self._get(job_id)
        except BaseException:
            if not await self._job_dir_in_db(job_dir):
                await asyncio.to_thread(shutil.rmtree, job_dir, True)
            raise
        if job.status == QUEUED:
            self._emit(JobEvent("queued", job, 0, job.total_steps))
        await self._notify()
        return job

    async def cancel(self, scope: str, by: str = "") -> Job:
        """Cancel this scope's active job (queued or running); its files are removed and no style is
        registered. Returns the cancelled job; ``JobError`` if there is none or it is being saved."""
        self._check_open()
        reason = Message(N_("cancelled by {user}"), {"user": by}) if by else Message(N_("cancelled"))
        async with self._lock:
            job = await self._active_job(scope)
            if job is None:
                raise JobError("no_active_job")
            handle = self._running.get(job.id)
            if handle is None:  # still queued: no worker to stop
                await self._end(job, CANCELLED, reason)
                task = None
            elif handle.finalizing:
                raise JobError("finishing", name=job.name)
            else:
                handle.cancel_requested = True
                handle.error = reason
                _signal(handle.proc, signal.SIGKILL)
                task = handle.task
        if task is not None:
            await asyncio.shield(task)
            return await self._get_locked(job.id)
        cancelled = await self._get_locked(job.id)
        self._emit(JobEvent("finished", cancelled, cancelled.step, cancelled.total_steps))
        await self._notify()
        return cancelled

    async def status(self, scope: str) -> Job | None:
        """This scope's active job, else its most recent one, else None."""
        self._check_open()
        async with self._lock:
            job = await self._active_job(scope)
            if job is None:
                rows = await self._fetchall("SELECT * FROM jobs WHERE scope = ? ORDER BY id DESC LIMIT 1",
                                            (scope,))
                job = await self._job_from_row(rows[0]) if rows else None
            return job

    async def get_job(self, job_id: int) -> Job | None:
        """A job by id, or None."""
        self._check_open()
        async with self._lock:
            try:
                return await self._get(job_id)
            except KeyError:
                return None

    async def set_reply_to(self, job_id: int, reply_to: Any) -> None:
        """Store the adapter's reference to its progress message (any JSON value)."""
        self._check_open()
        async with self._lock:
            await self._db.execute("UPDATE jobs SET reply_to = ? WHERE id = ?", (_dumps(reply_to), job_id))
            handle = self._running.get(job_id)
            if handle is not None:
                handle.job = dataclasses.replace(handle.job, reply_to=reply_to)

    async def wait(self, job_id: int, timeout: float | None = None) -> Job:
        """Wait until a job reaches a final state (or ``timeout`` seconds: ``TimeoutError``)."""
        async def until_final() -> Job:
            while True:
                async with self._changed:
                    job = await self.get_job(job_id)
                    if job is None:
                        raise KeyError(f"no job {job_id}")
                    if job.final:
                        return job
                    await self._changed.wait()

        return await asyncio.wait_for(until_final(), timeout)

    async def move_scope(self, old: str, new: str, reply_to: Any = None) -> Job | None:
        """Give everything of scope ``old`` to ``new`` (a chat that changed its id): its custom styles
        (their folders stay where they are), its default style, its jobs, and with them its active
        job, whose progress goes to ``reply_to`` from now on. A style name or an active job ``new``
        already has stays with ``old``. Returns the active job moved, if any; moving again is a no-op."""
        self._check_open()
        old, new = check_scope(old), check_scope(new)
        if old == new:
            return None
        await self.styles.flush_uses()
        async with self._lock:
            active, taken = await self._active_job(old), await self._active_job(new)
            if active is not None and taken is not None:
                log.warning("job %d stays with %s: %s has an active job (%d)", active.id, old, new, taken.id)
                active = None
            async with self._transaction() as db:
                moved, catalogue = await self.styles.move_rows(db, old, new)
                await db.execute("UPDATE jobs SET scope = ? WHERE scope = ? AND status NOT IN ('queued', 'running')",
                                 (new, old))
                if active is not None:
                    await db.execute("UPDATE jobs SET scope = ?, reply_to = ? WHERE id = ?",
                                     (new, _dumps(reply_to), active.id))
            self.styles.install(catalogue)
            handle = self._running.get(active.id) if active is not None else None
            if handle is not None:
                handle.job = dataclasses.replace(handle.job, scope=new, reply_to=reply_to)
            job = await self._get(active.id) if active is not None else None
        if moved or job is not None:
            log.info("moved %s to %s: styles %s, job %s", old, new, moved, job.id if job else None)
        return job

    # ------------------------------------------------------------------ checks

    def _check_open(self) -> None:
        if self._db is None or not self._ready:
            raise RuntimeError("JobManager.start() has not been called (or stop() was)")

    def _check_name(self, name: str) -> str:
        try:
            check_style_name(name)
        except StyleError:
            raise JobError("bad_name", name=name) from None
        if name in self.reserved_names:
            raise JobError("reserved_name", name=name)
        return name

    def _check_steps(self, steps: int | None) -> int:
        if steps is None:
            return self.settings.default_steps
        low, high = self.settings.min_steps, self.settings.max_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or not low <= steps <= high:
            raise JobError("bad_steps", low=low, high=high)
        return steps

    async def _refuse(self, scope: str, name: str, requested_by: str) -> None:
        """Every refusal that needs the database; called under ``_lock``, reads only."""
        await self._refuse_if_taken(scope, name)
        await self._refuse_over_quota(scope, name)
        await self._refuse_if_queue_full()
        await self._refuse_over_daily_limit(requested_by)

    async def _refuse_if_taken(self, scope: str, name: str) -> None:
        active = await self._active_job(scope)
        if active is not None:
            raise JobError("busy", kind="busy", name=active.name, running=active.status == RUNNING)
        if (scope, name) in self.styles:
            raise JobError("name_taken", name=name)

    async def _refuse_over_quota(self, scope: str, name: str) -> None:
        if (scope, name) in self.styles:
            return  # retraining a name takes no new slot
        names = set(self.styles.style_names(scope)) | set(self.styles.pending_names(scope))
        active = await self._active_job(scope)
        if active is not None:
            names.add(active.name)  # its style will take a slot once registered
        limit = self.settings.max_styles_per_scope
        if len(names) >= limit:
            raise JobError("quota", limit=limit)

    async def _refuse_if_queue_full(self) -> None:
        rows = await self._fetchall("SELECT COUNT(*) FROM jobs WHERE status = 'queued'")
        if rows[0][0] >= self.settings.max_queued:
            raise JobError("queue_full", kind="busy", limit=self.settings.max_queued)

    async def _refuse_over_daily_limit(self, requested_by: str) -> None:
        if not requested_by:
            return  # nobody to hold to a limit (jobs submitted from code)
        limit = self.settings.max_jobs_per_user_per_day
        since = time.time() - DAY_S
        rows = await self._fetchall("SELECT created_at FROM jobs WHERE requested_by = ? AND created_at > ?"
                                    " ORDER BY created_at", (requested_by, since))
        if len(rows) < limit:
            return
        # A slot frees once the oldest jobs that keep the count at the limit are a day old.
        wait = rows[len(rows) - limit][0] + DAY_S - time.time()
        raise JobError("daily_limit", kind="cooldown", count=len(rows), limit=limit, wait_s=wait)

    def _refuse_during_upload_cooldown(self, requested_by: str) -> None:
        """Called under ``_lock`` before anything else: a refused upload does not restart the cooldown."""
        cooldown = self.settings.upload_cooldown_s
        last = self._uploads.get(requested_by)
        if not requested_by or not cooldown or last is None:
            return
        wait = last + cooldown - self._clock()
        if wait > 0:
            raise JobError("upload_cooldown", kind="cooldown", wait_s=wait, cooldown_s=cooldown)

    def _start_upload_cooldown(self, requested_by: str) -> None:
        """Called under ``_lock`` once every check before reading the upload has passed."""
        if not requested_by or not self.settings.upload_cooldown_s:
            return
        now = self._clock()
        if len(self._uploads) > 10_000:  # forget the ones whose cooldown is over
            self._uploads = {k: t for k, t in self._uploads.items() if now - t < self.settings.upload_cooldown_s}
        self._uploads[requested_by] = now

    async def _ingest(self, upload: bytes | str | os.PathLike, data_dir: Path):
        """The upload's pictures into ``data_dir``, in a low-priority child process, one upload at a time
        (``training.ingest``)."""
        limits = dataclasses.replace(self.settings.limits, min_images=self.settings.min_images)
        return await ingest_upload(upload, data_dir, limits, self.settings.face_cascade)

    # ------------------------------------------------------------------ database

    def _transaction(self) -> AsyncContextManager[aiosqlite.Connection]:
        return self.database.transaction()

    async def _fetchall(self, sql: str, params: tuple = ()) -> list[aiosqlite.Row]:
        return await self.database.fetchall(sql, params)

    async def _get_locked(self, job_id: int) -> Job:
        async with self._lock:
            return await self._get(job_id)

    async def _get(self, job_id: int) -> Job:
        rows = await self._fetchall("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise KeyError(job_id)
        return await self._job_from_row(rows[0])

    async def _active_job(self, scope: str) -> Job | None:
        rows = await self._fetchall("SELECT * FROM jobs WHERE scope = ? AND status IN ('queued', 'running')",
                                    (scope,))
        return await self._job_from_row(rows[0]) if rows else None

    async def _job_from_row(self, row: aiosqlite.Row) -> Job:
        position = None
        if row["status"] == QUEUED:
            rows = await self._fetchall("SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND id < ?",
                                        (row["id"],))
            position = rows[0][0] + 1
        return Job(id=row["id"], scope=row["scope"], name=row["name"], status=row["status"], step=row["step"],
                   total_steps=row["total_steps"], message=row["message"], error=row["error"],
                   attempts=row["attempts"], created_at=row["created_at"], updated_at=row["updated_at"],
                   requested_by=row["requested_by"], data_dir=Path(row["data_dir"]), run_dir=Path(row["run_dir"]),
                   reply_to=json.loads(row["reply_to"]) if row["reply_to"] else None,
                   report=json.loads(row["report"]) if row["report"] else None, pid=row["pid"],
                   queue_position=position, reason=_reason_of(row["reason"]))

    async def _job_dir_in_db(self, job_dir: Path) -> bool:
        async with self._lock:
            rows = await self._fetchall("SELECT 1 FROM jobs WHERE run_dir = ?", (str(job_dir / "run"),))
        return bool(rows)

    async def _active_job_dirs(self) -> set[str]:
        async with self._lock:
            rows = await self._fetchall("SELECT run_dir FROM jobs WHERE status IN ('queued', 'running')")
        return {Path(r["run_dir"]).parent.name for r in rows}

    async def _give_back_attempts(self, handles: list[_Handle]) -> None:
        """Called under the lock by ``stop``: the starts of workers the bot is stopping do not count."""
        if not handles:
            return
        now = time.time()
        async with self._transaction() as db:
            for handle in handles:
                await db.execute("UPDATE jobs SET attempts = MAX(0, attempts - 1), message = ?, updated_at = ?"
                                 " WHERE id = ?", (f"pausing at step {handle.step} for a bot restart", now,
                                                   handle.job.id))

    async def _update(self, job_id: int, **values: Any) -> None:
        values["updated_at"] = time.time()
        columns = ", ".join(f"{k} = ?" for k in values)
        async with self._transaction() as db:
            await db.execute(f"UPDATE jobs SET {columns} WHERE id = ?", (*values.values(), job_id))

    # ------------------------------------------------------------------ scheduling and workers

    async def _recover(self) -> None:
        """Called under the lock at start: jobs a dead bot left running go back to the queue."""
        for row in await self._fetchall("SELECT * FROM jobs WHERE status = 'running' ORDER BY id"):
            job = await self._job_from_row(row)
            if job.attempts >= self.settings.max_attempts:
                log.warning("job %d was interrupted %d times: giving up", job.id, job.attempts)
                await self._end(job, FAILED, Message(N_("training stopped unexpectedly {count} times; giving up"),
                                                     {"count": job.attempts}),
                                error="the bot or its worker stopped during training")
            else:
                log.info("job %d was interrupted at step %d: resuming it", job.id, job.step)
                await self._update(job.id, status=QUEUED, pid=None,
                                   message=f"resuming from its last checkpoint (step {job.step}) after a restart")

    async def _schedule(self) -> None:
        """Called under the lock: start queued jobs while fewer than ``max_concurrent`` run."""
        while not self._closing and len(self._running) < self.settings.max_concurrent:
            rows = await self._fetchall("SELECT * FROM jobs WHERE status = 'queued' ORDER BY id LIMIT 1")
            if not rows:
                return
            job_id = rows[0]["id"]
            await self._db.execute("UPDATE jobs SET status = 'running', attempts = attempts + 1, message = ?,"
                                   " updated_at = ? WHERE id = ?", ("starting", time.time(), job_id))
            job = await self._get(job_id)
            handle = _Handle(job=job, step=job.step)
            self._running[job_id] = handle
            handle.task = asyncio.create_task(self._run_job(handle), name=f"job-{job_id}")
            log.info("job %d started (attempt %d): %s/%s", job_id, job.attempts, job.scope, job.name)

    async def _run_job(self, handle: _Handle) -> None:
        job = handle.job
        self._emit(JobEvent("started", job, job.step, job.total_steps))
        rc: int | None = None
        try:
            rc = await self._run_worker(handle)
        except Exception as exc:  # noqa: BLE001 - a manager bug must not leave the job running
            log.exception("job %d: could not run its worker", job.id)
            handle.error = handle.error or Message(N_("could not run the training process ({detail})"),
                                                   {"detail": type(exc).__name__})
        try:
            await self._finish(handle, rc)
        except Exception:  # noqa: BLE001 - never leave a job "running" with no worker behind it
            log.exception("job %d: could not record its end", job.id)
            try:
                async with self._lock:
                    await self._end(job, FAILED, Message(N_("internal error while saving the result")))
            except Exception:  # noqa: BLE001 - the database itself is failing: start() recovers it
                log.exception("job %d: could not mark it failed", job.id)
        finally:
            async with self._lock:
                self._running.pop(job.id, None)
                if self._db is not None:
                    await self._schedule()
            await self._notify()

    def _spec(self, job: Job) -> JobSpec:
        s = self.settings
        warmup = min(s.lr_warmup_steps, job.total_steps // 5)
        return JobSpec(name=job.name, data_dir=str(job.data_dir), run_dir=str(job.run_dir),
                       export_dir=str(job.job_dir / "export"), init_from=str(self.default_style_dir.resolve()),
                       steps=job.total_steps, batch_size=s.batch_size, checkpoint_every=s.checkpoint_every,
                       sample_every=s.sample_every, progress_interval_s=s.progress_interval_s,
                       mixed_precision=s.mixed_precision, model_overrides=dict(s.model_overrides),
                       flat_colour_overrides=dict(s.flat_colour_overrides), lr_warmup_steps=warmup,
                       lr_decay_start=warmup if s.lr_decay else None, seed=s.seed,
                       gate=None if s.gate is None else s.gate.to_dict())

    async def _run_worker(self, handle: _Handle) -> int | None:
        job = handle.job
        job.job_dir.mkdir(parents=True, exist_ok=True)
        self._spec(job).write(job.job_dir)
        env = tensorflow_environment({**os.environ, "PYTHONUNBUFFERED": "1"})
        with open(job.job_dir / "worker.log", "ab") as log_file:
            # Its own session: a Ctrl+C to the bot's terminal (SIGINT to the whole foreground process
            # group) reaches the bot alone, which stops the worker itself (stop) as a pause.
            proc = await asyncio.create_subprocess_exec(
                self.settings.python, "-m", "training.worker", str(job.job_dir), "--watch-stdin",
                "--priority", self.settings.priority,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log_file, env=env,
                start_new_session=True)
        handle.proc = proc
        handle.job = dataclasses.replace(handle.job, pid=proc.pid)
        async with self._lock:
            await self._update(job.id, pid=proc.pid)
        log.info("job %d: worker pid %d", job.id, proc.pid)
        if handle.cancel_requested:
            _signal(proc, signal.SIGKILL)
        elif handle.stopping:
            _signal(proc, signal.SIGTERM)
        try:
            async with asyncio.timeout(self.settings.job_timeout_s):
                async for line in proc.stdout:
                    await self._on_worker_line(handle, line)
                return await proc.wait()
        except TimeoutError:
            handle.timed_out = True
            _signal(proc, signal.SIGKILL)
            return await proc.wait()
        except asyncio.CancelledError:
            _signal(proc, signal.SIGTERM)  # saves a checkpoint: the job resumes on the next start
            raise

    async def _on_worker_line(self, handle: _Handle, raw: bytes) -> None:
        msg = protocol.parse_event(raw)
        if msg is None:
            log.debug("job %d: worker said %r", handle.job.id, raw[:200])
            return
        event = msg["event"]
        job = handle.job
        if event in (protocol.START, protocol.PROGRESS):
            handle.step = int(msg.get("step", handle.step))
            message = (f"resumed at step {handle.step}" if event == protocol.START and handle.step
                       else f"training: step {handle.step}/{job.total_steps}")
            handle.job = job = dataclasses.replace(job, step=handle.step, message=message)
            async with self._lock:  # the worker reports at most every progress_interval_s
                await self._update(job.id, step=handle.step, message=message)
            if event == protocol.PROGRESS:
                self._emit(JobEvent("progress", job, handle.step, job.total_steps, msg.get("eta")))
        elif event == protocol.SAMPLE:
            path = self._inside_job(job, msg.get("path"))
            data = await asyncio.to_thread(path.read_bytes) if path is not None and path.is_file() else None
            if data is not None:
                self._emit(JobEvent("sample", job, int(msg.get("step", handle.step)), job.total_steps,
                                    sample_png=data))
        elif event == protocol.EXPORTING:
            handle.job = dataclasses.replace(job, message="saving the style")
            async with self._lock:
                await self._update(job.id, message="saving the style")
        elif event == protocol.MEASURING:
            handle.job = dataclasses.replace(job, message="comparing the style with the default one")
            async with self._lock:
                await self._update(job.id, message=handle.job.message)
        elif event == protocol.EXPORTED:
            handle.export_path = self._inside_job(job, msg.get("path"))
        elif event == protocol.ERROR:
            handle.error = _worker_reason(msg)

    @staticmethod
    def _inside_job(job: Job, path: Any) -> Path | None:
        """A path the worker reported, if it lies inside the job's folder."""
        if not isinstance(path, str):
            return None
        resolved = Path(path).resolve()
        return resolved if resolved.is_relative_to(job.job_dir.resolve()) else None

    async def _finish(self, handle: _Handle, rc: int | None) -> None:
        async with self._lock:  # from here on, cancel() refuses and stop() leaves it be
            handle.finalizing = True
            cancelled, stopping = handle.cancel_requested, handle.stopping
        job = handle.job
        if cancelled:
            async with self._lock:
                await self._end(job, CANCELLED, handle.error or Message(N_("cancelled")))
        elif rc == protocol.EXIT_DONE and handle.export_path is not None:
            await self._register(handle)
        elif stopping or (rc == protocol.EXIT_INTERRUPTED and not handle.timed_out):
            # An orderly stop, not a crash: the bot stopped this worker (stop() gave its attempt back
            # already), or the worker saved a checkpoint and exited on a signal of its own (a
            # shutdown that reached it first): that start does not count as an attempt either.
            by_restart = stopping or self._closing
            given_back = {} if stopping else {"attempts": max(0, job.attempts - 1)}
            why = "by a bot restart" if by_restart else "(its training process was stopped)"
            async with self._lock:
                await self._update(job.id, status=QUEUED, step=handle.step, pid=None, **given_back,
                                   message=f"paused at step {handle.step} {why}; it resumes from its checkpoint")
            log.info("job %d paused at step %d%s", job.id, handle.step,
                     "" if by_restart else ": its worker stopped after saving a checkpoint; resuming it")
            requeued = await self._get_locked(job.id)
            self._emit(JobEvent("requeued", requeued, requeued.step, requeued.total_steps))
            return
        elif handle.timed_out:
            async with self._lock:
                await self._end(job, FAILED, Message(N_("training took too long and was stopped")),
                                error=f"no result after {self.settings.job_timeout_s:.0f} s")
        elif handle.error is not None:
            log.warning("job %d failed: %s (exit status %s)", job.id, handle.error, rc)
            async with self._lock:
                await self._end(job, FAILED, handle.error, error=_log_tail(job.job_dir / "worker.log"))
        else:
            reason = Message(N_("the training process stopped unexpectedly ({detail})"), {"detail": _describe_exit(rc)})
            tail = _log_tail(job.job_dir / "worker.log")
            async with self._lock:
                if job.attempts < self.settings.max_attempts:
                    log.warning("job %d: %s; retrying from its last checkpoint", job.id, reason)
                    await self._update(job.id, status=QUEUED, step=handle.step, error=tail, pid=None,
                                       message=f"{reason}; retrying from the last checkpoint")
                    requeued = await self._get(job.id)
                    self._emit(JobEvent("requeued", requeued, requeued.step, requeued.total_steps))
                    return
                log.warning("job %d failed: %s", job.id, reason)
                await self._end(job, FAILED, reason, error=tail)
        final = await self._get_locked(job.id)
        sample = None
        if final.status == SUCCEEDED:
            record = self.styles.any_record(job.scope, job.name)
            grid = record.path / "samples.png" if record is not None else None
            sample = await asyncio.to_thread(grid.read_bytes) if grid is not None and grid.is_file() else None
        self._emit(JobEvent("finished", final, final.step, final.total_steps, sample_png=sample))

    async def _register(self, handle: _Handle) -> None:
        """Verify the worker's export and register it with the job's success, in one transaction."""
        job = handle.job
        final = self.styles.style_dir(job.scope, job.name)
        incoming = final.with_name(f".incoming-{job.id}")
        try:
            info = await asyncio.to_thread(_stage_export, handle.export_path, incoming)
            figures = await asyncio.to_thread(read_figures, incoming)
            if info.name != job.name:
                raise StyleError(f"the export is named {info.name!r}, not {job.name!r}")
        except (StyleError, OSError) as exc:
            log.error("job %d: export did not verify: %s", job.id, exc)
            await asyncio.to_thread(remove_dir, incoming)
            async with self._lock:
                await self._end(job, FAILED, Message(N_("the trained style could not be verified")), error=str(exc))
            return
        async with self._lock:
            if (job.scope, job.name) in self.styles:
                await asyncio.to_thread(remove_dir, incoming)
                await self._end(job, FAILED, Message(N_("a style named '{name}' already exists here"),
                                                     {"name": job.name}))
                return
            size = await asyncio.to_thread(_install_dir, incoming, final)
            pending = not passed(figures)
            record = StyleRecord(job.scope, job.name, final, time.time(), job.id, info.generator_sha256, size,
                                 pending=pending, gate=figures)
            now = record.created_at
            try:
                async with self._transaction() as db:
                    await self.styles.insert(db, record)
                    await db.execute("UPDATE jobs SET status = 'succeeded', step = ?, message = ?, error = NULL,"
                                     " pid = NULL, updated_at = ? WHERE id = ?",
                                     (job.total_steps, "style held back for an admin" if pending else "style ready",
                                      now, job.id))
            except BaseException:
                await asyncio.to_thread(remove_dir, final)
                raise
            self.styles.remember(record)
        log.info("job %d succeeded: style %s/%s registered%s (gate: %s)", job.id, job.scope, job.name,
                 ", pending" if pending else "", figures)
        await asyncio.to_thread(remove_dir, job.job_dir)

    async def _end(self, job: Job, status: str, message: Message, error: str | None = None) -> None:
        """Called under the lock: a final state other than success, and the job's files removed. The
        database keeps ``message`` in English and as a message to translate (``Job.reason``)."""
        await self._update(job.id, status=status, message=str(message), reason=json.dumps(message.to_dict()),
                           error=error, pid=None)
        registered = (job.scope, job.name) in self.styles
        await asyncio.to_thread(self._cleanup, job, registered)
        log.info("job %d %s: %s", job.id, status, message)

    def _cleanup(self, job: Job, registered: bool) -> None:
        remove_dir(job.job_dir)
        final = self.styles.style_dir(job.scope, job.name)
        remove_dir(final.with_name(f".incoming-{job.id}"))
        if not registered:
            remove_dir(final)  # an install a crash kept from being registered

    def _remove_strays(self, active: set[str]) -> None:
        """At start: job folders of no active job, half-installed styles, and folders a removal
        renamed aside (``.trash-*``) but did not finish deleting (a crash or a kill midway)."""
        for folder in self.jobs_dir.iterdir():
            if folder.is_dir() and _JOB_DIR.match(folder.name) and folder.name not in active:
                log.info("removing leftover job folder %s", folder)
                remove_dir(folder)
        trash = list(self.jobs_dir.glob(".trash-*"))
        for scope_dir in self.styles_root.glob("*/*"):
            for folder in scope_dir.glob(".incoming-*"):
                remove_dir(folder)
            trash += scope_dir.glob(".trash-*")
        for folder in trash:
            log.info("removing %s, left half-deleted", folder)
            shutil.rmtree(folder, ignore_errors=True)

    # ------------------------------------------------------------------ events

    def _emit(self, event: JobEvent) -> None:
        if self._events is not None and self._subscribers:
            self._events.put_nowait(event)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _dispatch(self) -> None:
        while True:
            event = await self._events.get()
            if event is None:
                return
            for callback in list(self._subscribers):
                try:
                    result = callback(event)
                    if inspect.isawaitable(result):
                        await result
                except Exception:  # noqa: BLE001 - one adapter's bug must not stop the others
                    log.exception("job event callback %r failed", callback)


# ---------------------------------------------------------------------- helpers

def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _signal(proc: asyncio.subprocess.Process | None, sig: int) -> None:
    if proc is None or proc.returncode is not None:
        return
    try:
        if sig == signal.SIGKILL:
            proc.kill()
        elif sig == signal.SIGTERM:
            proc.terminate()
        else:
            proc.send_signal(sig)
    except ProcessLookupError:
        pass


def _worker_reason(event: dict[str, Any]) -> Message:
    """Why a worker says it failed: its ``reason`` message, or its English line when it sent none."""
    try:
        return Message.from_dict(event["reason"])
    except (KeyError, ValueError):
        return Message(str(event.get("message", "training failed"))[:500])


def _reason_of(stored: str | None) -> Message | None:
    """A job's stored ``reason`` column (None: not ended, or ended before reasons were stored)."""
    try:
        return Message.from_dict(json.loads(stored)) if stored else None
    except ValueError:
        return None


def _describe_exit(rc: int | None) -> str:
    if rc is None:
        return "no exit status"
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit status {rc}"


def _log_tail(path: Path, lines: int = 20) -> str | None:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    return "\n".join(text.splitlines()[-lines:])[-4000:] or None


def _stage_export(export: Path | None, incoming: Path):
    """Move the worker's export next to its final place and verify it (hashes included)."""
    if export is None or not export.is_dir():
        raise StyleError("the worker reported no exported style")
    incoming.parent.mkdir(parents=True, exist_ok=True)
    remove_dir(incoming)
    shutil.move(str(export), str(incoming))
    return read_style(incoming)


def _install_dir(incoming: Path, final: Path) -> int:
    """Rename a verified style into place, replacing an unregistered leftover of the same name;
    returns its size on disk."""
    remove_dir(final)
    os.replace(incoming, final)
    return folder_size(final)
