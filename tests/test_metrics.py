"""The metrics and health endpoint (``METRICS_PORT``): ``avatarbot run`` in its own process against the fake
Discord and Telegram servers, scraped over HTTP as Prometheus and a container's health check would."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.metrics import MetricsServer
from bot.registry import StyleRegistry
from bot.service import AvatarService
from gan.imaging import read_png_metadata
from tests.conftest import make_image_folder, zip_of
from tests.fakes.discord_server import FakeDiscord, SentMessage
from tests.fakes.harness import DISCORD_TOKEN, TELEGRAM_TOKEN, BotProcess, free_port
from tests.fakes.loop_thread import LoopThread, wait_until
from tests.fakes.styles import make_tiny_styles
from tests.fakes.telegram_server import FakeTelegram


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return make_tiny_styles(tmp_path_factory.mktemp("weights"))


@pytest.fixture
def servers():
    thread = LoopThread()
    discord, telegram = FakeDiscord(DISCORD_TOKEN), FakeTelegram(TELEGRAM_TOKEN)
    thread.run(discord.start())
    thread.run(telegram.start())
    yield discord, telegram
    thread.run(discord.stop())
    thread.run(telegram.stop())
    thread.stop()


def get(url: str) -> tuple[int, str]:
    """GET ``url``: the status and the body, whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(base: str) -> dict[tuple[str, tuple], float]:
    """Every sample of ``/metrics``, by name and labels."""
    status, text = get(base + "/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def health(base: str) -> tuple[int, dict]:
    status, body = get(base + "/healthz")
    return status, json.loads(body)


def cancelled_job_database(db, styles, weights, tmp_path) -> None:
    """A job database holding one cancelled training job, made by the real job manager."""
    from training.jobs import JobManager, JobSettings

    async def make() -> None:
        jobs = JobManager(db, styles, weights / "default", JobSettings(min_images=4))
        await jobs.start()
        jobs.stop_scheduling()  # queued, never trained
        try:
            await jobs.submit("telegram:5", "ink", zip_of(make_image_folder(tmp_path / "pics", 6)), "5")
            await jobs.cancel("telegram:5")
        finally:
            await jobs.stop()

    asyncio.run(make())


def test_requests_move_the_metrics_of_their_platform(servers, weights, tmp_path):
    dc, tg = servers
    db, styles = tmp_path / "data" / "avatarbot.db", tmp_path / "data" / "styles"
    cancelled_job_database(db, styles, weights, tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    bot = BotProcess(tmp_path / "bot", weights, dc, tg, metrics_port=port, database_path=db, styles_dir=styles)
    try:
        bot.wait_ready()
        status, body = wait_until(lambda: (h := health(base))[0] == 200 and h, 60, "a healthy bot")
        assert body == {"status": "ok", "accepting": True, "platforms": {"discord": True, "telegram": True},
                        "render_thread": True}
        before = scrape(base)
        for platform in ("discord", "telegram"):
            assert value(before, "avatarbot_requests_total", platform=platform, outcome="ok") == 0
            assert value(before, "avatarbot_reply_seconds_count", platform=platform) == 0
            assert value(before, "avatarbot_platform_up", platform=platform) == 1
        assert value(before, "avatarbot_training_jobs", state="cancelled") == 1
        assert value(before, "avatarbot_training_jobs", state="queued") == 0

        tg.send_text("/avatar 42", 31)
        photo = wait_until(lambda: tg.sent(31, ("sendPhoto",)), 60, "the Telegram photo")[0]
        assert read_png_metadata(photo.file[1])["seed"] == "42"
        telegram_ok = lambda: value(scrape(base), "avatarbot_requests_total", platform="telegram", outcome="ok")
        wait_until(lambda: telegram_ok() == 1, 30, "the Telegram request to be counted")
        interaction = dc.slash("avatar", {"seed": "42"}, user_id=32)
        answer = wait_until(lambda: interaction.answer, 60, "the Discord answer")
        assert isinstance(answer, SentMessage) and answer.files
        discord_ok = lambda: value(scrape(base), "avatarbot_requests_total", platform="discord", outcome="ok")
        wait_until(lambda: discord_ok() == 1, 30, "the Discord request to be counted")
        tg.send_text("/avatar 42 count=99", 33)  # refused: bad input
        wait_until(lambda: tg.sent(33), 60, "the refusal")

        after = wait_until(lambda: (s := scrape(base)) and value(
            s, "avatarbot_requests_total", platform="telegram", outcome="bad_input") == 1 and s, 30, "the refusal")
        for platform in ("discord", "telegram"):
            assert value(after, "avatarbot_requests_total", platform=platform, outcome="ok") == 1
            assert value(after, "avatarbot_reply_seconds_count", platform=platform) == 1
            assert value(after, "avatarbot_reply_seconds_sum", platform=platform) > 0
            assert value(after, "avatarbot_requests_total", platform=platform, outcome="failed") == 0
        assert value(after, "avatarbot_requests_total", platform="discord", outcome="bad_input") is None
        # Seed 42 was drawn once (a batch of one face): the second platform got the cached picture.
        assert value(after, "avatarbot_render_batch_faces_count") == 1
        assert value(after, "avatarbot_render_batch_faces_sum") == 1
        assert value(after, "avatarbot_cache_misses_total", cache="reply") == 1
        assert value(after, "avatarbot_cache_hits_total", cache="reply") == 1
        assert value(after, "avatarbot_cache_hits_total", cache="generator") == 2
        assert value(after, "avatarbot_requests_in_flight") == 0
        assert value(after, "avatarbot_render_queue_faces") == 0
        assert value(after, "avatarbot_event_loop_lag_seconds_count") > 0
        assert tg.webhook is None and tg.calls_to("getUpdates"), "long polling stays the default"
    finally:
        code = bot.stop()
    assert code == 0, bot.output[-3000:]


def test_healthz_is_503_once_the_bot_stops_receiving(servers, weights, tmp_path):
    """A bot that is shutting down (finishing a reply, no longer taking requests) is reported unhealthy,
    even while its Discord connection stays open for the replies in flight."""
    dc, tg = servers
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    bot = BotProcess(tmp_path / "bot", weights, dc, tg, metrics_port=port)
    try:
        bot.wait_ready()
        wait_until(lambda: health(base)[0] == 200, 60, "a healthy bot")
        tg.hold(41)  # the reply waits in the fake until release()
        tg.send_text("/avatar 7", 41)
        wait_until(lambda: tg.sent(41, ("sendChatAction",)), 60, "the request to be admitted")
        bot.signal(signal.SIGTERM)
        stopping = {"status": "unavailable", "accepting": False, "platforms": {"discord": True, "telegram": False},
                    "render_thread": True}
        wait_until(lambda: health(base) == (503, stopping), 60, f"/healthz to say {stopping}")
        samples = scrape(base)
        assert value(samples, "avatarbot_platform_up", platform="telegram") == 0
        assert value(samples, "avatarbot_requests_in_flight") == 1
    finally:
        tg.release()
        code = bot.stop()
    assert code == 0, bot.output[-3000:]
    assert tg.sent(41, ("sendPhoto",)), "the reply in flight was still delivered"


async def test_healthz_is_503_while_the_render_thread_is_stuck(weights):
    """No platform, no warm-up: the render thread alone decides, and a stuck one is reported."""
    service = AvatarService(StyleRegistry(weights, "default"))
    server = MetricsServer(service.metrics, service, [], render_timeout_s=1.0)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    gate = threading.Event()
    await server.start("127.0.0.1", port)
    try:
        ok = {"status": "ok", "accepting": True, "platforms": {}, "render_thread": True}
        assert await asyncio.to_thread(health, base) == (200, ok)
        service._render_pool.submit(gate.wait)  # a render job that never ends
        stuck = {**ok, "status": "unavailable", "render_thread": False}
        assert await asyncio.to_thread(health, base) == (503, stuck)
        gate.set()
        assert (await asyncio.to_thread(health, base))[0] == 200
    finally:
        gate.set()
        await server.stop()
        service.close()


def test_a_metrics_port_in_use_is_one_clear_line(weights, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        bot = BotProcess(tmp_path / "bot", weights, None, None, telegram_token=TELEGRAM_TOKEN,
                         telegram_api_base="http://127.0.0.1:9/bot", metrics_port=port)
        bot.proc.wait(120)  # it exits by itself
        code = bot.stop()
    assert code == 2
    lines = [line for line in bot.output.splitlines() if "cannot serve metrics" in line]
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "Traceback" not in bot.output
