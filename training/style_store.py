"""The catalogue of custom styles: the ``styles`` and ``scope_settings`` tables, mirrored in memory.

A scope names where a style is visible: ``"discord:<guild_id>"`` or ``"telegram:<chat_id>"``
(``make_scope``). A registered style lives in ``root/<platform>/<id>/<name>/`` (a style whose chat
moved to a new id, ``move_scope``, keeps its folder: its path is in the database). Lookups the bot
makes per request (``style_record``, ``style_names``, ``default_style``, ``usage``) read memory and
never block; changes go to the database first, then to memory.

When an avatar is drawn in a custom style the registry calls ``mark_used``: the time is kept in
memory and written for every style used since the last write at most every ``USE_FLUSH_S`` seconds
and when the bot stops, so drawing never waits for a write (``unused_since`` is what
``avatarbot styles prune`` reads).

A style the quality gate held back (``StyleRecord.pending``, ``training.gate``) keeps its name and
its slot but is not drawable: ``style_record``, ``resolve_style`` and ``style_names`` leave it out
until ``publish``; ``any_record`` and ``pending_names`` see it.

The store shares the job manager's ``training.database.Database`` and its lock; ``JobManager``
registers styles through ``insert`` inside its own transaction.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Collection

import aiosqlite

from gan.styles import check_style_name
from training.database import Database
from training.errors import JobError

log = logging.getLogger(__name__)

USE_FLUSH_S = 600.0  # at most one last-use write per style this often (prune works in days)
_SCOPE = re.compile(r"^([a-z][a-z0-9_]{0,15}):(-?[A-Za-z0-9_]{1,64})$")


def make_scope(platform: str, chat_id: int | str) -> str:
    """The scope of a Discord guild or a Telegram chat, e.g. ``make_scope("discord", 42)``."""
    return check_scope(f"{platform}:{chat_id}")


def check_scope(scope: str) -> str:
    """Return ``scope`` if it looks like ``platform:id`` (it becomes two folder names)."""
    if not isinstance(scope, str) or not _SCOPE.match(scope):
        raise ValueError(f"invalid scope {scope!r}: expected 'platform:id'")
    return scope


@dataclass(frozen=True)
class StyleRecord:
    """A registered custom style (``last_used``: when an avatar was last drawn in it, if ever)."""

    scope: str
    name: str
    path: Path
    created_at: float
    job_id: int | None
    sha256: str
    size_bytes: int | None = None  # None until measured
    last_used: float | None = None
    pending: bool = False  # held back by the quality gate: not drawable until published
    gate: dict | None = None  # the quality gate's figures (training.gate), if it ran

    @property
    def last_active(self) -> float:
        """When it was last used, or registered if it never was."""
        return self.last_used if self.last_used is not None else self.created_at


# What the store serves from memory: the styles by (scope, name), and each scope's default style name.
Catalogue = tuple[dict[tuple[str, str], StyleRecord], dict[str, str]]


class StyleStore:
    """The custom styles of every scope, their scope defaults and when they were last used."""

    def __init__(self, database: Database, root: str | os.PathLike) -> None:
        self.database = database
        self.root = Path(root)
        self._styles: dict[tuple[str, str], StyleRecord] = {}
        self._defaults: dict[str, str] = {}
        self._used: dict[tuple[str, str], float] = {}  # last uses not yet written
        self._flusher: asyncio.Task | None = None

    # ------------------------------------------------------------------ lifecycle

    async def load(self) -> None:
        """Read the catalogue into memory (the database open); sizes never measured are measured now."""
        async with self.database.lock:
            await self._read()
            unmeasured = [r for r in self._styles.values() if r.size_bytes is None]
        if not unmeasured:
            return
        sizes = await asyncio.to_thread(lambda: [folder_size(r.path) for r in unmeasured])
        async with self.database.lock:
            async with self.database.transaction() as db:
                await db.executemany("UPDATE styles SET size_bytes = ? WHERE scope = ? AND name = ?",
                                     [(size, r.scope, r.name) for size, r in zip(sizes, unmeasured)])
            await self._read()

    async def start(self) -> None:
        """``load``, then write last uses every ``USE_FLUSH_S`` seconds until ``stop``."""
        await self.load()
        self._flusher = asyncio.create_task(self._flush_every(USE_FLUSH_S), name="style-uses")

    async def stop(self) -> None:
        """Stop the periodic writes and write the last uses still in memory."""
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        await self.flush_uses()

    # ------------------------------------------------------------------ lookups (memory, never block)

    def style_record(self, scope: str, name: str) -> StyleRecord | None:
        """The registered, published style ``name`` of ``scope`` (path, sha256, size), or None."""
        record = self._styles.get((scope, name))
        return record if record is not None and not record.pending else None

    def any_record(self, scope: str, name: str) -> StyleRecord | None:
        """The registered style ``name`` of ``scope``, published or pending, or None."""
        return self._styles.get((scope, name))

    def resolve_style(self, scope: str, name: str) -> Path | None:
        """The folder of custom style ``name`` visible in ``scope`` (published), or None."""
        record = self.style_record(scope, name)
        return record.path if record is not None else None

    def style_names(self, scope: str) -> list[str]:
        """Names of the scope's published custom styles, sorted."""
        return sorted(n for (s, n), r in self._styles.items() if s == scope and not r.pending)

    def pending_names(self, scope: str) -> list[str]:
        """Names of the scope's styles the quality gate held back, sorted."""
        return sorted(n for (s, n), r in self._styles.items() if s == scope and r.pending)

    def default_style(self, scope: str) -> str | None:
        """The scope's default style name, or None."""
        return self._defaults.get(scope)

    def usage(self, scope: str) -> tuple[int, int]:
        """The scope's custom styles: how many, and their total size on disk in bytes."""
        records = [r for (s, _), r in self._styles.items() if s == scope]
        return len(records), sum(r.size_bytes or 0 for r in records)

    def style_dir(self, scope: str, name: str) -> Path:
        """Where a new custom style ``name`` of ``scope`` is installed."""
        platform, _, chat = check_scope(scope).partition(":")
        return self.root / platform / chat / check_style_name(name)

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._styles

    def __len__(self) -> int:
        return len(self._styles)

    def mark_used(self, scope: str, name: str) -> None:
        """An avatar was drawn in this style now (memory only; written by ``flush_uses``)."""
        if (scope, name) in self._styles:
            self._used[(scope, name)] = time.time()

    # ------------------------------------------------------------------ changes

    async def list_styles(self, scope: str) -> list[StyleRecord]:
        """This scope's custom styles, by name, as the database holds them."""
        async with self.database.lock:
            rows = await self.database.fetchall("SELECT * FROM styles WHERE scope = ? ORDER BY name", (scope,))
        return [_record(r) for r in rows]

    async def delete_style(self, scope: str, name: str) -> StyleRecord:
        """Unregister a custom style and remove its folder (and the scope's default if it was it).
        ``/style delete`` and ``avatarbot styles prune`` both delete through here."""
        async with self.database.lock:
            rows = await self.database.fetchall("SELECT * FROM styles WHERE scope = ? AND name = ?", (scope, name))
            if not rows:
                raise JobError("no_such_style", name=name)
            record = _record(rows[0])
            async with self.database.transaction() as db:
                await db.execute("DELETE FROM styles WHERE scope = ? AND name = ?", (scope, name))
                await db.execute("UPDATE scope_settings SET default_style = NULL"
                                 " WHERE scope = ? AND default_style = ?", (scope, name))
            self._styles.pop((scope, name), None)
            self._used.pop((scope, name), None)
            if self._defaults.get(scope) == name:
                self._defaults.pop(scope)
        await asyncio.to_thread(remove_dir, record.path)
        log.info("deleted style %s/%s", scope, name)
        return record

    async def publish(self, scope: str, name: str) -> StyleRecord:
        """Make a style the quality gate held back drawable (``no_such_style`` if it is not pending)."""
        async with self.database.lock:
            record = self._styles.get((scope, name))
            if record is None or not record.pending:
                raise JobError("no_such_style", name=name)
            async with self.database.transaction() as db:
                await db.execute("UPDATE styles SET pending = 0 WHERE scope = ? AND name = ?", (scope, name))
            record = self._styles[(scope, name)] = replace(record, pending=False)
        log.info("published style %s/%s", scope, name)
        return record

    async def expired_pending(self, cutoff: float) -> list[StyleRecord]:
        """Styles held back by the quality gate since before ``cutoff`` (a Unix time)."""
        async with self.database.lock:
            rows = await self.database.fetchall(
                "SELECT * FROM styles WHERE pending = 1 AND created_at < ? ORDER BY created_at", (cutoff,))
        return [_record(r) for r in rows]

    async def set_default(self, scope: str, name: str | None, builtin: Collection[str] = ()) -> None:
        """Make ``name`` (a custom style of this scope, or one of ``builtin``) the scope's default;
        ``None`` goes back to the bot's default."""
        scope = check_scope(scope)
        async with self.database.lock:
            if name is not None and self.style_record(scope, name) is None and name not in builtin:
                raise JobError("unknown_style", name=name)
            async with self.database.transaction() as db:
                await db.execute("INSERT INTO scope_settings (scope, default_style) VALUES (?, ?)"
                                 " ON CONFLICT (scope) DO UPDATE SET default_style = excluded.default_style",
                                 (scope, name))
            if name is None:
                self._defaults.pop(scope, None)
            else:
                self._defaults[scope] = name

    async def unused_since(self, cutoff: float) -> list[StyleRecord]:
        """Styles neither used nor registered since ``cutoff`` (a Unix time), least recent first."""
        async with self.database.lock:
            rows = await self.database.fetchall(
                "SELECT * FROM styles WHERE COALESCE(last_used, created_at) < ?"
                " ORDER BY COALESCE(last_used, created_at), scope, name", (cutoff,))
        return [_record(r) for r in rows]

    async def flush_uses(self) -> None:
        """Write the last uses kept in memory, in one transaction."""
        if not self._used or self.database.conn is None:
            return
        async with self.database.lock:
            used, self._used = self._used, {}
            try:
                async with self.database.transaction() as db:
                    await db.executemany("UPDATE styles SET last_used = ? WHERE scope = ? AND name = ?",
                                         [(t, scope, name) for (scope, name), t in used.items()])
            except (aiosqlite.Error, OSError) as exc:  # kept for the next write; prune works in days
                log.warning("could not record when styles were last used: %s", exc)
                self._used = {**used, **self._used}
                return
            for key, when in used.items():
                if key in self._styles:
                    self._styles[key] = replace(self._styles[key], last_used=when)

    # ------------------------------------------------------------------ for the job manager (its lock held)

    async def insert(self, db: aiosqlite.Connection, record: StyleRecord) -> None:
        """Register ``record`` inside the caller's transaction; ``remember`` it once committed."""
        await db.execute("INSERT INTO styles (scope, name, path, created_at, job_id, sha256, size_bytes, pending, gate)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (record.scope, record.name, str(record.path), record.created_at, record.job_id,
                          record.sha256, record.size_bytes, int(record.pending),
                          None if record.gate is None else json.dumps(record.gate)))

    def remember(self, record: StyleRecord) -> None:
        """Serve a record ``insert`` committed."""
        self._styles[(record.scope, record.name)] = record

    async def move_rows(self, db: aiosqlite.Connection, old: str, new: str) -> tuple[list[str], Catalogue]:
        """Inside the caller's transaction: give ``old``'s styles and default to ``new``. A name
        ``new`` already has stays with ``old``; so does the default if ``new`` has one. Returns the
        names moved and the catalogue as the transaction leaves it: ``install`` it once committed."""
        rows = await self.database.fetchall(
            "SELECT name FROM styles WHERE scope = ? AND name NOT IN (SELECT name FROM styles WHERE scope = ?)"
            " ORDER BY name", (old, new))
        moved = [r["name"] for r in rows]
        kept = [n for s, n in self._styles if s == old and n not in moved]
        if kept:
            log.warning("styles %s of %s stay there: %s has styles of the same names", kept, old, new)
        await db.executemany("UPDATE styles SET scope = ? WHERE scope = ? AND name = ?",
                             [(new, old, name) for name in moved])
        await db.execute(
            "INSERT INTO scope_settings (scope, default_style)"
            " SELECT ?, default_style FROM scope_settings WHERE scope = ? AND default_style IS NOT NULL"
            " ON CONFLICT (scope) DO UPDATE SET default_style = COALESCE(default_style, excluded.default_style)",
            (new, old))
        await db.execute("DELETE FROM scope_settings WHERE scope = ?", (old,))
        for name in moved:
            if (old, name) in self._used:
                self._used[(new, name)] = self._used.pop((old, name))
        return moved, await self._load()

    def install(self, catalogue: Catalogue) -> None:
        """Serve ``catalogue`` (from ``move_rows``, committed): styles and defaults change together, with
        no await between the commit and this call, so no request sees half a move."""
        self._styles, self._defaults = catalogue

    # ------------------------------------------------------------------ internals

    async def _read(self) -> None:
        self.install(await self._load())

    async def _load(self) -> Catalogue:
        styles = {(r["scope"], r["name"]): _record(r) for r in await self.database.fetchall("SELECT * FROM styles")}
        defaults = {r["scope"]: r["default_style"] for r in await self.database.fetchall(
            "SELECT * FROM scope_settings WHERE default_style IS NOT NULL")}
        return styles, defaults

    async def _flush_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            await self.flush_uses()


def _record(row: aiosqlite.Row) -> StyleRecord:
    return StyleRecord(scope=row["scope"], name=row["name"], path=Path(row["path"]), created_at=row["created_at"],
                       job_id=row["job_id"], sha256=row["sha256"], size_bytes=row["size_bytes"],
                       last_used=row["last_used"], pending=bool(row["pending"]),
                       gate=json.loads(row["gate"]) if row["gate"] else None)


def folder_size(path: Path) -> int:
    """Bytes in the files under ``path`` (0 if it is missing)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def remove_dir(path: Path) -> None:
    """Remove a folder: renamed aside first, so a half-deleted folder never keeps its real name
    (the job manager's start-up removes ``.trash-*`` folders a crash left)."""
    if not path.exists():
        return
    trash = path.with_name(f".trash-{path.name}-{secrets.token_hex(4)}")
    try:
        os.replace(path, trash)
    except OSError:
        trash = path
    shutil.rmtree(trash, ignore_errors=True)
