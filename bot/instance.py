"""One ``avatarbot run`` per database: an exclusive lock on a file beside ``DATABASE_PATH``.

Two bots on one database would each resume the other's jobs, start a second worker on a job folder
in use, and remove folders the other still needs. So ``avatarbot run`` locks ``<DATABASE_PATH>.lock``
(``data/avatarbot.db.lock`` by default) before it touches anything, and holds the lock until the
process ends. The lock is the operating system's (``flock``): a bot that dies, even by SIGKILL, gives
it up at once, so a stale lock file never blocks the next start. The file keeps the holder's process
id, for the message the second bot prints.

The lock's descriptor is not inherited (Python's default), so a training worker that outlives a dead
bot never holds it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import TracebackType

try:
    import fcntl
except ImportError:  # not a Unix: no flock
    fcntl = None

log = logging.getLogger(__name__)


class InstanceLockError(Exception):
    """Another process holds the database's lock (or the lock file cannot be opened); ``str(error)``
    is one line for the operator."""


def lock_path(database_path: str | os.PathLike) -> Path:
    """The lock file of a database: ``avatarbot.db`` -> ``avatarbot.db.lock``, in the same folder."""
    database = Path(database_path)
    return database.with_name(database.name + ".lock")


class InstanceLock:
    """The held lock of one database; ``release()`` (or leaving the ``with`` block) gives it up."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def acquire(cls, database_path: str | os.PathLike) -> "InstanceLock":
        """Lock ``database_path``'s lock file without waiting; ``InstanceLockError`` if another
        process holds it. Creates the database's folder if needed, and nothing else."""
        path = lock_path(database_path)
        if fcntl is None:
            log.warning("no file locks on this system: nothing stops a second bot on %s", database_path)
            return cls(path, None)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InstanceLockError(f"cannot open the lock file {path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f" (pid {holder})" if holder else ""
            raise InstanceLockError(f"another avatarbot is already running on {database_path}{who}; "
                                    "stop it first, or give this one its own DATABASE_PATH") from None
        except OSError as exc:  # e.g. a file system without locks: refuse rather than run unguarded
            os.close(fd)
            raise InstanceLockError(f"cannot lock {path}: {exc.strerror or exc}") from None
        # Only the holder writes: a second bot reads the pid without ever truncating the file.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        log.debug("holding %s", path)
        return cls(path, fd)

    def release(self) -> None:
        """Give the lock up (the file stays: removing it could let two bots lock two different files)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "InstanceLock":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    """The process id the holder wrote into the lock file, if it is there yet."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
