"""Ingestion of one upload in a child process: lowest priority, a memory cap, a time limit, one at a time.

``ingest_upload`` runs ``training.prepare`` on an admin's upload in ``python -m training.ingest``, so
that decoding pictures never competes with the bot's replies on equal terms:

* the child runs at the lowest CPU priority from its first import (nice 19 and ``SCHED_IDLE``, in a
  session of its own whose autogroup is at nice 19: ``training.priority``) on one thread;
* its address space is capped (``Limits.max_memory_bytes``, ``STYLE_INGEST_MAX_MB``) where the
  platform enforces ``RLIMIT_AS`` (Linux): a bomb the checks in ``training.prepare`` miss fails the
  child alone, never the bot;
* it is killed after ``Limits.timeout_s`` (``STYLE_INGEST_TIMEOUT_S``), and limited to as many
  seconds of CPU time, which also ends a child whose bot was killed;
* one upload is ingested at a time (per event loop, i.e. per bot): later ones wait their turn, and a
  callback set with ``notify_when_queued`` hears how many uploads are ahead.

A refusal, a crash, a kill by the memory cap and a timeout each raise ``PrepareError`` with one line
fit for a chat, and leave no output folder behind. The child reads a zip's bytes from stdin (or a zip
or folder path from its arguments) and answers with one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import inspect
import json
import logging
import math
import os
import shutil
import signal
import sys
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from training.errors import Message, N_
from training.prepare import Limits, PrepareError, PrepareReport, ingest_zip_bytes, prepare_dataset
from training.priority import run_in_background

log = logging.getLogger(__name__)

INGEST_NICE = 19  # the lowest priority: the child gets the CPU time the bot and its replies leave
REFUSED, OUT_OF_MEMORY = 3, 4  # the child's exit statuses besides 0 (a report) and crashes
TOOK_TOO_LONG = N_("checking it took longer than {seconds} s")
# One thread for every library in the child: it needs no more, and each thread would also reserve
# address space (a stack, a malloc arena) under the memory cap.
CHILD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
             "MALLOC_ARENA_MAX": "2"}

# The child lowers its priority (training.priority: nice 19, SCHED_IDLE, and its session's autogroup)
# before it imports anything: importing PIL, NumPy and OpenCV alone costs about 0.25 s of CPU
# (`python -c "import training.ingest"`), which would otherwise run at the bot's priority on every upload
# and slow the replies of a bot that is sent many.
CHILD_START = f"""from training.priority import run_in_background
run_in_background({INGEST_NICE})
import runpy
runpy.run_module("training.ingest", run_name="__main__", alter_sys=True)
"""

QueuedCallback = Callable[[int], Awaitable[None] | None]
_on_queued: ContextVar[QueuedCallback | None] = ContextVar("ingest_on_queued", default=None)


class _Turns:
    """Uploads take turns: ``count`` is how many are being ingested or waiting (FIFO lock)."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.count = 0


_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Turns] = weakref.WeakKeyDictionary()


@contextmanager
def notify_when_queued(callback: QueuedCallback) -> Iterator[None]:
    """Within this block, an upload this task sends to ``ingest_upload`` that has to wait calls
    ``callback(ahead)`` (a function or coroutine function) once, with the number of uploads ahead of it."""
    token = _on_queued.set(callback)
    try:
        yield
    finally:
        _on_queued.reset(token)


async def ingest_upload(upload: bytes | str | os.PathLike, out: str | os.PathLike, limits: Limits,
                        face_cascade: str | os.PathLike | None = None) -> PrepareReport:
    """Ingest a zip (bytes, or a zip or folder path) into ``out`` in a child process, after the uploads
    already waiting. Raises ``PrepareError`` (one line) when the upload is refused or its child fails;
    ``out`` is then left as it was found (removed if the child created it)."""
    loop = asyncio.get_running_loop()
    turns = _turns.get(loop)
    if turns is None:
        turns = _turns[loop] = _Turns()
    ahead = turns.count
    turns.count += 1
    try:
        if ahead:
            await _tell_queued(ahead)
        async with turns.lock:
            return await _run_child(upload, Path(out), limits, face_cascade)
    finally:
        turns.count -= 1


async def _tell_queued(ahead: int) -> None:
    callback = _on_queued.get()
    if callback is None:
        return
    try:
        result = callback(ahead)
        if inspect.isawaitable(result):
            await result
    except Exception:  # noqa: BLE001 - a notice that cannot be sent must not refuse the upload
        log.exception("could not tell the uploader that their upload is queued")


async def _run_child(upload: bytes | str | os.PathLike, out: Path, limits: Limits,
                     face_cascade: str | os.PathLike | None) -> PrepareReport:
    data = bytes(upload) if isinstance(upload, (bytes, bytearray, memoryview)) else None
    args = [sys.executable, "-c", CHILD_START, str(out), "--limits", json.dumps(dataclasses.asdict(limits))]
    if data is None:
        args += ["--source", str(upload)]
    if face_cascade:
        args += ["--face-cascade", str(face_cascade)]
    existed = out.exists()
    # A session of its own: a Ctrl+C to the bot's terminal reaches the bot alone (which kills the child),
    # and the child puts its session's autogroup at nice 19, below the bot's (training.priority).
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.PIPE if data is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, **CHILD_ENV},
        start_new_session=True)
    try:
        async with asyncio.timeout(limits.timeout_s):
            stdout, stderr = await proc.communicate(data)
    except BaseException as exc:  # a timeout, or the caller cancelled: the child goes, and its files
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        await _remove(out, existed)
        if isinstance(exc, TimeoutError):
            log.warning("ingestion of %s took longer than %g s: killed", out, limits.timeout_s)
            raise PrepareError(TOOK_TOO_LONG, seconds=f"{limits.timeout_s:g}") from None
        raise
    rc = proc.returncode
    answer = _last_json_line(stdout)
    if rc == 0 and isinstance(answer.get("report"), dict):
        return PrepareReport.from_dict(answer["report"])
    await _remove(out, existed)
    if rc == REFUSED and isinstance(answer.get("error"), dict):
        try:
            refusal = Message.from_dict(answer["error"])
        except ValueError:
            pass
        else:
            raise PrepareError(refusal.template, **refusal.params)
    if rc == OUT_OF_MEMORY:
        log.warning("ingestion of %s needed more than %d MB of memory", out, limits.max_memory_bytes >> 20)
        raise PrepareError(N_("unpacking it needs more than {megabytes} MB of memory"),
                           megabytes=limits.max_memory_bytes >> 20)
    if rc == -signal.SIGKILL:  # nobody here killed it: the kernel's (or a container's) out-of-memory killer
        log.warning("ingestion of %s was killed (out of memory?)", out)
        raise PrepareError(N_("unpacking it ran out of memory"))
    if rc == -signal.SIGXCPU:
        raise PrepareError(TOOK_TOO_LONG, seconds=f"{limits.timeout_s:g}")
    tail = stderr.decode(errors="replace")[-2000:]
    log.error("ingestion of %s failed (%s):\n%s", out, _describe_exit(rc), tail)
    raise PrepareError(N_("checking it failed unexpectedly"))


async def _remove(out: Path, existed: bool) -> None:
    """Leave ``out`` as the child found it: removed if it made it, emptied if it was there empty."""
    if not existed:
        await asyncio.to_thread(shutil.rmtree, out, True)
    elif out.is_dir():
        for path in out.iterdir():
            await asyncio.to_thread(path.unlink, True)


def _last_json_line(stdout: bytes) -> dict:
    lines = stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else {}
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _describe_exit(rc: int | None) -> str:
    if rc is not None and rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit status {rc}"


# ---------------------------------------------------------------------- the child process

def _restrict(limits: Limits) -> None:
    """Lowest priority, and the memory and CPU-time caps where the platform has them."""
    # started by ``ingest_upload`` it is there already; run by hand, it gets there here
    for failure in run_in_background(INGEST_NICE):
        log.debug("priority partly unchanged: %s", failure)
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limits.max_memory_bytes, limits.max_memory_bytes))
        cpu_s = math.ceil(limits.timeout_s)
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))
    except (ImportError, AttributeError, OSError, ValueError) as exc:  # not Linux, or a lower hard limit
        log.debug("memory or CPU cap not set: %s", exc)
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass


def _answer(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """The child: ingest one upload into OUT and print the report (or the refusal) as one JSON line."""
    p = argparse.ArgumentParser(prog="python -m training.ingest", description=main.__doc__)
    p.add_argument("out", help="the empty or new folder the training pictures go to")
    p.add_argument("--limits", required=True, help="training.prepare.Limits as JSON")
    p.add_argument("--source", help="a zip file or folder (default: a zip's bytes on stdin)")
    p.add_argument("--face-cascade", help="an OpenCV cascade XML to crop faces with")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    limits = Limits(**json.loads(args.limits))
    _restrict(limits)
    try:
        if args.source is None:
            data = sys.stdin.buffer.read(limits.max_upload_bytes + 1)
            report = ingest_zip_bytes(data, args.out, face_cascade=args.face_cascade, limits=limits)
        else:
            report = prepare_dataset(args.source, args.out, face_cascade=args.face_cascade, limits=limits)
    except PrepareError as exc:
        _answer({"error": exc.message.to_dict()})
        return REFUSED
    except MemoryError:
        return OUT_OF_MEMORY
    _answer({"report": report.to_dict()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
