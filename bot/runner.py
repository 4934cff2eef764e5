"""``avatarbot run``: every platform that has a token, in one asyncio loop, around one service.

One bot per database: ``run`` locks ``<DATABASE_PATH>.lock`` (``bot.instance``) before anything else;
a second ``avatarbot run`` on the same database prints one line and exits with status 2, having
touched nothing.

Custom-style jobs (``training.jobs.JobManager``, its SQLite file at ``DATABASE_PATH``) start once the
platforms can post progress: jobs a previous run left queued or running resume then.

SIGINT, SIGTERM and SIGHUP: start no more training workers, refuse new requests (politely), stop fetching
Telegram updates, let training workers save a checkpoint (their jobs resume on the next start, and
the stop costs them no attempt), finish every reply in flight, close the connections, exit 0. The
workers run in their own session, so a Ctrl+C in the terminal reaches the bot alone, which then stops
them itself, in this order. A service manager should signal the bot alone too (systemd
``KillMode=mixed``, a container's stop signal reaching only the bot): see ``docs/operating.md``.

With ``METRICS_PORT`` set, ``bot.metrics`` serves ``/metrics`` and ``/healthz`` from the start of the
service until the platforms are closed, so a bot that is stopping reports itself unhealthy.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys

from bot.config import Settings
from bot.instance import InstanceLock, InstanceLockError
from gan.runtime import CLIError, start_tensorflow_quietly

log = logging.getLogger(__name__)

# The signals that stop the bot in order (a container's STOPSIGNAL must be one of them).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
NO_TOKEN = ("avatarbot: no chat platform configured. Set DISCORD_TOKEN and/or TELEGRAM_TOKEN "
            "(in the environment or in .env; see .env.example).")


def run(settings: Settings | None = None, verbose: bool = False) -> int:
    """Serve until a signal arrives; the exit status (2 when nothing is configured).

    Raises ``CLIError`` (one line, status 2) when another bot holds the database's lock.
    """
    settings = settings or Settings()
    if settings.discord_token is None and settings.telegram_token is None:
        print(NO_TOKEN, file=sys.stderr)
        return 2
    # First of all: the job manager's start-up removes and resumes job folders, which must never
    # happen under another bot's running workers.
    try:
        lock = InstanceLock.acquire(settings.database_path)
    except InstanceLockError as exc:
        raise CLIError(str(exc)) from None
    from bot.logs import configure_logging

    with lock:  # held for the life of the bot
        if not verbose:  # -v shows TensorFlow's own start-up notices
            start_tensorflow_quietly()
        configure_logging("DEBUG" if verbose else settings.log_level, settings.secrets())
        try:
            return asyncio.run(serve(settings))
        except Exception:
            log.exception("the bot stopped on an error")
            return 1


async def serve(settings: Settings) -> int:
    """Start the service and the platforms; on a signal, shut down in order."""
    from bot.looplag import LoopLagMonitor
    from bot.metrics import Metrics, MetricsServer
    from bot.registry import StyleRegistry
    from bot.service import AvatarService, ServiceLimits
    from bot.styles import StyleDesk
    from gan.styles import StyleError
    from training.jobs import JobManager

    # The secrets are in ``settings`` now; training workers inherit the environment and need none.
    for name in ("DISCORD_TOKEN", "TELEGRAM_TOKEN", "TELEGRAM_WEBHOOK_SECRET"):
        os.environ.pop(name, None)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    jobs: JobManager | None = None

    def on_signal() -> None:
        stop.set()
        if jobs is not None:
            jobs.stop_scheduling()  # at once: no worker may start once the shutdown has begun

    # SIGHUP too: a closed terminal or SSH session must stop the bot as cleanly as Ctrl+C, not kill it
    # mid-job (which would cost the job an attempt).
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal)

    weights = settings.resolved_weights_dir()
    registry = await loop.run_in_executor(None, StyleRegistry, weights, settings.default_style)
    if settings.default_style not in registry.names():
        log.error("the default style %r is not in %s (set DEFAULT_STYLE or WEIGHTS_DIR)", settings.default_style,
                  weights)
        return 2
    jobs = JobManager(settings.database_path, settings.styles_dir, weights / settings.default_style,
                      settings.job_settings(), reserved_names=registry.builtin_names)
    registry.attach_jobs(jobs)
    desk = StyleDesk(jobs, registry, settings.style_max_upload_bytes)
    metrics = Metrics()
    service = AvatarService(registry, ServiceLimits.from_settings(settings), metrics=metrics)

    platforms = []
    if settings.discord_token is not None:
        from bot.discord_bot import DiscordPlatform

        platforms.append(DiscordPlatform(settings, service, desk))
    if settings.telegram_token is not None:
        from bot.telegram_bot import TelegramPlatform

        platforms.append(TelegramPlatform(settings, service, desk))

    # Before the warm-up: a port in use is reported at once, and /healthz answers (503) while the bot starts.
    server = None
    if settings.metrics_port is not None:
        server = MetricsServer(metrics, service, platforms, jobs.db_path)
        try:
            await server.start(settings.metrics_host, settings.metrics_port)
        except OSError as exc:
            log.error("cannot serve metrics on %s:%d: %s (set METRICS_HOST/METRICS_PORT)", settings.metrics_host,
                      settings.metrics_port, exc.strerror or exc)
            service.close()
            return 2
    try:
        await service.start()
    except StyleError as exc:
        log.error("cannot load the default style: %s", exc)
        if server is not None:
            await server.stop()
        return 2

    tasks: list[asyncio.Task] = []
    status = 0
    monitor = LoopLagMonitor(on_lag=metrics.loop_lag.observe)
    try:
        for platform in platforms:
            try:
                task = await platform.start()
            except OSError as exc:  # e.g. the webhook's port in use, or the platform's API unreachable
                log.error("%s: could not start: %s", platform.name, exc.strerror or exc)
                return 1
            if task is not None:
                tasks.append(task)
        # After the platforms: resumed jobs report progress at once. Skipped once a shutdown signal
        # has come; one that comes while it starts is kept by stop_scheduling (see JobManager.start).
        if not stop.is_set():
            await jobs.start()
        # TensorFlow and the chat libraries leave ~400k long-lived objects: a full garbage collection
        # would scan them all (about 250 ms, a blocked loop). Move them out of the collector's sight.
        gc.collect()
        gc.freeze()
        monitor.start()
        log.info("serving on %s; stop with Ctrl+C or SIGTERM", ", ".join(p.name for p in platforms))
        waiter = asyncio.create_task(stop.wait(), name="stop-signal")
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            for task in done:
                log.error("a platform connection ended", exc_info=task.exception())
            status = 1
        log.info("shutting down: finishing %d requests in flight", service.in_flight)
    finally:
        service.stop_accepting()
        for platform in platforms:
            await _quietly(platform.stop_receiving(), f"{platform.name}: stop receiving")
        await asyncio.gather(service.drain(settings.shutdown_timeout_s),
                             _quietly(jobs.stop(), "training jobs: stop"))
        await monitor.stop()
        for platform in platforms:
            await _quietly(platform.stop(), f"{platform.name}: close")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await _quietly(server.stop(), "metrics: stop")
        service.close()
        log.info("stopped after %d replies", service.served)
    return status


async def _quietly(coro, what: str) -> None:
    try:
        await coro
    except Exception:
        log.exception("%s failed", what)
