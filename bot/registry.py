"""Which styles exist, which a chat may use, and their loaded generators.

Built-in styles live under the weights folder and every chat sees them; their names are reserved.
Custom styles come from a ``training.jobs.JobManager`` (``attach_jobs``): each is visible only in its
scope, a Discord server (``discord:<guild id>``) or a Telegram chat (``telegram:<chat id>``), and a
scope can choose its own default style. Generators are cached by folder and weights sha256, so a
style deleted and retrained under the same name is loaded afresh.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.errors import UserError
from gan.styles import StyleError, StyleInfo, list_styles
from gan.upscalers import UpscalerLibrary, upscalers_dir

if TYPE_CHECKING:
    from training.jobs import JobManager

log = logging.getLogger(__name__)

MAX_CUSTOM_LOADED = 8  # custom generators kept in memory (least recently used dropped); built-ins stay


@dataclass(frozen=True)
class StyleRef:
    """A resolved style: its name as users type it, its folder and its generator's weights hash."""

    name: str
    path: Path
    sha256: str
    custom: bool = False

    @property
    def key(self) -> str:
        """The generator cache key: the same folder with other weights is another generator."""
        return f"{self.path}@{self.sha256}"


@dataclass(frozen=True)
class StyleEntry:
    """One line of a chat's style list."""

    name: str
    description: str
    custom: bool
    default: bool


def job_scope(platform: str, chat_id: str) -> str | None:
    """The jobs scope of a chat, or None where custom styles do not exist (e.g. a Discord DM)."""
    from training.jobs import make_scope

    try:
        return make_scope(platform, chat_id)
    except ValueError:
        return None


class StyleRegistry:
    """Styles under ``root`` (``weights/<style>/``) plus the custom styles of each scope."""

    def __init__(self, root: str | Path, default: str) -> None:
        self.root = Path(root)
        self.default = default
        self.jobs: JobManager | None = None
        self._infos: dict[str, StyleInfo] = {}
        self._builtin: dict[str, StyleRef] = {}
        self._generators: dict[str, object] = {}  # built-in generators, by key
        self._custom: OrderedDict[str, object] = OrderedDict()  # custom generators, by key, LRU
        self._lock = threading.Lock()
        self.upscalers = UpscalerLibrary(upscalers_dir(self.root))  # shared by every style
        self.refresh()

    def refresh(self) -> None:
        """Rescan the weights folder (blocking file reads: call off the event loop when serving)."""
        self._infos = {info.name: info for info in list_styles(self.root)}
        self._builtin = {name: StyleRef(name, info.path, info.generator_sha256) for name, info in self._infos.items()}
        log.info("styles in %s: %s", self.root, ", ".join(self._infos) or "none")

    def attach_jobs(self, jobs: "JobManager") -> None:
        """Serve each scope's custom styles from ``jobs`` (started; its lookups never block)."""
        self.jobs = jobs

    @property
    def builtin_names(self) -> list[str]:
        """The built-in styles (reserved names for custom styles)."""
        return sorted(self._infos)

    def default_for(self, platform: str = "", chat_id: str = "") -> str:
        """The chat's default style: its scope's choice if still there, else the bot's default."""
        scope = self._scope(platform, chat_id)
        chosen = self.jobs.default_style(scope) if scope else None
        if chosen and (chosen in self._builtin or self.jobs.resolve_style(scope, chosen) is not None):
            return chosen
        return self.default

    def names(self, platform: str = "", chat_id: str = "") -> list[str]:
        """Style names this chat may use, its default first."""
        scope = self._scope(platform, chat_id)
        custom = self.jobs.style_names(scope) if scope else []
        default = self.default_for(platform, chat_id)
        return sorted(sorted(set(self._infos) | set(custom)), key=lambda n: n != default)

    def entries(self, platform: str = "", chat_id: str = "") -> list[StyleEntry]:
        """The chat's styles with descriptions, its default first (never blocks)."""
        default = self.default_for(platform, chat_id)
        out = []
        for name in self.names(platform, chat_id):
            info = self._infos.get(name)
            description = info.meta.get("description", "") if info else "custom style of this chat"
            out.append(StyleEntry(name, description, info is None, name == default))
        return out

    def resolve(self, name: str | None, platform: str = "", chat_id: str = "") -> StyleRef:
        """The style a request uses (the chat's default when ``name`` is empty), or a ``UserError``
        naming the choices. Never blocks: custom styles come from the job manager's memory."""
        name = (name or "").strip().lower() or self.default_for(platform, chat_id)
        ref = self._builtin.get(name)
        scope = self._scope(platform, chat_id)
        if ref is None and scope is not None:
            record = self.jobs.style_record(scope, name)
            if record is not None:
                ref = StyleRef(name, record.path, record.sha256, custom=True)
        if ref is None:
            choices = ", ".join(self.names(platform, chat_id)) or "none installed"
            raise UserError.bad_input(f"Unknown style {name!r}. Available styles: {choices}.")
        return ref

    def loaded(self, key: str):
        """The generator for a ``StyleRef.key`` if it is already loaded, else None (never blocks)."""
        return self._generators.get(key) or self._custom.get(key)

    def generator(self, style: str | StyleRef):
        """The loaded ``AvatarGenerator`` of a built-in style name or a ``StyleRef`` (blocking on first
        use: call it off the loop). A custom style whose files no longer match its hash is refused."""
        from gan.inference import AvatarGenerator

        ref = style if isinstance(style, StyleRef) else self._builtin.get(style)
        if ref is None:
            raise StyleError(f"style {style!r} is not installed in {self.root}")
        with self._lock:
            gen = self.loaded(ref.key)
            if gen is not None:
                if ref.custom:
                    self._custom.move_to_end(ref.key)
                return gen
            gen = AvatarGenerator.load(ref.path, upscalers=self.upscalers)
            if ref.custom:
                if gen.weights_sha256 != ref.sha256:
                    raise StyleError(f"style {ref.name!r} in {ref.path} changed since it was registered")
                self._custom[ref.key] = gen
                while len(self._custom) > MAX_CUSTOM_LOADED:
                    self._custom.popitem(last=False)
            else:
                self._generators[ref.key] = gen
                gc.freeze()  # a model's many long-lived objects would slow every full collection
            return gen

    def _scope(self, platform: str, chat_id: str) -> str | None:
        return job_scope(platform, chat_id) if self.jobs is not None and platform else None
