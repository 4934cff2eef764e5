"""Per-user cooldowns and per-chat rate limits, one instance shared by every platform."""

from __future__ import annotations

import time
from collections import deque
from typing import Callable

Clock = Callable[[], float]
_PRUNE_AT = 10_000  # entries before expired ones are swept


class Cooldown:
    """At most one request per key every ``seconds``."""

    def __init__(self, seconds: float, clock: Clock = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._next: dict[str, float] = {}

    def wait_time(self, key: str) -> float:
        """Seconds until ``key`` may ask again (0 when it may now)."""
        return max(0.0, self._next.get(key, 0.0) - self._clock())

    def hit(self, key: str) -> None:
        """Record a request by ``key``."""
        now = self._clock()
        if len(self._next) > _PRUNE_AT:
            self._next = {k: t for k, t in self._next.items() if t > now}
        self._next[key] = now + self.seconds


class RateLimit:
    """At most ``limit`` requests per key in any ``window`` seconds (a sliding window)."""

    def __init__(self, limit: int, window: float = 60.0, clock: Clock = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        now = self._clock()
        hits = self._hits.get(key)
        if hits is None:
            return deque()
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        return hits

    def wait_time(self, key: str) -> float:
        """Seconds until ``key`` has room for one more request (0 when it has now)."""
        hits = self._recent(key)
        if len(hits) < self.limit:
            return 0.0
        return max(0.0, hits[len(hits) - self.limit] + self.window - self._clock())

    def hit(self, key: str) -> None:
        """Record a request by ``key``."""
        now = self._clock()
        if len(self._hits) > _PRUNE_AT:
            self._hits = {k: h for k, h in self._hits.items() if h and h[-1] > now - self.window}
        self._recent(key)
        self._hits.setdefault(key, deque()).append(now)
