"""The SQLite file of custom styles: one aiosqlite connection, its schema and its transactions.

Training jobs (``training.jobs``) and the style catalogue (``training.style_store``) share one file
(``DATABASE_PATH``) and one connection. ``lock`` serialises their use of it on the event loop: a
transaction's statements must never interleave with another's. The file runs in WAL mode with full
syncs, so a bot killed at any moment leaves it consistent.
"""

from __future__ import annotations

import asyncio
import logging
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import aiosqlite

log = logging.getLogger(__name__)

SCHEMA_VERSION = 4
MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        scope TEXT NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
        step INTEGER NOT NULL DEFAULT 0,
        total_steps INTEGER NOT NULL,
        message TEXT NOT NULL DEFAULT '',
        error TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        requested_by TEXT NOT NULL DEFAULT '',
        data_dir TEXT NOT NULL,
        run_dir TEXT NOT NULL,
        reply_to TEXT,
        report TEXT,
        pid INTEGER
    );
    CREATE UNIQUE INDEX jobs_one_active_per_scope ON jobs (scope) WHERE status IN ('queued', 'running');
    CREATE INDEX jobs_by_status ON jobs (status, id);
    CREATE TABLE styles (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        scope TEXT NOT NULL,
        name TEXT NOT NULL,
        path TEXT NOT NULL,
        created_at REAL NOT NULL,
        job_id INTEGER UNIQUE REFERENCES jobs (id),
        sha256 TEXT NOT NULL,
        UNIQUE (scope, name)
    );
    CREATE TABLE scope_settings (
        scope TEXT PRIMARY KEY,
        default_style TEXT
    );
    """,
    # A style's size on disk (NULL until measured: the store measures it at start) and when an avatar
    # was last drawn in it (NULL: never since it was registered).
    2: """
    ALTER TABLE styles ADD COLUMN size_bytes INTEGER;
    ALTER TABLE styles ADD COLUMN last_used REAL;
    """,
    # A style the quality gate held back (training.gate): not drawable until an admin publishes it;
    # the gate's figures as JSON (NULL: no gate ran).
    3: """
    ALTER TABLE styles ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE styles ADD COLUMN gate TEXT;
    """,
    # Why a job failed or was cancelled, as a message for the chat to translate
    # (training.errors.Message as JSON; NULL: not ended, or ended before this column existed).
    4: """
    ALTER TABLE jobs ADD COLUMN reason TEXT;
    """,
}


class Database:
    """One connection to the jobs-and-styles file; ``open`` creates or migrates it."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.conn: aiosqlite.Connection | None = None
        self.lock = asyncio.Lock()

    async def open(self) -> aiosqlite.Connection:
        """Connect (creating the file and its folder if needed) and bring the schema up to date."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=FULL")
            await conn.execute("PRAGMA foreign_keys=ON")
            await conn.execute("PRAGMA busy_timeout=5000")
            self.conn = conn
            await self._migrate()
        except BaseException:
            self.conn = None
            await conn.close()
            raise
        return conn

    async def close(self) -> None:
        """Close the connection (a no-op when it is not open)."""
        if self.conn is not None:
            conn, self.conn = self.conn, None
            await conn.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception (call it under ``lock``)."""
        await self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            await self.conn.execute("ROLLBACK")
            raise
        await self.conn.execute("COMMIT")

    async def fetchall(self, sql: str, params: tuple = ()) -> list[aiosqlite.Row]:
        """Every row of a query."""
        async with self.conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def _migrate(self) -> None:
        async with self.conn.execute("PRAGMA user_version") as cursor:
            version = (await cursor.fetchone())[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path} has schema version {version}; this version knows {SCHEMA_VERSION}")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            async with self.transaction() as db:
                for statement in MIGRATIONS[target].split(";"):
                    if statement.strip():
                        await db.execute(statement)
                await db.execute(f"PRAGMA user_version = {target}")
            log.info("job database %s: schema version %d", self.path, target)
