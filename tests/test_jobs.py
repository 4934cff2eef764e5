"""Custom-style jobs: a real SQLite file, real worker processes, tiny networks and a few steps."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import signal
import sqlite3
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import integrity, zip_of, REPO, make_image_folder
from training.jobs import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, JobError, JobManager, JobSettings
from training.worker import TRAINING_NICE

WAIT_S = 240  # generous bounds on a busy machine; reaching one fails the test, nothing is timed


def fast_settings(**overrides) -> JobSettings:
    """Tiny batches, a checkpoint every few steps, every step reported."""
    base = dict(batch_size=4, checkpoint_every=5, sample_every=10, progress_interval_s=0.0,
                mixed_precision=False, stop_timeout_s=60.0, min_steps=1)
    base.update(overrides)
    return JobSettings(**base)


def rows(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def upload(tmp_path_factory) -> bytes:
    """A zip of 40 small distinct pictures."""
    return zip_of(make_image_folder(tmp_path_factory.mktemp("upload"), 40, seed=7))


@pytest.fixture
def env(tmp_path, tiny_style):
    """Paths of one bot installation: database, custom styles, the default style to fine-tune."""
    class Env:
        root = tmp_path
        db = tmp_path / "state" / "jobs.db"
        styles = tmp_path / "styles"
        jobs = tmp_path / "state" / "jobs"
        default = tiny_style / "default"

        def manager(self, **settings) -> JobManager:
            return JobManager(self.db, self.styles, self.default, fast_settings(**settings),
                              reserved_names=["default"])

    return Env()


@pytest.fixture
async def managers():
    """Managers a test starts; stopped at the end even if the test fails."""
    started: list[JobManager] = []

    async def start(manager: JobManager) -> JobManager:
        await manager.start()
        started.append(manager)
        return manager

    yield start
    for manager in started:
        await manager.stop()


async def test_start_up_clears_what_a_crash_left_half_deleted(env, managers):
    leftovers = [env.jobs / ".trash-job-0123abce-1a2b3c4d", env.jobs / "job-0123abcd",
                 env.styles / "discord" / "1" / ".trash-ink-5e6f7a8b", env.styles / "discord" / "1" / ".incoming-3"]
    keep = env.styles / "discord" / "1" / "ink"
    for folder in leftovers + [keep]:
        folder.mkdir(parents=True)
        (folder / "file").write_bytes(b"x")
    await managers(env.manager())
    assert [f for f in leftovers if f.exists()] == []
    assert (keep / "file").read_bytes() == b"x"  # a style folder is not a leftover


async def first_event(events: list, predicate, timeout: float = WAIT_S):
    """Wait until an event matching ``predicate`` has been delivered; return it."""
    async def poll():
        while True:
            for event in events:
                if predicate(event):
                    return event
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(poll(), timeout)


# ---------------------------------------------------------------------------- the happy path

async def test_trained_style_is_registered_only_in_its_scope_and_jobs_queue_with_positions(
        env, managers, upload):
    from gan.inference import AvatarGenerator

    manager = await managers(env.manager(max_concurrent=1))
    events = []
    manager.subscribe(events.append)

    first = await manager.submit("discord:1", "ink", upload, requested_by="admin#1", steps=12,
                                 reply_to={"channel": 5, "message": 9})
    assert first.status == RUNNING and first.report["kept"] == 40
    second = await manager.submit("telegram:-100", "ink", upload, steps=3)  # same name, other scope
    third = await manager.submit("discord:2", "blue", upload, steps=3)
    assert (second.status, second.queue_position) == (QUEUED, 1)
    assert (third.status, third.queue_position) == (QUEUED, 2)

    with pytest.raises(JobError, match="already training") as busy:
        await manager.submit("discord:1", "other", upload)
    assert busy.value.kind == "busy"

    cancelled = await manager.cancel("discord:2", by="admin#2")
    assert cancelled.status == CANCELLED and not cancelled.job_dir.exists()
    assert (await manager.status("telegram:-100")).queue_position == 1

    done = await manager.wait(first.id, WAIT_S)
    assert done.status == SUCCEEDED, done
    done2 = await manager.wait(second.id, WAIT_S)
    assert done2.status == SUCCEEDED, done2

    path = manager.resolve_style("discord:1", "ink")
    assert path == env.styles / "discord" / "1" / "ink"
    assert manager.resolve_style("discord:2", "ink") is None
    assert manager.resolve_style("discord:1", "blue") is None
    assert manager.style_names("discord:1") == ["ink"]
    assert [s.name for s in await manager.list_styles("discord:1")] == ["ink"]
    assert manager.resolve_style("telegram:-100", "ink") == env.styles / "telegram" / "-100" / "ink"

    gen = AvatarGenerator.load(path)
    assert gen.generate([42]).shape == (1, 64, 64, 3) and gen.style == "ink"
    meta = json.loads((path / "style.json").read_text())
    assert meta["config"]["diffaugment"] == "color,translation,cutout"
    assert meta["training"]["init_from"] == str(env.default.resolve())
    assert manager.style_record("discord:1", "ink").sha256 == gen.weights_sha256

    kinds = [(e.job.id, e.kind) for e in events]
    assert (first.id, "sample") in kinds and (third.id, "finished") in kinds
    finished = [e for e in events if e.job.id == first.id and e.final]
    assert len(finished) == 1 and finished[0].job.status == SUCCEEDED
    assert finished[0].sample_png.startswith(b"\x89PNG")
    assert finished[0].job.reply_to == {"channel": 5, "message": 9}
    steps = [e.step for e in events if e.job.id == first.id and e.kind == "progress"]
    assert steps == sorted(steps) and steps[-1] == 12

    with pytest.raises(JobError, match="already exists"):
        await manager.submit("discord:1", "ink", upload)
    assert not [p for p in env.jobs.iterdir()], "job folders are removed once the style is registered"
    assert rows(env.db, "SELECT scope, name, job_id FROM styles ORDER BY id") == [
        ("discord:1", "ink", first.id), ("telegram:-100", "ink", second.id)]
    assert integrity(env.db) == "ok"

    await manager.set_default("discord:1", "ink")
    assert manager.default_style("discord:1") == "ink"
    with pytest.raises(JobError, match="Unknown style"):
        await manager.set_default("discord:2", "ink")
    await manager.set_default("discord:2", "default", builtin=["default"])
    await manager.delete_style("discord:1", "ink")
    assert manager.resolve_style("discord:1", "ink") is None and not path.exists()
    assert manager.default_style("discord:1") is None
    with pytest.raises(JobError, match="no custom style"):
        await manager.delete_style("discord:1", "ink")
    assert integrity(env.db) == "ok"


# ---------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("name", ["Ink", "../ink", "ink/../x", "", "-ink", "a" * 33, "default", "in k"])
async def test_bad_style_names_are_refused(env, managers, upload, name):
    manager = await managers(env.manager())
    with pytest.raises(JobError, match="style name|built-in"):
        await manager.submit("discord:1", name, upload)
    assert list(env.jobs.iterdir()) == []


async def test_step_budget_outside_the_cap_is_refused(env, managers, upload):
    manager = await managers(env.manager(max_steps=50))
    for steps in (0, -1, 51):
        with pytest.raises(JobError, match="between 1 and 50"):
            await manager.submit("discord:1", "ink", upload, steps=steps)


def _job_folders(env) -> list[str]:
    return sorted(p.name for p in env.jobs.iterdir())


async def test_step_budget_below_the_minimum_is_refused(env, managers, upload):
    manager = await managers(env.manager(min_steps=200, max_steps=5000))
    for steps in (1, 199):
        with pytest.raises(JobError, match="between 200 and 5000"):
            await manager.submit("discord:1", "ink", upload, steps=steps)
    assert _job_folders(env) == [] and rows(env.db, "SELECT * FROM jobs") == []


async def test_a_scope_with_its_quota_of_styles_is_refused_a_new_name(env, managers, upload):
    first = env.manager()
    await first.start()  # creates the database
    await first.stop()
    with sqlite3.connect(env.db) as conn:
        conn.executemany("INSERT INTO styles (scope, name, path, created_at, sha256) VALUES (?, ?, ?, 0, 'x')",
                         [("discord:1", name, str(env.styles / "discord" / "1" / name)) for name in ("ink", "sea")])
    manager = await managers(env.manager(max_styles_per_scope=2))
    manager.stop_scheduling()  # jobs stay queued: no worker is needed to see the refusals
    with pytest.raises(JobError, match=r"already has 2 custom styles.*/style delete") as refused:
        await manager.submit("discord:1", "blue", upload, requested_by="discord:9")
    assert refused.value.kind == "bad input"
    assert _job_folders(env) == [] and rows(env.db, "SELECT * FROM jobs") == []
    job = await manager.submit("discord:2", "blue", upload, requested_by="discord:9")  # another server's quota
    assert job.status == QUEUED


async def test_a_full_queue_refuses_new_jobs(env, managers, upload):
    manager = await managers(env.manager(max_queued=2))
    manager.stop_scheduling()
    for scope in ("discord:1", "discord:2"):
        assert (await manager.submit(scope, "ink", upload)).status == QUEUED
    folders = _job_folders(env)
    with pytest.raises(JobError, match="training queue is full; please try again later") as refused:
        await manager.submit("discord:3", "ink", upload)
    assert refused.value.kind == "busy"
    assert _job_folders(env) == folders and len(rows(env.db, "SELECT * FROM jobs")) == 2


async def test_a_user_who_used_up_their_daily_jobs_is_refused_until_a_day_has_passed(env, managers, upload):
    manager = await managers(env.manager(max_jobs_per_user_per_day=2))
    manager.stop_scheduling()
    for scope in ("discord:1", "discord:2"):
        await manager.submit(scope, "ink", upload, requested_by="discord:7")
    folders = _job_folders(env)
    with pytest.raises(JobError, match=r"2 training jobs in the last 24 hours.*train again in 2[34] h") as refused:
        await manager.submit("discord:3", "ink", upload, requested_by="discord:7")
    assert refused.value.kind == "cooldown"
    assert _job_folders(env) == folders and len(rows(env.db, "SELECT * FROM jobs")) == 2
    await manager.submit("discord:3", "ink", upload, requested_by="discord:8")  # someone else may
    with sqlite3.connect(env.db) as conn:  # the first job is now 25 hours old: a slot is free again
        conn.execute("UPDATE jobs SET created_at = created_at - 25 * 3600 WHERE id = 1")
    assert (await manager.submit("discord:4", "ink", upload, requested_by="discord:7")).status == QUEUED


def _empty_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("pics/", b"")  # a folder, no files
    return buf.getvalue()


def _zip_bomb() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("bomb.png", "w", force_zip64=True) as fh:
        chunk = bytes(1 << 20)
        for _ in range(210):  # 210 MB of zeros, about 200 KB compressed
            fh.write(chunk)
    return buf.getvalue()


@pytest.mark.parametrize("case, reason", [
    ("not a zip", "not a zip file"),
    ("zip bomb", "uncompressed"),
    ("zip slip", "unsafe path"),
    ("too few", "only 5 usable images; at least 20"),
    ("empty", "empty"),
])
async def test_bad_uploads_are_refused_with_their_reason_and_write_nothing(env, managers, tmp_path, case, reason):
    manager = await managers(env.manager())
    few = make_image_folder(tmp_path / "few", 5, seed=3)
    data = {
        "not a zip": b"PK\x03\x04 this is not really a zip archive",
        "zip bomb": _zip_bomb() if case == "zip bomb" else b"",
        "zip slip": zip_of(few, {"../../escaped.png": (few / "0000.jpg").read_bytes(),
                                    "/abs/escaped.png": (few / "0001.jpg").read_bytes()}),
        "too few": zip_of(few),
        "empty": _empty_zip(),
    }[case]
    before = files_under(env.root)
    with pytest.raises(JobError, match="Upload refused") as refused:
        await manager.submit("discord:1", "ink", data)
    assert reason in str(refused.value)
    assert files_under(env.root) - before <= {"state/jobs.db-journal"}
    assert list(env.jobs.iterdir()) == [] and not list(env.root.rglob("escaped.png"))
    assert await manager.status("discord:1") is None
    assert integrity(env.db) == "ok"


# ---------------------------------------------------------------------------- cancel and crashes

async def test_cancel_stops_a_running_worker_and_leaves_nothing(env, managers, upload):
    manager = await managers(env.manager())
    events = []
    manager.subscribe(events.append)
    job = await manager.submit("discord:1", "ink", upload, steps=2000)
    await first_event(events, lambda e: e.kind == "progress" and e.job.id == job.id)
    pid = (await manager.status("discord:1")).pid
    # Training yields the CPU to the bot's avatar threads (nice 10) and event loop (nice 0).
    assert os.getpriority(os.PRIO_PROCESS, pid) >= TRAINING_NICE
    cancelled = await manager.cancel("discord:1", by="admin")
    assert cancelled.status == CANCELLED and "admin" in cancelled.message
    assert not _alive(pid)
    assert not job.job_dir.exists() and manager.resolve_style("discord:1", "ink") is None
    assert not (env.styles / "discord" / "1" / "ink").exists()
    with pytest.raises(JobError, match="No style is training"):
        await manager.cancel("discord:1")
    assert rows(env.db, "SELECT COUNT(*) FROM styles") == [(0,)]
    assert integrity(env.db) == "ok"


async def test_worker_killed_with_sigkill_fails_the_job_cleanly(env, managers, upload):
    manager = await managers(env.manager(max_attempts=1))
    events = []
    manager.subscribe(events.append)
    job = await manager.submit("discord:1", "ink", upload, steps=2000)
    await first_event(events, lambda e: e.kind == "progress" and e.step >= 6)
    running = await manager.status("discord:1")
    assert running.status == RUNNING and running.pid
    os.kill(running.pid, signal.SIGKILL)
    failed = await manager.wait(job.id, WAIT_S)
    assert failed.status == FAILED and "killed by SIGKILL" in failed.message
    assert failed.pid is None and failed.error  # the worker's log tail, for the operator
    assert not job.job_dir.exists() and manager.resolve_style("discord:1", "ink") is None
    assert not (env.styles / "discord").exists() or not any((env.styles / "discord").rglob("*"))
    assert rows(env.db, "SELECT COUNT(*) FROM styles") == [(0,)]
    assert integrity(env.db) == "ok"
    # The scope is free again.
    again = await manager.submit("discord:1", "ink", upload, steps=2000)
    assert again.status == RUNNING
    await manager.cancel("discord:1")


async def test_a_worker_error_fails_the_job_with_its_reason_and_no_retry(env, managers, upload, tmp_path):
    broken = tmp_path / "broken-default"
    shutil.copytree(env.default, broken)
    manager = await managers(JobManager(env.db, env.styles, broken, fast_settings(), reserved_names=["default"]))
    with open(broken / "generator.weights.h5", "r+b") as fh:  # corrupted after the bot started
        fh.seek(-64, os.SEEK_END)
        fh.write(bytes(64))
    job = await manager.submit("telegram:7", "ink", upload, steps=5)
    failed = await manager.wait(job.id, WAIT_S)
    assert failed.status == FAILED and failed.attempts == 1
    assert "default style cannot be fine-tuned" in failed.message and str(broken) not in failed.message
    assert "sha256" in failed.error  # the details, from the worker's log, for the operator
    assert not job.job_dir.exists() and manager.resolve_style("telegram:7", "ink") is None
    assert integrity(env.db) == "ok"


# ---------------------------------------------------------------------------- orderly stops

async def test_a_worker_that_saves_and_stops_on_a_signal_of_its_own_is_paused_not_crashed(env, managers, upload):
    """A shutdown signal that reaches the worker itself (a system going down signals every process):
    it saves a checkpoint and exits with INTERRUPTED. That is a pause: the job resumes from the
    checkpoint, and the stopped start is not one of its attempts (here, its only one)."""
    manager = await managers(env.manager(max_attempts=1))
    events = []
    manager.subscribe(events.append)
    job = await manager.submit("discord:1", "ink", upload, steps=20)
    await first_event(events, lambda e: e.kind == "progress" and e.step >= 6)
    pid = (await manager.status("discord:1")).pid
    # Its own session and process group: a Ctrl+C in the bot's terminal does not reach it.
    assert os.getsid(pid) == pid and os.getpgid(pid) == pid != os.getpgid(0)
    os.kill(pid, signal.SIGTERM)
    paused = await first_event(events, lambda e: e.kind == "requeued")
    assert "paused at step" in paused.job.message and paused.job.attempts == 0
    done = await manager.wait(job.id, WAIT_S)
    assert done.status == SUCCEEDED, done
    assert done.attempts == 1  # the start after the pause; the paused one is given back
    resumed = [e.step for e in events[events.index(paused):] if e.kind == "progress"]
    assert resumed and resumed[0] > 5, "resumed from its checkpoint, not from the start"
    assert integrity(env.db) == "ok"


async def test_no_worker_starts_once_the_shutdown_has_begun(env, managers, upload):
    """The bot calls stop_scheduling() as soon as its signal arrives: a worker that stops on the same
    signal before the bot stops it is paused (no attempt used), and neither its job nor the queued one
    starts in the freed slot."""
    manager = await managers(env.manager(max_attempts=1, max_concurrent=1))
    events = []
    manager.subscribe(events.append)
    first = await manager.submit("discord:1", "ink", upload, steps=2000)
    queued = await manager.submit("discord:2", "blue", upload, steps=5)
    assert queued.status == QUEUED
    await first_event(events, lambda e: e.kind == "progress" and e.job.id == first.id)
    pid = (await manager.status("discord:1")).pid
    manager.stop_scheduling()
    mark = len(events)
    os.kill(pid, signal.SIGTERM)
    await first_event(events, lambda e: e.kind == "requeued" and e.job.id == first.id)
    await manager.stop()  # had anything started in the meantime, its events are delivered by now
    assert [(e.job.id, e.kind) for e in events[mark:]] == [(first.id, "requeued")]
    assert rows(env.db, "SELECT id, status, attempts, pid FROM jobs ORDER BY id") == [
        (first.id, QUEUED, 0, None), (queued.id, QUEUED, 0, None)]
    assert "by a bot restart" in rows(env.db, "SELECT message FROM jobs WHERE id = ?", (first.id,))[0][0]
    assert integrity(env.db) == "ok"


async def test_stopping_gives_the_attempt_back_before_waiting_for_the_worker(env, managers, upload):
    """A bot killed while it waits for its workers to save (a container's short stop timeout) must
    not have used up their jobs' attempts: ``stop`` records the pause before it waits."""
    manager = await managers(env.manager(max_attempts=1))
    events = []
    manager.subscribe(events.append)
    job = await manager.submit("discord:1", "ink", upload, steps=2000)
    await first_event(events, lambda e: e.kind == "progress" and e.step >= 6)
    pid = (await manager.status("discord:1")).pid
    os.kill(pid, signal.SIGSTOP)  # a worker slow to save its checkpoint
    stopping = asyncio.create_task(manager.stop())
    try:
        async def given_back() -> tuple:
            while True:
                row = rows(env.db, "SELECT status, attempts, pid FROM jobs WHERE id = ?", (job.id,))[0]
                if row[1] == 0:
                    return row
                await asyncio.sleep(0.05)

        # What the database holds if the bot dies now: the next start resumes the job (attempts 0 <
        # max_attempts 1) instead of failing it.
        assert await asyncio.wait_for(given_back(), 30) == (RUNNING, 0, pid)
    finally:
        os.kill(pid, signal.SIGCONT)
        await stopping
    assert rows(env.db, "SELECT status, attempts, pid FROM jobs WHERE id = ?", (job.id,)) == [(QUEUED, 0, None)]
    assert integrity(env.db) == "ok"


MANAGER_SCRIPT = """
import asyncio, json, sys
from training.jobs import JobManager
from tests.test_jobs import fast_settings

async def main(db, styles, default):
    manager = JobManager(db, styles, default, fast_settings(), reserved_names=["default"])
    manager.subscribe(lambda e: print(json.dumps({"kind": e.kind, "step": e.step, "status": e.job.status}),
                                      flush=True))
    await manager.start()
    await asyncio.Event().wait()  # serve until killed

asyncio.run(main(*sys.argv[1:]))
"""


async def test_bot_restarts_mid_job_resume_from_checkpoints_and_register_once(env, managers, upload):
    steps = 200
    # 1. A graceful stop mid-job: the worker saves a checkpoint, the job goes back to the queue.
    manager = await managers(env.manager(sample_every=100))
    events = []
    manager.subscribe(events.append)
    job = await manager.submit("discord:1", "ink", upload, steps=steps)
    seen = await first_event(events, lambda e: e.kind == "progress" and e.step >= 5)
    await manager.stop()
    paused = rows(env.db, "SELECT status, attempts, step FROM jobs WHERE id = ?", (job.id,))[0]
    assert paused[0] == QUEUED and paused[1] == 0 and paused[2] >= seen.step
    assert integrity(env.db) == "ok"

    # 2. Another bot process resumes it, and is killed (SIGKILL) in the middle.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", MANAGER_SCRIPT, str(env.db), str(env.styles), str(env.default),
        cwd=REPO, stdout=asyncio.subprocess.PIPE)
    try:
        first_step = None
        async with asyncio.timeout(WAIT_S):
            async for line in proc.stdout:
                event = json.loads(line)
                if event["kind"] == "progress":
                    first_step = first_step or event["step"]
                    if event["step"] >= first_step + 5:
                        break
        assert first_step is not None and first_step > seen.step, "resumed from the checkpoint, not from 0"
        killed_at = event["step"]
    finally:
        proc.kill()
        await proc.wait()
    assert rows(env.db, "SELECT status FROM jobs WHERE id = ?", (job.id,)) == [(RUNNING,)]
    assert integrity(env.db) == "ok"

    # 3. A new bot on the same database finishes it (its orphaned worker saves and exits first).
    manager = await managers(env.manager())
    events = []
    manager.subscribe(events.append)
    done = await manager.wait(job.id, WAIT_S)
    assert done.status == SUCCEEDED, done
    assert done.attempts == 2  # the killed bot's worker, then this one; the graceful stop is not counted
    resumed = [e.step for e in events if e.kind == "progress"]
    assert resumed and resumed[0] > killed_at - 5 and resumed[-1] == steps
    assert rows(env.db, "SELECT COUNT(*) FROM styles WHERE job_id = ?", (job.id,)) == [(1,)]
    assert manager.resolve_style("discord:1", "ink") is not None
    assert not job.job_dir.exists()
    assert integrity(env.db) == "ok"


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_worker_gives_pictures_in_flat_colours_a_palette(env, tmp_path):
    """Pictures drawn in four flat grays get the flat-colour settings (a palette head and the
    histogram loss) on top of the job's; smoothly shaded colour pictures do not."""
    import numpy as np
    from PIL import Image

    from training.worker import train_options

    rng = np.random.default_rng(0)
    flat, smooth = tmp_path / "flat", tmp_path / "smooth"
    flat.mkdir()
    smooth.mkdir()
    ramp = np.linspace(0, 1, 64)
    for i in range(20):
        blocks = rng.choice([15, 100, 185, 255], (8, 8)).repeat(8, 0).repeat(8, 1).astype(np.uint8)
        Image.fromarray(blocks).convert("RGB").save(flat / f"{i}.png")
        shade = ramp[:, None, None] * rng.uniform(0, 255, 3) + ramp[None, :, None] * rng.uniform(0, 255, 3)
        Image.fromarray(np.clip(shade, 0, 255).astype(np.uint8)).save(smooth / f"{i}.png")
    spec = {"init_from": str(env.default), "steps": 40, "batch_size": 4, "sample_every": 10,
            "checkpoint_every": 5, "model_overrides": {"g_head": 4},
            "flat_colour_overrides": {"g_palette": 8, "g_hist": 10.0}}
    model = train_options({**spec, "data_dir": str(flat)}).model
    assert (model.g_head, model.g_palette, model.g_hist) == (4, 8, 10.0)
    model = train_options({**spec, "data_dir": str(smooth)}).model
    assert (model.g_head, model.g_palette, model.g_hist) == (4, 0, 0.0)
    # A job queued before the setting existed trains as it was queued.
    del spec["flat_colour_overrides"]
    assert train_options({**spec, "data_dir": str(flat)}).model.g_palette == 0


def test_worker_fine_tunes_the_default_style_with_the_jobs_settings(env, tmp_path):
    from training.worker import train_options

    spec = {"init_from": str(env.default), "data_dir": str(tmp_path / "data"), "steps": 40, "batch_size": 4,
            "sample_every": 10, "checkpoint_every": 5, "mixed_precision": False, "seed": 3,
            "model_overrides": {"g_anchor": 2.0, "g_anchor_standardize": True}, "lr_warmup_steps": 8,
            "lr_decay_start": 8}
    options = train_options(spec)
    assert options.lr_warmup_steps == 8 and options.steps == 40 and options.init_from == str(env.default)
    assert options.lr_decay_start == 8
    # The default style's architecture, with the fine-tuning settings on top.
    assert (options.model.g_channels, options.model.g_anchor, options.model.g_anchor_standardize) == (8, 2.0, True)
    del spec["lr_warmup_steps"], spec["lr_decay_start"]  # a job queued by an older version
    assert train_options(spec).lr_warmup_steps == 0 and train_options(spec).lr_decay_start is None
