"""Uploads ingested in a child process (training/ingest.py): lowest priority, a memory cap, a time limit,
one upload at a time, and one clear line for every way the child can fail.

A folder holding a named pipe stands for a slow upload: the child blocks reading it until the test
writes a picture into it, so every "while" below is an observed state, never a timing.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import autogroup_nice, make_image_folder, until, zip_of
from tests.test_prepare import bilevel_png, encode, picture
from training.ingest import INGEST_NICE, ingest_upload, notify_when_queued
from training.prepare import Limits, PrepareError

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists() or not hasattr(os, "mkfifo"),
                                reason="reads the child's state from Linux's /proc")


def children() -> list[int]:
    """Our own ``python -m training.ingest`` child processes."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(next(line for line in (entry / "status").read_text().splitlines()
                            if line.startswith("PPid:")).split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, StopIteration):
            continue
        if ppid == os.getpid() and b"training.ingest" in cmdline:
            found.append(int(entry.name))
    return found


def nice_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def address_space_cap(pid: int) -> str:
    line = next(line for line in Path(f"/proc/{pid}/limits").read_text().splitlines()
                if line.startswith("Max address space"))
    return line.split()[3]


def slow_upload(folder: Path, pictures: int = 3) -> Path:
    """A folder of pictures plus a named pipe that blocks the child until ``release`` writes it."""
    make_image_folder(folder, pictures, seed=11)
    os.mkfifo(folder / "zz-pipe.png")
    return folder


async def release(folder: Path, seed: int = 99) -> None:
    """Write one more picture into the folder's pipe (the child reads it and goes on)."""
    data = encode(picture(seed), "PNG")
    await asyncio.to_thread((folder / "zz-pipe.png").write_bytes, data)


async def blocked_child() -> int:
    """The one child, once it runs at its priority, capped, and waits on the pipe."""
    pids = await until(children, "the ingest child")
    assert len(pids) == 1, pids
    await until(lambda: nice_of(pids[0]) == INGEST_NICE and address_space_cap(pids[0]) != "unlimited",
                "the child to lower its priority and cap its memory")
    return pids[0]


async def test_the_child_runs_at_the_lowest_priority_with_its_memory_capped(tmp_path):
    src = slow_upload(tmp_path / "src")
    limits = Limits(max_memory_bytes=700 << 20)
    task = asyncio.create_task(ingest_upload(src, tmp_path / "out", limits))
    pid = await blocked_child()
    assert address_space_cap(pid) == str(700 << 20)
    # It runs only on a core the bot's threads leave idle (the policy was set before its imports).
    assert os.sched_getscheduler(pid) == os.SCHED_IDLE
    # In a session of its own (a Ctrl+C to the bot's terminal is for the bot), whose autogroup is at
    # nice 19 too: Linux shares the CPU between sessions by their groups' nice values.
    assert os.getsid(pid) == pid != os.getsid(0)
    assert autogroup_nice(pid) in (None, INGEST_NICE)
    assert not task.done()
    await release(src)
    report = await task
    assert (report.kept, dict(report.skipped)) == (4, {})
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{i:06d}.png" for i in range(4)]
    assert children() == []


def test_a_checker_run_by_hand_leaves_its_shells_session_alone():
    """Only a process that leads its own session lowers the session's priority: run from a shell (here,
    pytest's session), it must not leave the shell's other commands at nice 19."""
    before = autogroup_nice(os.getpid())
    code = ("import os; from training.priority import run_in_background; run_in_background(19); "
            "print(os.getpriority(os.PRIO_PROCESS, 0), os.sched_getscheduler(0) == os.SCHED_IDLE)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["19", "True"]
    assert autogroup_nice(os.getpid()) == before


async def test_uploads_take_turns_and_the_waiting_one_hears_how_many_are_ahead(tmp_path):
    first = slow_upload(tmp_path / "first")
    second = zip_of(make_image_folder(tmp_path / "second", 3, seed=5))
    told: list[tuple[int, bool]] = []
    task_a = asyncio.create_task(ingest_upload(first, tmp_path / "out-a", Limits()))
    await blocked_child()

    async def second_upload():
        with notify_when_queued(lambda ahead: told.append((ahead, task_a.done()))):
            return await ingest_upload(second, tmp_path / "out-b", Limits())

    task_b = asyncio.create_task(second_upload())
    await until(lambda: told, "the queued notice")
    assert told == [(1, False)]
    assert len(children()) == 1, "the second upload's child waits for the first one to finish"
    assert not (tmp_path / "out-b").exists()
    await release(first)
    report_a, report_b = await asyncio.gather(task_a, task_b)
    assert (report_a.kept, report_b.kept) == (4, 3)
    # an upload with nothing ahead of it is told nothing
    with notify_when_queued(lambda ahead: told.append((ahead, True))):
        await ingest_upload(second, tmp_path / "out-c", Limits())
    assert told == [(1, False)]


async def test_a_child_over_its_memory_cap_refuses_the_upload_and_leaves_nothing(tmp_path):
    # 88 Mpx of 1-bit pixels: 15 KB in the zip, 265 MB once turned into RGB.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("big.png", bilevel_png(9400, 9400))
    limits = Limits(max_image_pixels=100_000_000, max_memory_bytes=450 << 20)
    with pytest.raises(PrepareError, match=r"^unpacking it needs more than 450 MB of memory$"):
        await ingest_upload(buf.getvalue(), tmp_path / "out", limits)
    assert not (tmp_path / "out").exists()
    assert children() == []


async def test_a_child_that_takes_too_long_is_killed_and_leaves_nothing(tmp_path):
    src = slow_upload(tmp_path / "src")  # never released
    with pytest.raises(PrepareError, match=r"^checking it took longer than 1.5 s$"):
        await ingest_upload(src, tmp_path / "out", Limits(timeout_s=1.5))
    assert not (tmp_path / "out").exists()
    assert children() == []


async def test_a_child_that_crashes_refuses_the_upload_in_one_line(tmp_path, caplog):
    src = slow_upload(tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()  # an empty folder given by the caller stays, empty
    task = asyncio.create_task(ingest_upload(src, out, Limits()))
    os.kill(await blocked_child(), signal.SIGSEGV)
    with pytest.raises(PrepareError, match=r"^checking it failed unexpectedly$"):
        await task
    assert list(out.iterdir()) == []
    assert "killed by SIGSEGV" in caplog.text  # the operator's log says why


async def test_a_cancelled_ingestion_kills_its_child(tmp_path):
    src = slow_upload(tmp_path / "src")
    task = asyncio.create_task(ingest_upload(src, tmp_path / "out", Limits()))
    pid = await blocked_child()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not Path(f"/proc/{pid}").exists()
    assert not (tmp_path / "out").exists()


async def test_a_queued_upload_is_announced_in_its_chat_and_a_refusal_is_one_line(tmp_path, tiny_style):
    """Through the bot's path: ``StyleDesk.train`` -> ``JobManager.submit`` -> the child."""
    from bot.errors import UserError
    from bot.registry import StyleRegistry
    from bot.styles import StyleDesk
    from training.jobs import JobError, JobManager, JobSettings

    class Channel:
        """Where the chat's messages go (the part of a platform's ProgressChannel used here)."""

        def __init__(self) -> None:
            self.announced: list[tuple[dict, str]] = []

        async def announce(self, target: dict, text: str, picture: bytes | None = None) -> None:
            self.announced.append((target, text))

    manager = JobManager(tmp_path / "state" / "jobs.db", tmp_path / "styles", tiny_style / "default",
                         JobSettings(min_images=20), reserved_names=["default"])
    await manager.start()
    try:
        registry = StyleRegistry(tiny_style, "default")
        registry.attach_jobs(manager)
        desk = StyleDesk(manager, registry, 25 << 20)
        channel = Channel()
        desk.add_channel("discord", channel)
        first = slow_upload(tmp_path / "first")
        task_a = asyncio.create_task(manager.submit("discord:1", "ink", first))
        await blocked_child()
        few = zip_of(make_image_folder(tmp_path / "few", 5, seed=3))
        task_b = asyncio.create_task(desk.train("discord", "2", "7", "blue", few, None, {"channel": 42}))
        await until(lambda: channel.announced, "the notice in the chat")
        assert channel.announced == [({"channel": 42, "platform": "discord", "locale": "en"},
                                       "Your upload is queued behind 1 other upload; "
                                       "it is checked when its turn comes.")]
        await release(first)
        with pytest.raises(JobError) as refused:
            await task_a
        assert "only 4 usable images; at least 20 are needed" in str(refused.value)
        with pytest.raises(UserError) as refused:
            await task_b
        assert "only 5 usable images; at least 20 are needed" in str(refused.value)
        assert "\n" not in str(refused.value)
        assert list(manager.jobs_dir.iterdir()) == []
    finally:
        await manager.stop()

