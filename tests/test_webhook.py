"""Telegram in webhook mode (``TELEGRAM_WEBHOOK_URL``): ``avatarbot run`` registers its URL and secret with the
fake Bot API, and the updates Telegram would POST to it are answered; POSTs without the secret are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest
from pydantic import ValidationError

from bot.config import Settings
from bot.logs import REDACTED
from gan.imaging import read_png_metadata
from tests.fakes.harness import TELEGRAM_TOKEN, BotProcess, free_port
from tests.fakes.loop_thread import LoopThread, wait_until
from tests.fakes.styles import make_tiny_styles
from tests.fakes.telegram_server import SEND_METHODS, FakeTelegram

WEBHOOK_URL = "https://avatars.example.org/telegram/hook"
SECRET = "webhook-Secret_0123456789abcdefXYZ"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return make_tiny_styles(tmp_path_factory.mktemp("weights"))


@pytest.fixture
def telegram():
    thread = LoopThread()
    fake = FakeTelegram(TELEGRAM_TOKEN)
    thread.run(fake.start())
    yield fake
    thread.run(fake.stop())
    thread.stop()


def test_updates_posted_to_the_webhook_are_answered_and_forgeries_refused(telegram, weights, tmp_path):
    tg = telegram
    port, metrics_port = free_port(), free_port()
    bot = BotProcess(tmp_path / "bot", weights, None, tg, telegram_webhook_url=WEBHOOK_URL,
                     telegram_webhook_port=port, telegram_webhook_secret=SECRET, metrics_port=metrics_port)
    try:
        bot.wait_ready()
        assert tg.webhook is not None, "the bot registered no webhook"
        assert tg.webhook["url"] == WEBHOOK_URL and tg.webhook["secret_token"] == SECRET
        assert not tg.calls_to("getUpdates"), "a bot on a webhook does not poll"
        listener = f"http://127.0.0.1:{port}/telegram/hook"  # where a reverse proxy forwards WEBHOOK_URL

        assert tg.deliver(tg.message_update("/avatar 42", 51), listener, secret="not-the-secret") == 403
        assert tg.deliver(tg.message_update("/avatar 42", 51), listener, secret="") == 403
        assert tg.deliver(tg.message_update("/avatar 42", 52), listener) == 200
        photo = wait_until(lambda: tg.sent(52, ("sendPhoto",)), 60, "the photo")[0]
        assert read_png_metadata(photo.file[1])["seed"] == "42"
        assert not tg.sent(51, (*SEND_METHODS, "sendChatAction")), "a forged update was answered"

        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/healthz", timeout=30) as response:
            assert json.load(response)["platforms"] == {"telegram": True}
    finally:
        code = bot.stop()
    assert code == 0, bot.output[-3000:]
    log = bot.output
    assert "setWebhook" in log and REDACTED in log  # the debug log shows the call, not the secret
    assert SECRET not in log and TELEGRAM_TOKEN not in log


def test_a_webhook_without_a_secret_gets_a_random_one_that_is_redacted():
    settings = Settings(_env_file=None, telegram_token=TELEGRAM_TOKEN, telegram_webhook_url=WEBHOOK_URL)
    secret = settings.telegram_webhook_secret.get_secret_value()
    assert len(secret) >= 32 and secret in settings.secrets()
    again = Settings(_env_file=None, telegram_token=TELEGRAM_TOKEN, telegram_webhook_url=WEBHOOK_URL)
    assert again.telegram_webhook_secret.get_secret_value() != secret
    assert settings.webhook_path() == "/telegram/hook"
    assert Settings(_env_file=None, telegram_webhook_url=WEBHOOK_URL, telegram_webhook_path="in/").webhook_path() == "/in"
    assert Settings(_env_file=None).telegram_webhook_secret is None, "polling needs no secret"


@pytest.mark.parametrize("setting, value, message", [
    ("telegram_webhook_url", "http://avatars.example.org/hook", "must be an https:// URL"),
    ("telegram_webhook_secret", "has spaces in it", "1-256 characters of A-Z, a-z, 0-9, _ and -"),
])
def test_bad_webhook_settings_are_refused(setting, value, message):
    with pytest.raises(ValidationError, match=message):
        Settings(_env_file=None, **{setting: value})


def test_avatarbot_run_names_a_bad_webhook_url_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "TELEGRAM_"))}
    env.update(TELEGRAM_TOKEN=TELEGRAM_TOKEN, TELEGRAM_WEBHOOK_URL="http://avatars.example.org/hook")
    result = subprocess.run([sys.executable, "-m", "bot", "run"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "TELEGRAM_WEBHOOK_URL" in result.stderr and "https://" in result.stderr
    assert TELEGRAM_TOKEN not in result.stderr + result.stdout
