"""``avatarbot run`` around its database: one bot per database, and the bot package's import graph."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.instance import InstanceLock, InstanceLockError, lock_path
from tests.conftest import REPO


def files_under(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its content (None for a folder)."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in root.rglob("*")}


def test_one_lock_per_database_naming_its_holder(tmp_path):
    db = tmp_path / "data" / "avatarbot.db"
    assert lock_path(db) == tmp_path / "data" / "avatarbot.db.lock"
    with InstanceLock.acquire(db):
        assert lock_path(db).read_text() == f"{os.getpid()}\n"
        with pytest.raises(InstanceLockError, match=rf"already running on .*avatarbot\.db \(pid {os.getpid()}\)"):
            InstanceLock.acquire(db)
        with InstanceLock.acquire(tmp_path / "data" / "other.db"):  # another database, another bot
            pass
        assert not db.exists(), "the lock never creates the database"
    with InstanceLock.acquire(db):  # given up with the first: the next bot starts
        pass


def test_a_child_process_never_holds_the_lock(tmp_path):
    """Training workers outlive a killed bot for a while: they must not keep the next one from starting."""
    db = tmp_path / "avatarbot.db"
    lock = InstanceLock.acquire(db)
    child = subprocess.Popen([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
                             close_fds=False, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "up\n"  # well past its exec
        lock.release()
        InstanceLock.acquire(db).release()
    finally:
        child.kill()
        child.wait()


def test_a_second_bot_on_the_same_database_says_so_in_one_line_and_touches_nothing(tmp_path):
    """What a bot's start-up would clean (a folder of no job, a half-deleted one, a half-installed
    style) stays, and no database is created, while another process holds the lock."""
    data = tmp_path / "data"
    for leftover in (data / "jobs" / "job-0123abcd" / "run", data / "jobs" / ".trash-job-0123abce-1a2b3c4d",
                     data / "styles" / "discord" / "1" / ".incoming-7"):
        leftover.mkdir(parents=True)
        (leftover / "checkpoint").write_bytes(b"in use")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "TELEGRAM_", "DATABASE_", "STYLES_"))}
    # Nothing listens there: a bot that got past the lock would fail to connect, never succeed.
    env.update(DISCORD_TOKEN="MTIwMDAwMDAwMDAwMDAwMDAwMQ.Fake.token", DISCORD_API_BASE="http://127.0.0.1:9/api/v10",
               DISCORD_GATEWAY_URL="ws://127.0.0.1:9", PYTHONPATH=str(REPO))
    with InstanceLock.acquire(data / "avatarbot.db"):
        before = files_under(tmp_path)
        res = subprocess.run([sys.executable, "-m", "bot", "run"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=180)
        assert files_under(tmp_path) == before
    assert res.returncode == 2, res.stderr[-3000:]
    assert res.stdout == ""
    assert res.stderr.splitlines() == [
        f"avatarbot: error: another avatarbot is already running on data/avatarbot.db (pid {os.getpid()}); "
        "stop it first, or give this one its own DATABASE_PATH"]


def test_default_weights_dir_keeps_its_order(tmp_path, monkeypatch):
    from bot.cli import default_weights_dir as from_cli
    from bot.config import Settings
    from bot.paths import default_weights_dir

    assert from_cli is default_weights_dir
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WEIGHTS_DIR", raising=False)
    assert default_weights_dir() == REPO / "weights"  # shipped with the code
    (tmp_path / "weights").mkdir()
    assert default_weights_dir() == Path("weights")  # ./weights, where the bot runs
    monkeypatch.setenv("WEIGHTS_DIR", str(tmp_path / "mine"))
    assert default_weights_dir() == tmp_path / "mine"
    assert Settings(_env_file=None).resolved_weights_dir() == tmp_path / "mine"


def _bot_imports() -> dict[str, set[str]]:
    """Each ``bot`` module and the ``bot`` modules it imports, at the top or inside a function."""
    graph: dict[str, set[str]] = {}
    for path in sorted((REPO / "bot").glob("*.py")):
        imports: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            imports.update(n for n in names if n == "bot" or n.startswith("bot."))
        graph[f"bot.{path.stem}"] = imports
    return graph


def test_the_command_line_and_the_settings_import_in_one_direction():
    """None of the modules ``avatarbot run`` starts from imports, even lazily, a module that imports
    it back (bot.cli -> bot.runner -> bot.config -> bot.cli was one)."""
    graph = _bot_imports()

    def cycle_from(start: str, node: str, path: list[str]) -> list[str] | None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                return path + [nxt]
            if nxt not in path:
                found = cycle_from(start, nxt, path + [nxt])
                if found:
                    return found
        return None

    start = ("bot.cli", "bot.runner", "bot.config", "bot.paths", "bot.instance")
    cycles = [" -> ".join(c) for m in start if (c := cycle_from(m, m, [m]))]
    assert not cycles, cycles
