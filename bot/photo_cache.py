"""Telegram file ids of faces already uploaded, so a face is uploaded once and sent by id after that.

One table, ``telegram_photos``, in the bot's SQLite file (``DATABASE_PATH``), on a connection of its
own (WAL mode: it and the jobs' connection do not block each other's readers). The key is everything
that decides a face's bytes: style, generator weights hash, seed, truncation, variation, size and
upscaler (``""``: the style's own). A name is not part of it: a name is only a way to spell its seed.

A second table, ``telegram_recent_faces``, keeps the faces each user last sent from the inline strip
(``remember``, ``recent``), by the same key, at most a given number per user. A cached face is also
named by a number short enough for an inline result id: its row (``CachedPhoto.row``, the table's rowid;
an upload of the same face again keeps it, while a dropped table or a ``VACUUM`` may give it to another
face, so whoever reads a row back checks it is the face it expects).

Both tables are a cache, not part of the jobs schema (``training.database``): they are created when
missing (also in a database from before the second one), and an operator may drop either at any time;
faces are then uploaded again as they are asked for, and users' recent faces start afresh.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from bot.requests import Plan

log = logging.getLogger(__name__)

# The face key's columns (FaceKey's fields, in order), shared by both tables.
KEY_DEFINITION = """style TEXT NOT NULL, weights_sha256 TEXT NOT NULL, seed INTEGER NOT NULL, truncation REAL NOT NULL,
    variation INTEGER NOT NULL, size INTEGER NOT NULL, upscaler TEXT NOT NULL"""
KEY_COLUMNS = "style, weights_sha256, seed, truncation, variation, size, upscaler"
KEY_MATCHES = " AND ".join(f"{column} = ?" for column in KEY_COLUMNS.split(", "))
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS telegram_photos (
    {KEY_DEFINITION},
    file_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY ({KEY_COLUMNS})
)
"""
RECENT_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS telegram_recent_faces (
    user_id INTEGER NOT NULL,
    {KEY_DEFINITION},
    chosen_at REAL NOT NULL,
    PRIMARY KEY (user_id, {KEY_COLUMNS})
)
"""
MAX_ROW = 2**63 - 1  # SQLite's largest rowid: a larger number names no row (and cannot be bound)


@dataclass(frozen=True)
class FaceKey:
    """What decides one face's bytes."""

    style: str
    weights_sha256: str
    seed: int
    truncation: float
    variation: int
    size: int
    upscaler: str

    @classmethod
    def of(cls, plan: Plan) -> "FaceKey":
        """The key of a single-face plan (``plan.ref`` resolved)."""
        return cls(plan.style, plan.ref.sha256, plan.seed, plan.truncation, plan.variation, plan.size,
                   plan.upscaler or "")

    def values(self) -> tuple:
        """The key's columns, in ``KEY_COLUMNS`` order."""
        return (self.style, self.weights_sha256, self.seed, self.truncation, self.variation, self.size,
                self.upscaler)


@dataclass(frozen=True)
class CachedPhoto:
    """An uploaded face: its key, its Telegram file id, and its row in ``telegram_photos``."""

    key: FaceKey
    file_id: str
    row: int

    @classmethod
    def of_row(cls, row: tuple) -> "CachedPhoto":
        """From a ``SELECT rowid, <KEY_COLUMNS>, file_id`` row."""
        return cls(FaceKey(*row[1:8]), row[8], row[0])


class PhotoCache:
    """The ``telegram_photos`` table (``get``/``put`` file ids, ``sample`` a few cached faces, ``find`` one
    by its row) and ``telegram_recent_faces`` (``remember`` and ``recent``)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.conn: aiosqlite.Connection | None = None

    async def open(self) -> None:
        """Connect (creating the file, its folder and the table if needed)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA busy_timeout=5000")
            await conn.execute(SCHEMA)
            await conn.execute(RECENT_SCHEMA)
        except BaseException:
            await conn.close()
            raise
        self.conn = conn

    async def close(self) -> None:
        """Close the connection (a no-op when it is not open)."""
        if self.conn is not None:
            conn, self.conn = self.conn, None
            await conn.close()

    async def get(self, key: FaceKey) -> CachedPhoto | None:
        """The uploaded face of ``key``, or None."""
        async with self.conn.execute(
                f"SELECT rowid, {KEY_COLUMNS}, file_id FROM telegram_photos WHERE {KEY_MATCHES}",
                key.values()) as cursor:
            row = await cursor.fetchone()
        return None if row is None else CachedPhoto.of_row(row)

    async def put(self, key: FaceKey, file_id: str) -> CachedPhoto:
        """Remember a face's file id (a later upload of the same face replaces it, in the same row)."""
        await self.conn.execute(
            f"INSERT INTO telegram_photos ({KEY_COLUMNS}, file_id, created_at) VALUES ({_marks(9)}) "
            f"ON CONFLICT ({KEY_COLUMNS}) DO UPDATE SET file_id = excluded.file_id, created_at = excluded.created_at",
            (*key.values(), file_id, time.time()))
        return await self.get(key)

    async def find(self, row: int) -> CachedPhoto | None:
        """The face in row ``row``, or None."""
        if not 0 < row <= MAX_ROW:
            return None
        async with self.conn.execute(f"SELECT rowid, {KEY_COLUMNS}, file_id FROM telegram_photos WHERE rowid = ?",
                                     (row,)) as cursor:
            found = await cursor.fetchone()
        return None if found is None else CachedPhoto.of_row(found)

    async def sample(self, like: FaceKey, count: int) -> list[CachedPhoto]:
        """Up to ``count`` random cached faces drawn as ``like`` is (same style, weights, truncation, size and
        upscaler; seed and variation are free)."""
        async with self.conn.execute(
                f"SELECT rowid, {KEY_COLUMNS}, file_id FROM telegram_photos WHERE style = ? AND weights_sha256 = ? "
                "AND truncation = ? AND size = ? AND upscaler = ? ORDER BY RANDOM() LIMIT ?",
                (like.style, like.weights_sha256, like.truncation, like.size, like.upscaler, count)) as cursor:
            rows = await cursor.fetchall()
        return [CachedPhoto.of_row(row) for row in rows]

    async def remember(self, user_id: int, key: FaceKey, keep: int) -> None:
        """``user_id`` sent the face of ``key``: it becomes their newest recent face, and only their ``keep``
        newest distinct faces are kept."""
        # A face sent again is deleted and inserted anew: rowids grow with each insert, so the newest row
        # is the newest face (a clock set back cannot reorder them).
        await self.conn.execute(
            f"INSERT OR REPLACE INTO telegram_recent_faces (user_id, {KEY_COLUMNS}, chosen_at) VALUES ({_marks(9)})",
            (user_id, *key.values(), time.time()))
        await self.conn.execute(
            "DELETE FROM telegram_recent_faces WHERE user_id = ? AND rowid NOT IN ("
            "SELECT rowid FROM telegram_recent_faces WHERE user_id = ? ORDER BY rowid DESC LIMIT ?)",
            (user_id, user_id, keep))

    async def recent(self, user_id: int, count: int) -> list[CachedPhoto]:
        """Up to ``count`` faces ``user_id`` sent, newest first, that are still in the cache."""
        async with self.conn.execute(
                f"SELECT p.rowid, {KEY_COLUMNS}, p.file_id FROM telegram_recent_faces AS r "
                f"JOIN telegram_photos AS p USING ({KEY_COLUMNS}) WHERE r.user_id = ? "
                "ORDER BY r.rowid DESC LIMIT ?", (user_id, count)) as cursor:
            rows = await cursor.fetchall()
        return [CachedPhoto.of_row(row) for row in rows]


def _marks(count: int) -> str:
    """``count`` SQL parameter marks: ``?, ?, ?``."""
    return ", ".join("?" * count)
