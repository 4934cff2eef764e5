"""When custom styles were last used, and ``avatarbot styles prune``: a real SQLite file, real style
folders (tiny random styles), the real avatar service and the command line in its own process."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.instance import InstanceLock
from bot.progress import format_size
from bot.registry import StyleRegistry
from bot.requests import AvatarRequest
from bot.service import AvatarService, ServiceLimits
from gan.styles import read_style
from tests.conftest import REPO, integrity
from tests.fakes.styles import make_tiny_styles
from training.jobs import JobManager
from training.style_store import folder_size

DAY = 86400.0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A weights folder with a tiny default style; ``custom/ink`` is a tiny style to copy as a custom one."""
    root = make_tiny_styles(tmp_path_factory.mktemp("weights"), ("default",))
    make_tiny_styles(root / "custom", ("ink",))
    return root


def register(db: Path, styles: Path, tiny: Path, scope: str, name: str, created_at: float,
             last_used: float | None = None) -> Path:
    """A custom style as a finished job leaves it: its folder under ``styles``, its row (size not yet
    measured, as in a database from before sizes were kept)."""
    platform, _, chat = scope.partition(":")
    folder = styles / platform / chat / name
    shutil.copytree(tiny / "custom" / "ink", folder)
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO styles (scope, name, path, created_at, sha256, last_used) VALUES (?, ?, ?, ?, ?, ?)",
                     (scope, name, str(folder), created_at, read_style(folder).generator_sha256, last_used))
    return folder


async def new_database(tmp_path: Path, tiny: Path) -> tuple[Path, Path]:
    """An empty jobs-and-styles database (made by the job manager) and its styles folder."""
    db, styles = tmp_path / "data" / "avatarbot.db", tmp_path / "data" / "styles"
    manager = JobManager(db, styles, tiny / "default")
    await manager.start()
    await manager.stop()
    return db, styles


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


async def test_drawing_in_a_custom_style_records_its_last_use_without_a_write_per_avatar(tmp_path, tiny):
    db, styles = await new_database(tmp_path, tiny)
    folder = register(db, styles, tiny, "discord:1", "ink", created_at=time.time() - 100 * DAY)
    manager = JobManager(db, styles, tiny / "default", reserved_names=["default"])
    await manager.start()
    try:
        assert manager.styles.style_record("discord:1", "ink").size_bytes == folder_size(folder) > 0
        registry = StyleRegistry(tiny, "default")
        registry.attach_jobs(manager)
        registry.generator(registry.resolve("ink", "discord", "1"))  # loaded: the service draws at once
        service = AvatarService(registry, ServiceLimits(user_cooldown_s=0))
        before = time.time()
        for seed in (1, 2, 3):
            reply = await service.handle(AvatarRequest("discord", "u1", "1", seed=seed, style="ink"))
            assert reply.data.startswith(b"\x89PNG")
        await service.handle(AvatarRequest("discord", "u1", "2", seed=1))  # the default style: nothing to record
        assert rows(db, "SELECT last_used FROM styles") == [(None,)], "no database write per avatar"
        service.close()
    finally:
        await manager.stop()  # writes the last uses kept in memory
    (last_used,) = rows(db, "SELECT last_used FROM styles")[0]
    assert before <= last_used <= time.time()
    assert integrity(db) == "ok"


PRUNE_ENV = {"DATABASE_PATH": "data/avatarbot.db", "STYLES_DIR": "data/styles"}


def prune_process(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``avatarbot styles prune ARGS...`` in a process of its own, started in ``cwd``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "TELEGRAM_", "STYLE"))}
    env.update(PYTHONPATH=str(REPO), **PRUNE_ENV)
    return subprocess.run([sys.executable, "-m", "bot", "styles", "prune", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def prune(monkeypatch, capsys):
    """``avatarbot styles prune ARGS...`` started in ``cwd``, in this process (``bot.cli.main``, as
    ``python -m bot`` runs it), on a thread of its own: the command runs its own event loop."""
    from bot.cli import main

    for name in list(os.environ):
        if name.startswith(("DISCORD_", "TELEGRAM_", "STYLE")):
            monkeypatch.delenv(name)
    for name, value in PRUNE_ENV.items():
        monkeypatch.setenv(name, value)

    async def run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        code = await asyncio.to_thread(main, ["styles", "prune", *args])
        out = capsys.readouterr()
        return subprocess.CompletedProcess(["avatarbot", "styles", "prune", *args], code, out.out, out.err)

    return run


async def test_prune_lists_styles_unused_for_days_and_deletes_them_only_when_told(tmp_path, tiny, prune):
    db, styles = await new_database(tmp_path, tiny)
    now = time.time()
    old = register(db, styles, tiny, "discord:1", "old", created_at=now - 300 * DAY, last_used=now - 100 * DAY)
    never = register(db, styles, tiny, "telegram:-5", "never", created_at=now - 200 * DAY)
    fresh = register(db, styles, tiny, "discord:1", "fresh", created_at=now - 300 * DAY, last_used=now - DAY)
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO scope_settings (scope, default_style) VALUES ('discord:1', 'old')")
    size = format_size(folder_size(old))
    day = lambda t: time.strftime("%Y-%m-%d", time.localtime(t))  # noqa: E731

    # A dry run by default: what it would delete (STYLE_PRUNE_DAYS, 90 days), least recently used first.
    res = prune_process(tmp_path)  # the console command, as an operator runs it
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert re.split(r"\s+", lines[1]) == ["telegram:-5", "never", *size.split(), "never", "(made", f"{day(now - 200 * DAY)})"]
    assert re.split(r"\s+", lines[2]) == ["discord:1", "old", *size.split(), day(now - 100 * DAY)]
    assert lines[3] == (f"dry run: 2 styles ({format_size(2 * folder_size(old))}) unused for 90 days; "
                        "run again with --yes to delete them")
    assert len(lines) == 4 and old.is_dir() and never.is_dir()
    assert len(rows(db, "SELECT * FROM styles")) == 3
    longer = (await prune(tmp_path, "--days", "150")).stdout
    assert "never" in longer and "old" not in longer

    # Never while a bot runs on the database: it may be drawing in them.
    with InstanceLock.acquire(db):
        res = await prune(tmp_path, "--yes")
    assert res.returncode == 2
    assert res.stderr.strip() == (f"avatarbot: error: a bot is running on data/avatarbot.db (pid {os.getpid()}): "
                                  "stop it first, then prune its styles")
    assert old.is_dir() and never.is_dir() and len(rows(db, "SELECT * FROM styles")) == 3

    # --yes deletes them as /style delete does: rows, folders, the scope's default.
    res = await prune(tmp_path, "--yes")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[-1] == f"deleted 2 styles ({format_size(2 * folder_size(fresh))})"
    assert not old.exists() and not never.exists() and fresh.is_dir()
    assert rows(db, "SELECT scope, name FROM styles") == [("discord:1", "fresh")]
    assert rows(db, "SELECT default_style FROM scope_settings WHERE scope = 'discord:1'") == [(None,)]
    assert not [p for p in styles.rglob(".trash-*")]
    assert (await prune(tmp_path, "--yes")).stdout == "no custom style has gone unused for 90 days\n"
    assert integrity(db) == "ok"
