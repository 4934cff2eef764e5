"""Start ``avatarbot run`` in its own process against the fake servers, and stop it with a signal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.fakes.discord_server import FakeDiscord
from tests.fakes.loop_thread import LoopThread, wait_until
from tests.fakes.telegram_server import FakeTelegram

DISCORD_TOKEN = "MTIwMDAwMDAwMDAwMDAwMDAwMQ.FakeDc.discord-secret-token-value-0123456789"
TELEGRAM_TOKEN = "7000000001:AAFakeTelegramSecretTokenValue-0123456789"
TG_BOT = "avatar_test_bot"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, for a listener the bot opens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class BotProcess:
    """``python -m bot run`` with its output in a file; ``stop()`` sends SIGTERM and waits."""

    def __init__(self, workdir: Path, weights: Path, discord: FakeDiscord | None, telegram: FakeTelegram | None,
                 **settings: object) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "TELEGRAM_"))}
        # UPSCALE_SIZE 256: the Upscale button's networks then stop at Real-CUGAN 4x, and the bot starts
        # without warming up the 2x stage (seconds of CPU at each start); the tests that press Upscale
        # ask for 512.
        env.update(WEIGHTS_DIR=str(weights), DEFAULT_STYLE="default", LOG_LEVEL="DEBUG", PYTHONUNBUFFERED="1",
                   TF_CPP_MIN_LOG_LEVEL="2", USER_COOLDOWN_S="0", UPSCALE_SIZE="256")
        if discord is not None:
            env.update(DISCORD_TOKEN=discord.token, DISCORD_API_BASE=discord.api_base,
                       DISCORD_GATEWAY_URL=discord.gateway_url)
        if telegram is not None:
            env.update(TELEGRAM_TOKEN=telegram.token, TELEGRAM_API_BASE=telegram.api_base,
                       TELEGRAM_FILE_BASE=telegram.file_base)
        env.update({k.upper(): str(v) for k, v in settings.items()})
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "bot.log"
        self._log = open(self.log_path, "wb")
        self.discord, self.telegram = discord, telegram
        self.proc = subprocess.Popen([sys.executable, "-m", "bot", "run"], cwd=workdir, env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 180) -> "BotProcess":
        """Until every configured platform is connected (gateway identified, updates polled)."""
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"the bot exited with {self.proc.returncode}:\n{self.output[-4000:]}")
            connected = self.discord is None or self.discord.connected
            return connected and "serving on" in self.output
        wait_until(ready, timeout, "the bot to connect")
        return self

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 90) -> int:
        """SIGTERM, then wait for the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


class Servers:
    """A fake Discord and a fake Telegram on 127.0.0.1, served from one event-loop thread."""

    def __init__(self) -> None:
        self.thread = LoopThread()
        self.discord = FakeDiscord(DISCORD_TOKEN)
        self.telegram = FakeTelegram(TELEGRAM_TOKEN, TG_BOT)
        self.thread.run(self.discord.start())
        self.thread.run(self.telegram.start())

    def close(self) -> None:
        self.thread.run(self.discord.stop())
        self.thread.run(self.telegram.stop())
        self.thread.stop()


@contextmanager
def running_bot(workdir: Path, weights: Path, **settings: object) -> Iterator[tuple[BotProcess, FakeDiscord, FakeTelegram]]:
    """A connected bot on both platforms, on fresh fake servers; on leaving, it is stopped with SIGTERM
    and must exit with status 0 (a module fixture's shared bot that crashed fails the module)."""
    servers = Servers()
    bot = BotProcess(workdir, weights, servers.discord, servers.telegram, **settings)
    try:
        bot.wait_ready()
        yield bot, servers.discord, servers.telegram
    finally:
        code = bot.stop()
        servers.close()
    assert code == 0, bot.output[-3000:]
