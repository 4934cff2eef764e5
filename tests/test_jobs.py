"""Custom-style jobs: a real SQLite file, real worker processes, tiny networks and a few steps."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import signal
import sqlite3
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from bot.styles import refusal_text
from tests.conftest import INCEPTION_WEIGHTS, REPO, autogroup_nice, integrity, make_image_folder, until, zip_of
from training.errors import Message
from training.gate import GateSpec
from training.jobs import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, JobError, JobManager, JobSettings
from training.protocol import JobSpec
from training.recipe import FEW_SHOT
from training.style_store import folder_size
from training.worker import TRAINING_NICE

WAIT_S = 240  # generous bounds on a busy machine; reaching one fails the test, nothing is timed
# The few-shot recipe with a narrower style head. On a tiny default style the head's convolutions at
# 64 px are most of the work of each sample grid and of the export (both recompute the EMA generator's
# BatchNorm statistics over thousands of faces); these tests are about the queue and the worker's
# life, and the end-to-end style tests train with the recipe as it is.
TEST_MODEL_OVERRIDES = {**FEW_SHOT.model_overrides, "g_head": 4}


def fast_settings(**overrides) -> JobSettings:
    """Tiny batches and style head, a checkpoint every few steps, every step reported, no upload cooldown;
    workers at normal priority (the tests keep both cores busy, where an idle worker could wait minutes)."""
    base = dict(batch_size=4, checkpoint_every=5, sample_every=10, progress_interval_s=0.0, priority="normal",
                mixed_precision=False, stop_timeout_s=60.0, min_steps=1, upload_cooldown_s=0.0,
                model_overrides=dict(TEST_MODEL_OVERRIDES))
    base.update(overrides)
    return JobSettings(**base)


def rows(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


async def refused(coro) -> tuple[JobError, str]:
    """The refusal ``coro`` raises, and what the chat says for it."""
    with pytest.raises(JobError) as error:
        await coro
    return error.value, refusal_text(error.value)


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
    return await until(lambda: next((e for e in events if predicate(e)), None), "the event", timeout)


# ---------------------------------------------------------------------------- the happy path

async def test_trained_style_is_registered_only_in_its_scope_and_jobs_queue_with_positions(
        env, managers, upload):
    from gan.inference import AvatarGenerator

    manager = await managers(env.manager(max_concurrent=1))
    events = []
    manager.subscribe(events.append)

    # A long job holds the one worker until the others are queued (a short one could finish while the
    # next uploads are checked, on a busy machine).
    blocker = await manager.submit("discord:9", "wait", upload, steps=2000)
    assert blocker.status == RUNNING
    first = await manager.submit("discord:1", "ink", upload, requested_by="admin#1", steps=12,
                                 reply_to={"channel": 5, "message": 9})
    assert (first.status, first.queue_position, first.report["kept"]) == (QUEUED, 1, 40)
    second = await manager.submit("telegram:-100", "ink", upload, steps=3)  # same name, other scope
    third = await manager.submit("discord:2", "blue", upload, steps=3)
    assert (second.status, second.queue_position) == (QUEUED, 2)
    assert (third.status, third.queue_position) == (QUEUED, 3)

    busy, says = await refused(manager.submit("discord:1", "other", upload))
    assert busy.kind == "busy" and "already queued here" in says

    cancelled = await manager.cancel("discord:2", by="admin#2")
    assert cancelled.status == CANCELLED and not cancelled.job_dir.exists()
    assert (await manager.status("telegram:-100")).queue_position == 2
    await manager.cancel("discord:9")
    assert (await manager.wait(blocker.id, WAIT_S)).status == CANCELLED

    done = await manager.wait(first.id, WAIT_S)
    assert done.status == SUCCEEDED, done
    done2 = await manager.wait(second.id, WAIT_S)
    assert done2.status == SUCCEEDED, done2

    styles = manager.styles
    path = styles.resolve_style("discord:1", "ink")
    assert path == env.styles / "discord" / "1" / "ink"
    assert styles.resolve_style("discord:2", "ink") is None
    assert styles.resolve_style("discord:1", "blue") is None
    assert styles.style_names("discord:1") == ["ink"]
    assert [s.name for s in await styles.list_styles("discord:1")] == ["ink"]
    assert styles.resolve_style("telegram:-100", "ink") == env.styles / "telegram" / "-100" / "ink"
    # Its size on disk, counted once when it is registered, for the scope's total.
    assert styles.usage("discord:1") == (1, folder_size(path)) and folder_size(path) > 0
    assert styles.usage("discord:2") == (0, 0)
    assert rows(env.db, "SELECT size_bytes, last_used FROM styles WHERE scope = 'discord:1'") == [
        (folder_size(path), None)]

    gen = AvatarGenerator.load(path)
    assert gen.generate([42]).shape == (1, 64, 64, 3) and gen.style == "ink"
    meta = json.loads((path / "style.json").read_text())
    assert meta["config"]["diffaugment"] == "color,translation,cutout"
    assert meta["training"]["init_from"] == str(env.default.resolve())
    assert styles.style_record("discord:1", "ink").sha256 == gen.weights_sha256

    kinds = [(e.job.id, e.kind) for e in events]
    assert (first.id, "sample") in kinds and (third.id, "finished") in kinds
    finished = [e for e in events if e.job.id == first.id and e.final]
    assert len(finished) == 1 and finished[0].job.status == SUCCEEDED
    assert finished[0].sample_png.startswith(b"\x89PNG")
    assert finished[0].job.reply_to == {"channel": 5, "message": 9}
    steps = [e.step for e in events if e.job.id == first.id and e.kind == "progress"]
    assert steps == sorted(steps) and steps[-1] == 12

    assert "already exists" in (await refused(manager.submit("discord:1", "ink", upload)))[1]
    assert not [p for p in env.jobs.iterdir()], "job folders are removed once the style is registered"
    assert rows(env.db, "SELECT scope, name, job_id FROM styles ORDER BY id") == [
        ("discord:1", "ink", first.id), ("telegram:-100", "ink", second.id)]
    assert integrity(env.db) == "ok"

    await styles.set_default("discord:1", "ink")
    assert styles.default_style("discord:1") == "ink"
    assert "Unknown style" in (await refused(styles.set_default("discord:2", "ink")))[1]
    await styles.set_default("discord:2", "default", builtin=["default"])
    await styles.delete_style("discord:1", "ink")
    assert styles.resolve_style("discord:1", "ink") is None and not path.exists()
    assert styles.default_style("discord:1") is None and styles.usage("discord:1") == (0, 0)
    assert "no custom style" in (await refused(styles.delete_style("discord:1", "ink")))[1]
    assert integrity(env.db) == "ok"


# ---------------------------------------------------------------------------- the quality gate

@pytest.mark.skipif(not INCEPTION_WEIGHTS.exists(), reason="shared Inception weights not present")
async def test_a_style_further_from_the_pictures_than_its_baseline_is_held_back_and_expires_unpublished(
        env, managers, upload, tmp_path):
    # The baseline is the uploaded pictures themselves: no trained style comes closer to them.
    pictures = make_image_folder(tmp_path / "pictures", 40, seed=7)
    gate = GateSpec(inception_weights=str(INCEPTION_WEIGHTS), samples=16, real_samples=16, baseline=str(pictures))
    manager = await managers(env.manager(gate=gate))
    job = await manager.submit("discord:1", "ink", upload, steps=2)
    done = await manager.wait(job.id, WAIT_S)
    assert (done.status, done.message) == (SUCCEEDED, "style held back for an admin"), done

    styles = manager.styles
    record = styles.any_record("discord:1", "ink")
    figures = json.loads((record.path / "style.json").read_text())["gate"]
    assert figures["ratio"] < 1 and figures["kid_style"] > figures["kid_default"], figures
    assert (figures["samples"], figures["real_samples"]) == (16, 16) and record.gate == figures
    # Not drawable, not a default, but it holds its name and its slot.
    assert styles.resolve_style("discord:1", "ink") is None and styles.style_names("discord:1") == []
    assert styles.pending_names("discord:1") == ["ink"] and styles.usage("discord:1")[0] == 1
    assert "Unknown style" in (await refused(styles.set_default("discord:1", "ink")))[1]
    assert "already exists" in (await refused(manager.submit("discord:1", "ink", upload)))[1]

    # Pending is kept in the database: a restarted bot still holds it back.
    await manager.stop()
    manager = await managers(env.manager(gate=gate))
    assert manager.styles.pending_names("discord:1") == ["ink"]
    assert manager.styles.resolve_style("discord:1", "ink") is None
    # Nobody published it: once its days are up, the next start deletes it.
    await manager.stop()
    manager = await managers(env.manager(gate=gate, pending_days=1e-9))
    assert manager.styles.any_record("discord:1", "ink") is None and not record.path.exists()
    assert rows(env.db, "SELECT COUNT(*) FROM styles") == [(0,)]
    assert integrity(env.db) == "ok"


@pytest.mark.skipif(not INCEPTION_WEIGHTS.exists(), reason="shared Inception weights not present")
async def test_a_style_closer_to_the_pictures_than_its_baseline_is_published_at_once(env, managers, upload, tmp_path):
    # The baseline is a folder of black pictures: any style of faces comes closer to the upload.
    black = tmp_path / "black"
    black.mkdir()
    for i in range(16):
        Image.new("RGB", (64, 64)).save(black / f"{i:02d}.png")
    gate = GateSpec(inception_weights=str(INCEPTION_WEIGHTS), samples=16, real_samples=16, baseline=str(black))
    manager = await managers(env.manager(gate=gate))
    job = await manager.submit("discord:1", "ink", upload, steps=2)
    done = await manager.wait(job.id, WAIT_S)
    assert (done.status, done.message) == (SUCCEEDED, "style ready"), done
    record = manager.styles.any_record("discord:1", "ink")
    assert not record.pending and record.gate["ratio"] > 1, record.gate
    assert manager.styles.resolve_style("discord:1", "ink") is not None
    assert manager.styles.style_names("discord:1") == ["ink"] and manager.styles.pending_names("discord:1") == []


# ---------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("name", ["Ink", "../ink", "ink/../x", "", "-ink", "a" * 33, "default", "in k"])
async def test_bad_style_names_are_refused(env, managers, upload, name):
    manager = await managers(env.manager())
    assert re.search("style name|built-in", (await refused(manager.submit("discord:1", name, upload)))[1])
    assert list(env.jobs.iterdir()) == []


async def test_step_budget_outside_the_cap_is_refused(env, managers, upload):
    manager = await managers(env.manager(max_steps=50))
    for steps in (0, -1, 51):
        assert "between 1 and 50" in (await refused(manager.submit("discord:1", "ink", upload, steps=steps)))[1]


def _job_folders(env) -> list[str]:
    return sorted(p.name for p in env.jobs.iterdir())


async def test_step_budget_below_the_minimum_is_refused(env, managers, upload):
    manager = await managers(env.manager(min_steps=200, max_steps=5000))
    for steps in (1, 199):
        assert "between 200 and 5000" in (await refused(manager.submit("discord:1", "ink", upload, steps=steps)))[1]
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
    error, says = await refused(manager.submit("discord:1", "blue", upload, requested_by="discord:9"))
    assert error.kind == "bad input" and re.search(r"already has 2 custom styles.*/style delete", says)
    assert _job_folders(env) == [] and rows(env.db, "SELECT * FROM jobs") == []
    job = await manager.submit("discord:2", "blue", upload, requested_by="discord:9")  # another server's quota
    assert job.status == QUEUED


async def test_a_full_queue_refuses_new_jobs(env, managers, upload):
    manager = await managers(env.manager(max_queued=2))
    manager.stop_scheduling()
    for scope in ("discord:1", "discord:2"):
        assert (await manager.submit(scope, "ink", upload)).status == QUEUED
    folders = _job_folders(env)
    error, says = await refused(manager.submit("discord:3", "ink", upload))
    assert error.kind == "busy" and "training queue is full; please try again later" in says
    assert _job_folders(env) == folders and len(rows(env.db, "SELECT * FROM jobs")) == 2


async def test_a_user_who_used_up_their_daily_jobs_is_refused_until_a_day_has_passed(env, managers, upload):
    manager = await managers(env.manager(max_jobs_per_user_per_day=2))
    manager.stop_scheduling()
    for scope in ("discord:1", "discord:2"):
        await manager.submit(scope, "ink", upload, requested_by="discord:7")
    folders = _job_folders(env)
    error, says = await refused(manager.submit("discord:3", "ink", upload, requested_by="discord:7"))
    assert error.kind == "cooldown" and re.search(r"2 training jobs in the last 24 hours.*train again in 2[34] h", says)
    assert _job_folders(env) == folders and len(rows(env.db, "SELECT * FROM jobs")) == 2
    await manager.submit("discord:3", "ink", upload, requested_by="discord:8")  # someone else may
    with sqlite3.connect(env.db) as conn:  # the first job is now 25 hours old: a slot is free again
        conn.execute("UPDATE jobs SET created_at = created_at - 25 * 3600 WHERE id = 1")
    assert (await manager.submit("discord:4", "ink", upload, requested_by="discord:7")).status == QUEUED


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_second_upload_within_the_cooldown_is_refused_before_it_is_read(env, managers, upload):
    clock = Clock()
    manager = await managers(JobManager(env.db, env.styles, env.default, fast_settings(upload_cooldown_s=60),
                                        reserved_names=["default"], clock=clock))
    manager.stop_scheduling()
    await manager.submit("discord:1", "ink", upload, requested_by="discord:7")
    folders = _job_folders(env)
    clock.now += 10
    error, says = await refused(manager.submit("discord:2", "ink", upload, requested_by="discord:7"))
    assert error.kind == "cooldown"
    assert says == "You can send one training upload every 1 min; please wait 50 s before sending another."
    assert _job_folders(env) == folders and len(rows(env.db, "SELECT * FROM jobs")) == 1, "refused unread"
    clock.now += 30  # a refused attempt does not restart the wait
    assert "please wait 20 s" in (await refused(manager.submit("discord:2", "ink", upload,
                                                                requested_by="discord:7")))[1]
    await manager.submit("discord:2", "ink", upload, requested_by="discord:8")  # someone else may
    # Refused before its upload is read for another reason (a job is queued there): no wait starts.
    assert (await refused(manager.submit("discord:2", "sea", upload, requested_by="discord:9")))[0].reason == "busy"
    await manager.submit("discord:3", "sea", upload, requested_by="discord:9")
    # An upload refused for what it holds was read: the wait starts all the same.
    clock.now += 21
    assert (await refused(manager.submit("discord:4", "ink", b"not a zip", requested_by="discord:7")))[0].reason \
        == "bad_upload"
    clock.now += 1
    assert "please wait 59 s" in (await refused(manager.submit("discord:4", "ink", upload,
                                                                requested_by="discord:7")))[1]
    clock.now += 59
    assert (await manager.submit("discord:4", "ink", upload, requested_by="discord:7")).status == QUEUED
    # 0 turns the cooldown off.
    manager.settings.upload_cooldown_s = 0
    assert (await manager.submit("discord:5", "ink", upload, requested_by="discord:7")).status == QUEUED


async def test_a_chat_that_changes_id_takes_its_styles_default_and_jobs_along(env, managers, upload):
    old, new, path = "telegram:-5", "telegram:-1000000000005", env.styles / "telegram" / "-5"
    first = env.manager()
    await first.start()  # creates the database
    await first.stop()
    with sqlite3.connect(env.db) as conn:
        conn.executemany("INSERT INTO styles (scope, name, path, created_at, sha256, size_bytes)"
                         " VALUES (?, ?, ?, 0, 'x', ?)",
                         [(old, "ink", str(path / "ink"), 1000), (old, "sea", str(path / "sea"), 2000),
                          (new, "sea", str(env.styles / "telegram" / "-1000000000005" / "sea"), 4000)])
        conn.execute("INSERT INTO scope_settings (scope, default_style) VALUES (?, 'ink')", (old,))
    manager = await managers(env.manager())
    manager.stop_scheduling()  # the job stays queued
    job = await manager.submit(old, "blue", upload, reply_to={"chat": -5, "message": 3})

    moved = await manager.move_scope(old, new, reply_to={"chat": -1000000000005})
    assert (moved.id, moved.scope, moved.status, moved.reply_to) == (job.id, new, QUEUED, {"chat": -1000000000005})
    assert (await manager.status(new)).id == job.id and await manager.status(old) is None
    styles = manager.styles
    assert styles.style_names(new) == ["ink", "sea"] and styles.default_style(new) == "ink"
    assert styles.resolve_style(new, "ink") == path / "ink", "the folder stays; the database knows where"
    assert styles.resolve_style(new, "sea") != path / "sea", "a name the new chat has is kept"
    assert styles.style_names(old) == ["sea"] and styles.default_style(old) is None
    assert styles.usage(new) == (2, 5000)
    assert await manager.move_scope(old, new) is None  # the second notice of the same move
    await manager.stop()
    assert rows(env.db, "SELECT scope, name FROM styles ORDER BY id") == [(new, "ink"), (old, "sea"), (new, "sea")]
    assert rows(env.db, "SELECT scope, default_style FROM scope_settings") == [(new, "ink")]
    assert rows(env.db, "SELECT scope, reply_to FROM jobs") == [(new, '{"chat": -1000000000005}')]
    assert integrity(env.db) == "ok"


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
    error, says = await refused(manager.submit("discord:1", "ink", data))
    assert error.reason == "bad_upload" and says.startswith("Upload refused: ") and reason in says
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
    assert os.sched_getscheduler(pid) == os.SCHED_OTHER and os.getpriority(os.PRIO_PROCESS, pid) < TRAINING_NICE
    cancelled = await manager.cancel("discord:1", by="admin")
    assert cancelled.status == CANCELLED and "admin" in cancelled.message
    assert not _alive(pid)
    assert not job.job_dir.exists() and manager.styles.resolve_style("discord:1", "ink") is None
    assert not (env.styles / "discord" / "1" / "ink").exists()
    assert "No style is training" in (await refused(manager.cancel("discord:1")))[1]
    assert rows(env.db, "SELECT COUNT(*) FROM styles") == [(0,)]
    assert integrity(env.db) == "ok"


async def test_an_idle_priority_worker_yields_every_core_the_bot_wants(env, managers, upload):
    """The shipped setting: training yields the CPU to the bot's avatar threads (nice 10) and event loop
    (nice 0), and so does its session (Linux gives each session's autogroup an equal share, whatever its
    nice values)."""
    manager = await managers(env.manager(priority="idle"))
    await manager.submit("discord:1", "ink", upload, steps=2000)

    async def lowered() -> int | None:
        pid = (await manager.status("discord:1")).pid
        return pid if pid and os.sched_getscheduler(pid) == os.SCHED_IDLE else None

    # the worker lowers its priority first thing, before it loads TensorFlow
    pid = await until(lowered, "the worker to take the SCHED_IDLE policy", WAIT_S)
    assert os.getpriority(os.PRIO_PROCESS, pid) >= TRAINING_NICE
    assert autogroup_nice(pid) in (None, TRAINING_NICE)
    await manager.cancel("discord:1", by="admin")


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
    # The chat translates the reason: the database keeps it as a template with its figures.
    assert failed.reason.template == "the training process stopped unexpectedly ({detail})"
    assert str(failed.reason) == failed.message
    assert failed.pid is None and failed.error  # the worker's log tail, for the operator
    assert not job.job_dir.exists() and manager.styles.resolve_style("discord:1", "ink") is None
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
    assert failed.reason == Message("the default style cannot be fine-tuned: its files are missing or corrupt")
    assert "sha256" in failed.error  # the details, from the worker's log, for the operator
    assert not job.job_dir.exists() and manager.styles.resolve_style("telegram:7", "ink") is None
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
    assert manager.styles.resolve_style("discord:1", "ink") is not None
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
    spec = {"name": "ink", "run_dir": str(tmp_path / "run"), "export_dir": str(tmp_path / "export"),
            "init_from": str(env.default), "steps": 40, "batch_size": 4, "sample_every": 10,
            "checkpoint_every": 5, "model_overrides": {"g_head": 4},
            "flat_colour_overrides": {"g_palette": 8, "g_hist": 10.0}}
    model = train_options(JobSpec.from_dict({**spec, "data_dir": str(flat)})).model
    assert (model.g_head, model.g_palette, model.g_hist) == (4, 8, 10.0)
    model = train_options(JobSpec.from_dict({**spec, "data_dir": str(smooth)})).model
    assert (model.g_head, model.g_palette, model.g_hist) == (4, 0, 0.0)
    # A job queued before the setting existed trains as it was queued.
    del spec["flat_colour_overrides"]
    assert train_options(JobSpec.from_dict({**spec, "data_dir": str(flat)})).model.g_palette == 0


def test_worker_fine_tunes_the_default_style_with_the_jobs_settings(env, tmp_path):
    from training.worker import train_options

    spec = {"name": "ink", "run_dir": str(tmp_path / "run"), "export_dir": str(tmp_path / "export"),
            "init_from": str(env.default), "data_dir": str(tmp_path / "data"), "steps": 40, "batch_size": 4,
            "sample_every": 10, "checkpoint_every": 5, "mixed_precision": False, "seed": 3,
            "model_overrides": {"g_anchor": 2.0, "g_anchor_standardize": True}, "lr_warmup_steps": 8,
            "lr_decay_start": 8}
    options = train_options(JobSpec.from_dict(spec))
    assert options.lr_warmup_steps == 8 and options.steps == 40 and options.init_from == str(env.default)
    assert options.lr_decay_start == 8
    # The default style's architecture, with the fine-tuning settings on top.
    assert (options.model.g_channels, options.model.g_anchor, options.model.g_anchor_standardize) == (8, 2.0, True)
    del spec["lr_warmup_steps"], spec["lr_decay_start"]  # a job queued by an older version
    older = train_options(JobSpec.from_dict(spec))
    assert older.lr_warmup_steps == 0 and older.lr_decay_start is None


# ---------------------------------------------------------------------------- the database file

async def test_a_database_of_the_previous_schema_is_migrated_and_keeps_its_jobs(tmp_path):
    """A bot upgraded over an existing file: its jobs stay, and a job that ended before failure reasons
    were stored as messages still reads its English reason."""
    from bot.progress import describe_job
    from training.database import MIGRATIONS

    path = tmp_path / "jobs.db"
    with sqlite3.connect(path) as old:
        for version in (1, 2, 3):
            old.executescript(MIGRATIONS[version])
        old.execute("PRAGMA user_version = 3")
        old.execute("INSERT INTO jobs (scope, name, status, total_steps, message, created_at, updated_at, data_dir, "
                    "run_dir) VALUES ('discord:1', 'ink', 'failed', 1500, 'training took too long and was stopped', "
                    "0, 0, '/x/data', '/x/run')")
    manager = JobManager(path, tmp_path / "styles", tmp_path / "no-default", fast_settings())
    await manager.start()
    try:
        job = await manager.get_job(1)
    finally:
        await manager.stop()
    assert rows(path, "PRAGMA user_version") == [(4,)]
    assert (job.name, job.message, job.reason) == ("ink", "training took too long and was stopped", None)
    assert describe_job(job) == "Training of style 'ink' failed: training took too long and was stopped"
    assert integrity(path) == "ok"
