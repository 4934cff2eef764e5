"""Bot settings from the environment and ``.env`` (pydantic-settings); ``.env.example`` lists them all.

Tokens are ``SecretStr``: they print as ``**********`` in reprs, logs and errors. The settings at the
end (``DISCORD_API_BASE``, ``DISCORD_GATEWAY_URL``, ``TELEGRAM_API_BASE``, ``TELEGRAM_FILE_BASE``)
exist for testing against local fake servers; leave them unset in production.

Custom styles (``STYLE_*``, ``DATABASE_PATH``, ``STYLES_DIR``, ``BOT_ADMIN_IDS``, ``FACE_CASCADE``) map onto
``training.jobs.JobSettings`` through ``job_settings()``. The job database and the custom styles live in
``./data`` (relative to the directory the bot runs in, where ``.env`` is) unless configured.

``METRICS_PORT`` turns on the metrics and health endpoint (``bot.metrics``); ``TELEGRAM_WEBHOOK_URL``
switches Telegram from long polling to a webhook; ``TELEGRAM_CACHE_CHAT_ID`` sets up inline mode.
``TELEGRAM_WEBHOOK_SECRET`` is a secret like the tokens;
left empty with a webhook, a random one is made at each start (the bot registers it with Telegram itself).
"""

from __future__ import annotations

import re
from pathlib import Path
from secrets import token_urlsafe
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.paths import default_weights_dir

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# What Telegram accepts as a webhook's secret token: 1-256 of A-Z, a-z, 0-9, "_" and "-".
WEBHOOK_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class Settings(BaseSettings):
    """Everything ``avatarbot run`` can be told; each field is the upper-case environment variable."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore",
                                      env_ignore_empty=True)

    discord_token: SecretStr | None = None
    telegram_token: SecretStr | None = None
    discord_guild_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    discord_shard_count: int | None = Field(default=None, ge=1)
    discord_sync_commands: bool = True
    # Telegram webhook instead of long polling: Telegram posts updates to TELEGRAM_WEBHOOK_URL (https), which a
    # reverse proxy forwards to TELEGRAM_WEBHOOK_LISTEN:TELEGRAM_WEBHOOK_PORT, path TELEGRAM_WEBHOOK_PATH
    # (empty: the URL's own path).
    telegram_webhook_url: str | None = None
    telegram_webhook_listen: str = "127.0.0.1"
    telegram_webhook_port: int = Field(default=8443, ge=1, le=65535)
    telegram_webhook_path: str | None = None
    telegram_webhook_secret: SecretStr | None = None  # None with a webhook: a random one, made at start
    # Inline mode (bot.inline): the chat faces are uploaded to once, for their file ids; None: not set up.
    telegram_cache_chat_id: int | None = None

    weights_dir: Path | None = None
    default_style: str = "default"
    output_size: int = Field(default=256, ge=64, le=512)
    upscale_size: int = Field(default=512, ge=64, le=512)
    output_upscaler: Literal["", "bicubic", "student", "cugan"] = ""  # "": each style's own (student)
    max_grid: int = Field(default=4, ge=1, le=16)
    morph_frames: int = Field(default=24, ge=2, le=64)

    user_cooldown_s: float = Field(default=3.0, ge=0)
    chat_limit_per_minute: int = Field(default=120, ge=1)
    queue_size: int = Field(default=256, ge=1)
    batch_window_ms: float = Field(default=4.0, ge=0)
    max_batch: int = Field(default=64, ge=1)
    cache_size: int = Field(default=256, ge=0)
    encode_threads: int = Field(default=2, ge=1)
    # Styles whose generators are not in memory yet are loaded in the background at most this often.
    style_loads_per_minute: int = Field(default=6, ge=1)
    shutdown_timeout_s: float = Field(default=30.0, ge=0)
    log_level: str = "INFO"
    # The metrics and health endpoint (bot.metrics): off unless METRICS_PORT is set.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"

    # Custom styles trained in the chat (training.jobs).
    database_path: Path = Path("data/avatarbot.db")
    styles_dir: Path = Path("data/styles")
    bot_admin_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    style_train_steps: int | None = Field(default=None, ge=1)  # None: training.recipe.FEW_SHOT.steps
    style_max_steps: int | None = Field(default=None, ge=1)  # None: training.recipe.FEW_SHOT.max_steps
    style_min_steps: int = Field(default=200, ge=1)
    # Limits that keep one server or user from taking the training worker for themselves.
    style_max_per_scope: int = Field(default=5, ge=1)
    style_max_queued: int = Field(default=20, ge=1)
    style_max_jobs_per_user_per_day: int = Field(default=3, ge=1)
    style_upload_cooldown_s: float = Field(default=60.0, ge=0)  # between one user's uploads; 0: off
    # `avatarbot styles prune` deletes custom styles no avatar was drawn in for this many days.
    style_prune_days: float = Field(default=90.0, gt=0)
    # On Telegram at most 20 MB whatever the setting: the most the Bot API lets a bot download (bot.telegram_bot).
    style_max_upload_mb: float = Field(default=25.0, gt=0, le=2000)
    style_min_images: int = Field(default=20, ge=1)
    # The child process that checks an upload (training.ingest): its address space and its time.
    style_ingest_max_mb: int = Field(default=1024, ge=512)
    style_ingest_timeout_s: float = Field(default=300.0, gt=0)
    face_cascade: Path | None = None
    style_train_concurrency: int = Field(default=1, ge=1)
    style_train_priority: Literal["idle", "normal"] = "idle"
    # Finer training knobs; None keeps training.jobs.JobSettings' default.
    style_batch_size: int | None = Field(default=None, ge=1)
    style_checkpoint_every: int | None = Field(default=None, ge=1)
    style_sample_every: int | None = Field(default=None, ge=1)
    style_progress_interval_s: float | None = Field(default=None, ge=0)
    # The quality gate (training.gate): auto runs it when Inception weights are at hand (the file below,
    # or Keras' own copy already downloaded); on runs it always (Keras downloads its weights if needed).
    style_gate: Literal["auto", "on", "off"] = "auto"
    style_gate_inception_weights: Path | None = None
    style_gate_samples: int = Field(default=150, ge=10)
    style_gate_baseline: Path | None = None  # a style folder or folder of pictures; None: the default style
    style_pending_days: float = Field(default=7.0, gt=0)

    # For tests against local fake servers only.
    discord_api_base: str | None = None
    discord_gateway_url: str | None = None
    telegram_api_base: str | None = None
    telegram_file_base: str | None = None

    @field_validator("discord_guild_ids", "bot_admin_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, int):
            return [value]
        return value

    @field_validator("discord_shard_count", mode="before")
    @classmethod
    def _auto_shards(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("", "auto"):
            return None
        return value

    @field_validator("telegram_webhook_url")
    @classmethod
    def _https_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value.strip())
            if parts.scheme != "https" or not parts.hostname:
                raise ValueError("TELEGRAM_WEBHOOK_URL must be an https:// URL (Telegram posts only to HTTPS), "
                                 "e.g. https://bot.example.com/telegram")
            return value.strip()
        return value

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _secret_chars(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not WEBHOOK_SECRET.match(value.get_secret_value()):
            raise ValueError("TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @model_validator(mode="after")
    def _webhook_secret(self) -> "Settings":
        # A webhook without a secret would take updates from anyone who finds its URL. token_urlsafe's
        # alphabet is exactly the one Telegram accepts.
        if self.telegram_webhook_url and self.telegram_webhook_secret is None:
            self.telegram_webhook_secret = SecretStr(token_urlsafe(32))
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, value: object) -> object:
        level = str(value).strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        return level

    def resolved_weights_dir(self) -> Path:
        """``WEIGHTS_DIR``, else the same folder ``avatarbot generate`` uses."""
        if self.weights_dir is not None:
            return self.weights_dir
        return default_weights_dir()

    def webhook_path(self) -> str:
        """The path the Telegram webhook listens on: ``TELEGRAM_WEBHOOK_PATH``, else the URL's path."""
        path = self.telegram_webhook_path
        if path is None:
            path = urlsplit(self.telegram_webhook_url or "").path
        return "/" + path.strip("/")

    @property
    def style_max_upload_bytes(self) -> int:
        """``STYLE_MAX_UPLOAD_MB`` in bytes."""
        return int(self.style_max_upload_mb * 1024 * 1024)

    def job_settings(self):
        """How custom-style jobs run (a ``training.jobs.JobSettings``); ``STYLE_TRAIN_STEPS`` is kept within
        ``STYLE_MIN_STEPS``..``STYLE_MAX_STEPS``. Imported here: the jobs module loads TensorFlow's style code."""
        from training.jobs import JobSettings
        from training.recipe import FEW_SHOT
        from training.prepare import Limits

        max_steps = self.style_max_steps or FEW_SHOT.max_steps
        min_steps = min(self.style_min_steps, max_steps)  # an empty range would refuse every budget
        knobs = {"batch_size": self.style_batch_size, "checkpoint_every": self.style_checkpoint_every,
                 "sample_every": self.style_sample_every, "progress_interval_s": self.style_progress_interval_s}
        default_steps = max(min(self.style_train_steps or FEW_SHOT.steps, max_steps), min_steps)
        return JobSettings(default_steps=default_steps, max_steps=max_steps, min_steps=min_steps,
                           max_styles_per_scope=self.style_max_per_scope, max_queued=self.style_max_queued,
                           max_jobs_per_user_per_day=self.style_max_jobs_per_user_per_day,
                           upload_cooldown_s=self.style_upload_cooldown_s,
                           max_concurrent=self.style_train_concurrency,
                           priority=self.style_train_priority,
                           min_images=self.style_min_images,
                           limits=Limits(max_upload_bytes=self.style_max_upload_bytes,
                                         max_memory_bytes=self.style_ingest_max_mb * 1024 * 1024,
                                         timeout_s=self.style_ingest_timeout_s),
                           face_cascade=str(self.face_cascade) if self.face_cascade else None,
                           gate=self.gate_spec(), pending_days=self.style_pending_days,
                           **{k: v for k, v in knobs.items() if v is not None})

    def gate_spec(self):
        """The quality gate's settings (a ``training.gate.GateSpec``), or None when it is off: with
        ``STYLE_GATE=auto`` it runs only when Inception weights need no download."""
        from training.gate import GateSpec

        weights = self.style_gate_inception_weights
        if self.style_gate == "off":
            return None
        if self.style_gate == "auto" and not (weights.is_file() if weights is not None else _keras_inception_cached()):
            return None
        return GateSpec(inception_weights=str(weights) if weights is not None else None,
                        samples=self.style_gate_samples, real_samples=self.style_gate_samples,
                        baseline=str(self.style_gate_baseline.resolve()) if self.style_gate_baseline else None)

    def secrets(self) -> list[str]:
        """The secret values, for log redaction."""
        return [s.get_secret_value() for s in (self.discord_token, self.telegram_token, self.telegram_webhook_secret)
                if s is not None and s.get_secret_value()]


def _keras_inception_cached() -> bool:
    """Whether Keras has already downloaded its no-top Inception-v3 ImageNet weights."""
    import os

    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return (home / "models" / "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5").is_file()
