"""Telegram file ids of faces already uploaded, so a face is uploaded once and sent by id after that.

One table, ``telegram_photos``, in the bot's SQLite file (``DATABASE_PATH``), on a connection of its
own (WAL mode: it and the jobs' connection do not block each other's readers). The key is everything
that decides a face's bytes: style, generator weights hash, seed, truncation, variation, size and
upscaler (``""``: the style's own). A name is not part of it: a name is only a way to spell its seed.

The table is a cache, not part of the jobs schema (``training.database``): it is created when missing,
and an operator may drop it at any time; faces are then uploaded again as they are asked for.
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

SCHEMA = """
CREATE TABLE IF NOT EXISTS telegram_photos (
    style TEXT NOT NULL,
    weights_sha256 TEXT NOT NULL,
    seed INTEGER NOT NULL,
    truncation REAL NOT NULL,
    variation INTEGER NOT NULL,
    size INTEGER NOT NULL,
    upscaler TEXT NOT NULL,
    file_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (style, weights_sha256, seed, truncation, variation, size, upscaler)
)
"""


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


class PhotoCache:
    """The ``telegram_photos`` table: ``get``/``put`` file ids, ``sample`` a few cached faces."""

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
        except BaseException:
            await conn.close()
            raise
        self.conn = conn

    async def close(self) -> None:
        """Close the connection (a no-op when it is not open)."""
        if self.conn is not None:
            conn, self.conn = self.conn, None
            await conn.close()

    async def get(self, key: FaceKey) -> str | None:
        """The file id of an uploaded face, or None."""
        async with self.conn.execute(
                "SELECT file_id FROM telegram_photos WHERE style = ? AND weights_sha256 = ? AND seed = ? "
                "AND truncation = ? AND variation = ? AND size = ? AND upscaler = ?",
                (key.style, key.weights_sha256, key.seed, key.truncation, key.variation, key.size,
                 key.upscaler)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else row[0]

    async def put(self, key: FaceKey, file_id: str) -> None:
        """Remember a face's file id (a later upload of the same face replaces it)."""
        await self.conn.execute(
            "INSERT OR REPLACE INTO telegram_photos VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key.style, key.weights_sha256, key.seed, key.truncation, key.variation, key.size, key.upscaler,
             file_id, time.time()))

    async def sample(self, like: FaceKey, count: int) -> list[tuple[FaceKey, str]]:
        """Up to ``count`` random cached faces drawn as ``like`` is (same style, weights, truncation, size and
        upscaler; seed and variation are free)."""
        async with self.conn.execute(
                "SELECT seed, variation, file_id FROM telegram_photos WHERE style = ? AND weights_sha256 = ? "
                "AND truncation = ? AND size = ? AND upscaler = ? ORDER BY RANDOM() LIMIT ?",
                (like.style, like.weights_sha256, like.truncation, like.size, like.upscaler, count)) as cursor:
            rows = await cursor.fetchall()
        return [(FaceKey(like.style, like.weights_sha256, seed, like.truncation, variation, like.size,
                         like.upscaler), file_id) for seed, variation, file_id in rows]
