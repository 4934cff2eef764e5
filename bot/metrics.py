"""The operator's view of a running bot: Prometheus metrics, and a health check, over HTTP.

``Metrics`` keeps every metric in a ``CollectorRegistry`` of its own (never the global one, so that
several bots can live in one process) together with the small hooks the service, the batcher and the
adapters call. With ``METRICS_PORT`` set, ``MetricsServer`` serves them from the bot's own event loop
(aiohttp): a scrape reads what it needs at once or in a worker thread, never holding up a reply.

``GET /metrics`` (Prometheus text format):

* ``avatarbot_requests_total{platform, outcome}``: avatar requests by how they ended: ``ok`` (the
  picture was delivered), ``failed`` (the user got an apology), or the refusal's kind (``cooldown``,
  ``busy``, ``bad_input``, ``not_allowed``);
* ``avatarbot_reply_seconds{platform}``: histogram of the time from admitting a request to its
  picture being delivered;
* ``avatarbot_requests_in_flight``: admitted requests not yet answered;
* ``avatarbot_render_queue_faces``: faces waiting for the render thread;
* ``avatarbot_render_batch_faces``: histogram of the faces drawn per generator call;
* ``avatarbot_cache_hits_total{cache}`` and ``avatarbot_cache_misses_total{cache}``: the generator
  cache (``generator``: loaded styles) and the reply cache (``reply``: recent pictures);
* ``avatarbot_training_jobs{state}``: custom-style training jobs in the job database, by state;
* ``avatarbot_platform_up{platform}``: 1 while a chat platform is connected and receiving;
* ``avatarbot_event_loop_lag_seconds``: histogram of how late a 20 ms ``asyncio.sleep`` wakes
  (``bot.looplag.LoopLagMonitor``, which also logs a blocked loop);
* ``avatarbot_inline_chosen_total{result}``: faces users sent from Telegram's inline strip (with
  ``/setinlinefeedback`` on), ``known`` or ``unknown`` (a result id that names no cached face: ignored).

``GET /healthz``: 200 and ``{"status": "ok", "accepting": true, "platforms": {...}, "render_thread": true}``
when the service takes requests (it stops at the shutdown signal), every configured platform is alive and
the render thread runs a trivial job within ``RENDER_PING_TIMEOUT_S``; else 503 with the same body and
``"status": "unavailable"``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Sequence

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from training.jobs import ACTIVE_STATES, FINAL_STATES

if TYPE_CHECKING:
    from bot.service import AvatarService

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# The render thread works through its jobs in order, so the ping waits behind the batches already
# queued: a batch of 64 faces through Real-CUGAN (OUTPUT_UPSCALER=cugan) takes about 7 s on 2 cores.
RENDER_PING_TIMEOUT_S = 10.0


class Platform(Protocol):
    """What the health check asks of a chat adapter."""

    name: str

    @property
    def is_alive(self) -> bool: ...


class Metrics:
    """Every metric of one bot, in its own registry, and the hooks that update them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("avatarbot_requests", "Avatar requests by platform and outcome",
                                ["platform", "outcome"], registry=r)
        self.reply_seconds = Histogram("avatarbot_reply_seconds", "From admission to the delivered picture",
                                       ["platform"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("avatarbot_requests_in_flight", "Admitted requests not yet answered", registry=r)
        self.render_queue = Gauge("avatarbot_render_queue_faces", "Faces waiting for the render thread",
                                  registry=r)
        self.batch_faces = Histogram("avatarbot_render_batch_faces", "Faces drawn per generator call",
                                     buckets=BATCH_BUCKETS, registry=r)
        self.cache_hits = Counter("avatarbot_cache_hits", "Cache hits", ["cache"], registry=r)
        self.cache_misses = Counter("avatarbot_cache_misses", "Cache misses", ["cache"], registry=r)
        self.training_jobs = Gauge("avatarbot_training_jobs", "Custom-style training jobs by state", ["state"],
                                   registry=r)
        self.platform_up = Gauge("avatarbot_platform_up", "1 while the platform is connected and receiving",
                                 ["platform"], registry=r)
        self.loop_lag = Histogram("avatarbot_event_loop_lag_seconds", "How late a short asyncio.sleep wakes",
                                  buckets=LAG_BUCKETS, registry=r)
        self.inline_chosen_results = Counter("avatarbot_inline_chosen", "Faces sent from the inline strip",
                                             ["result"], registry=r)
        for cache in ("generator", "reply"):
            self.cache_hits.labels(cache)
            self.cache_misses.labels(cache)
        for result in ("known", "unknown"):
            self.inline_chosen_results.labels(result)

    # -- hooks ------------------------------------------------------------------------------------

    def request_done(self, platform: str, outcome: str, seconds: float | None = None) -> None:
        """A request ended: ``outcome`` is ``ok``, ``failed`` or a refusal's kind; ``seconds`` since
        admission is recorded for delivered pictures."""
        self.requests.labels(platform, outcome.replace(" ", "_")).inc()
        if outcome == "ok" and seconds is not None:
            self.reply_seconds.labels(platform).observe(seconds)

    def batch_rendered(self, faces: int) -> None:
        """One generator call drew ``faces`` faces."""
        self.batch_faces.observe(faces)

    def cache_lookup(self, cache: str, hit: bool) -> None:
        """A lookup in the ``generator`` or ``reply`` cache."""
        (self.cache_hits if hit else self.cache_misses).labels(cache).inc()

    def inline_chosen(self, known: bool) -> None:
        """A user sent a face from the inline strip; ``known``: its result id names a cached face."""
        self.inline_chosen_results.labels("known" if known else "unknown").inc()

    def expect_platform(self, platform: str) -> None:
        """Show a platform's series from the start (at zero), before its first request."""
        self.requests.labels(platform, "ok")
        self.requests.labels(platform, "failed")
        self.reply_seconds.labels(platform)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


def count_jobs(db_path: Path) -> dict[str, int]:
    """Training jobs by state, read from the job database on a read-only connection of its own (the
    job manager's connection belongs to its own tasks); {} while there is no database yet."""
    if not db_path.is_file():
        return {}
    uri = f"{db_path.resolve().as_uri()}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=1.0)) as conn:
        return dict(conn.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())


class MetricsServer:
    """``/metrics`` and ``/healthz`` on the bot's event loop."""

    def __init__(self, metrics: Metrics, service: "AvatarService", platforms: Sequence[Platform],
                 jobs_db: Path | None = None, render_timeout_s: float = RENDER_PING_TIMEOUT_S) -> None:
        self.metrics = metrics
        self.service = service
        self.platforms = list(platforms)
        self.jobs_db = jobs_db
        self.render_timeout_s = render_timeout_s
        self.url = ""
        self._runner: web.AppRunner | None = None
        metrics.in_flight.set_function(lambda: service.in_flight)
        metrics.render_queue.set_function(lambda: service.render_queue_faces)
        for platform in self.platforms:
            metrics.expect_platform(platform.name)

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` (``OSError`` if it cannot)."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        runner = web.AppRunner(app, access_log=None)  # a scrape every few seconds is not news
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.url = f"http://{host}:{port}"
        log.info("metrics on %s/metrics, health on %s/healthz", self.url, self.url)

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def health(self) -> tuple[bool, dict]:
        """Whether the bot is healthy, and the details the endpoint shows."""
        accepting = self.service.accepting
        platforms = {p.name: bool(p.is_alive) for p in self.platforms}
        render = await self.service.ping_render(self.render_timeout_s)
        healthy = accepting and render and all(platforms.values())
        return healthy, {"status": "ok" if healthy else "unavailable", "accepting": accepting,
                         "platforms": platforms, "render_thread": render}

    async def refresh(self) -> None:
        """Read what the metrics show at scrape time: the platforms, and the job database (in a thread)."""
        for platform in self.platforms:
            self.metrics.platform_up.labels(platform.name).set(1 if platform.is_alive else 0)
        if self.jobs_db is None:
            return
        try:
            counts = await asyncio.to_thread(count_jobs, self.jobs_db)
        except sqlite3.Error as exc:  # e.g. busy, or created but not yet migrated: keep the last figures
            log.debug("could not count training jobs: %s", exc)
            return
        for state in (*ACTIVE_STATES, *FINAL_STATES):
            self.metrics.training_jobs.labels(state).set(counts.get(state, 0))

    async def _metrics(self, request: web.Request) -> web.Response:
        await self.refresh()
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        healthy, body = await self.health()
        return web.Response(text=json.dumps(body), status=200 if healthy else 503, content_type="application/json")
