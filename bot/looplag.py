"""Measure the event loop's lag: how late a short timer fires. A blocked loop misses Discord's
3-second deadline and its gateway heartbeats, so the bot watches itself."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Callable

log = logging.getLogger(__name__)


KEEP_SAMPLES = 30_000  # the last 10 minutes at 20 ms: a bot runs for months


class LoopLagMonitor:
    """Wakes every ``interval`` seconds and records how late it woke (the most recent samples, and
    each one to ``on_lag`` in seconds, e.g. a metrics histogram)."""

    def __init__(self, interval: float = 0.02, warn_ms: float = 100.0,
                 on_lag: Callable[[float], None] | None = None) -> None:
        self.interval = interval
        self.warn_ms = warn_ms
        self.on_lag = on_lag
        self.samples: deque[float] = deque(maxlen=KEEP_SAMPLES)  # lag of each wake-up, in ms
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Start measuring on the running loop."""
        self._task = asyncio.create_task(self._run(), name="loop-lag")

    async def _run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(self.interval)
            lag_ms = max(0.0, (time.perf_counter() - start - self.interval) * 1000)
            self.samples.append(lag_ms)
            if self.on_lag is not None:
                self.on_lag(lag_ms / 1000)
            if lag_ms > self.warn_ms:
                log.warning("event loop was blocked for %.0f ms", lag_ms)

    @property
    def max_ms(self) -> float:
        return max(self.samples, default=0.0)

    def percentile(self, q: float) -> float:
        """The ``q`` quantile (0..1) of the measured lags, in ms."""
        if not self.samples:
            return 0.0
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    async def stop(self) -> None:
        """Stop measuring and log a summary line."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        log.info("event loop lag: max %.1f ms, p99 %.1f ms over the last %d samples",
                 self.max_ms, self.percentile(0.99), len(self.samples))
