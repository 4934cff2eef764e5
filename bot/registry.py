"""Which styles exist, which a chat may use, and their loaded generators.

Built-in styles live under the weights folder and every chat sees them; their names are reserved.
Custom styles come from the catalogue of a ``training.jobs.JobManager`` (``attach_jobs``: its
``training.style_store.StyleStore``): each is visible only in its scope, a Discord server
(``discord:<guild id>``) or a Telegram chat (``telegram:<chat id>``), and a scope can choose its own
default style. Generators are cached by folder and weights sha256, so a style deleted and retrained
under the same name is loaded afresh. ``mark_used`` tells the catalogue an avatar was drawn in a
custom style (in memory: ``avatarbot styles prune`` reads when each was last used).

``load`` loads a generator in the registry's own loader thread, at the lowest CPU priority: the
service never loads on its render thread, so a style being loaded holds up no other style's avatars.
No lock is held while a generator loads.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.errors import UserError
from bot.i18n import Localized, Text, _
from gan.styles import StyleError, StyleInfo, list_styles
from gan.upscalers import UpscalerLibrary, upscalers_dir

if TYPE_CHECKING:
    from training.jobs import JobManager
    from training.style_store import StyleStore

log = logging.getLogger(__name__)

MAX_CUSTOM_LOADED = 8  # custom generators kept in memory (least recently used dropped); built-ins stay
LOADER_NICE = 19  # the loader thread: below the render and encoder threads (bot.service.WORKER_NICE)


@dataclass(frozen=True)
class StyleRef:
    """A resolved style: its name as users type it, its folder and its generator's weights hash
    (and for a custom style, the scope it belongs to); ``truncation`` is what its faces get when the
    user gives none (``style.json``'s measured default)."""

    name: str
    path: Path
    sha256: str
    custom: bool = False
    scope: str | None = None
    truncation: float = 1.0

    @property
    def key(self) -> str:
        """The generator cache key: the same folder with other weights is another generator."""
        return f"{self.path}@{self.sha256}"


@dataclass(frozen=True)
class StyleEntry:
    """One line of a chat's style list."""

    name: str
    description: "Text | Localized"  # a custom style's from the catalogues; a built-in style's from its style.json
    custom: bool
    default: bool


def _describe(info: StyleInfo) -> Localized:
    """A built-in style's one line, in each language its ``style.json`` has it in."""
    return Localized(tuple(sorted(info.translated_descriptions.items())), info.description())


def job_scope(platform: str, chat_id: str) -> str | None:
    """The jobs scope of a chat, or None where custom styles do not exist (e.g. a Discord DM)."""
    from training.style_store import make_scope

    try:
        return make_scope(platform, chat_id)
    except ValueError:
        return None


class StyleRegistry:
    """Styles under ``root`` (``weights/<style>/``) plus the custom styles of each scope."""

    def __init__(self, root: str | Path, default: str) -> None:
        self.root = Path(root)
        self.default = default
        self.catalogue: StyleStore | None = None  # the custom styles, once attach_jobs is called
        self._infos: dict[str, StyleInfo] = {}
        self._builtin: dict[str, StyleRef] = {}
        self._generators: dict[str, object] = {}  # built-in generators, by key
        self._custom: OrderedDict[str, object] = OrderedDict()  # custom generators, by key, LRU
        self._lock = threading.Lock()  # guards the dicts; never held while a generator loads
        self._loads: dict[str, Future] = {}  # loads under way, by key
        self._failed: dict[str, str] = {}  # why a style's files could not be loaded, by key
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="style-loader", initializer=_loader_priority)
        self.upscalers = UpscalerLibrary(upscalers_dir(self.root))  # shared by every style
        self.refresh()

    def refresh(self) -> None:
        """Rescan the weights folder (blocking file reads: call off the event loop when serving)."""
        self._infos = {info.name: info for info in list_styles(self.root)}
        self._builtin = {name: StyleRef(name, info.path, info.generator_sha256, truncation=info.default_truncation)
                         for name, info in self._infos.items()}
        log.info("styles in %s: %s", self.root, ", ".join(self._infos) or "none")

    def attach_jobs(self, jobs: "JobManager") -> None:
        """Serve each scope's custom styles from ``jobs.styles`` (its lookups never block)."""
        self.catalogue = jobs.styles

    def mark_used(self, ref: StyleRef | None) -> None:
        """An avatar is being drawn in ``ref`` (kept in memory by the catalogue; never blocks)."""
        if ref is not None and ref.custom and ref.scope is not None and self.catalogue is not None:
            self.catalogue.mark_used(ref.scope, ref.name)

    @property
    def builtin_names(self) -> list[str]:
        """The built-in styles (reserved names for custom styles)."""
        return sorted(self._infos)

    def default_for(self, platform: str = "", chat_id: str = "") -> str:
        """The chat's default style: its scope's choice if still there, else the bot's default."""
        scope = self._scope(platform, chat_id)
        chosen = self.catalogue.default_style(scope) if scope else None
        if chosen and (chosen in self._builtin or self.catalogue.resolve_style(scope, chosen) is not None):
            return chosen
        return self.default

    def names(self, platform: str = "", chat_id: str = "") -> list[str]:
        """Style names this chat may use, its default first."""
        scope = self._scope(platform, chat_id)
        custom = self.catalogue.style_names(scope) if scope else []
        default = self.default_for(platform, chat_id)
        return sorted(sorted(set(self._infos) | set(custom)), key=lambda n: n != default)

    def entries(self, platform: str = "", chat_id: str = "") -> list[StyleEntry]:
        """The chat's styles with descriptions, its default first (never blocks)."""
        default = self.default_for(platform, chat_id)
        out = []
        for name in self.names(platform, chat_id):
            info = self._infos.get(name)
            description = _describe(info) if info else _("custom style of this chat")
            out.append(StyleEntry(name, description, info is None, name == default))
        return out

    def resolve(self, name: str | None, platform: str = "", chat_id: str = "") -> StyleRef:
        """The style a request uses (the chat's default when ``name`` is empty), or a ``UserError``
        naming the choices. Never blocks: custom styles come from the catalogue's memory."""
        name = (name or "").strip().lower() or self.default_for(platform, chat_id)
        ref = self._builtin.get(name)
        scope = self._scope(platform, chat_id)
        if ref is None and scope is not None:
            ref = self.custom_ref(scope, name)
        if ref is None:
            choices = ", ".join(self.names(platform, chat_id)) or _("none installed")
            raise UserError.bad_input(_("Unknown style {name}. Available styles: {choices}.").format(
                name=repr(name), choices=choices))
        return ref

    def custom_ref(self, scope: str, name: str) -> StyleRef | None:
        """A scope's custom style by name, or None (never blocks)."""
        record = self.catalogue.style_record(scope, name) if self.catalogue is not None else None
        return None if record is None else StyleRef(name, record.path, record.sha256, custom=True, scope=scope)

    def loaded(self, key: str):
        """The generator for a ``StyleRef.key`` if it is already loaded, else None (never blocks)."""
        return self._generators.get(key) or self._custom.get(key)

    def loading(self, key: str) -> bool:
        """Whether the generator for a ``StyleRef.key`` is being loaded now (never blocks)."""
        return key in self._loads

    def load_error(self, key: str) -> str | None:
        """Why the generator for a ``StyleRef.key`` could not be loaded in the loader thread, if it could not."""
        return self._failed.get(key)

    def load(self, ref: StyleRef) -> Future:
        """Load a style's generator in the loader thread, one style at a time; a ``concurrent.futures.Future``
        of the generator (``StyleError`` when its files are refused). A load under way is shared."""
        with self._lock:
            future = self._loads.get(ref.key)
            if future is None:
                future = self._loads[ref.key] = self._loader.submit(self._load, ref)
            return future

    def _load(self, ref: StyleRef):
        try:
            return self.generator(ref)
        except StyleError as exc:
            log.warning("style %r in %s could not be loaded: %s", ref.name, ref.path, exc)
            with self._lock:
                self._failed[ref.key] = str(exc)
            raise
        finally:  # the generator is in the cache (or the failure noted) before the load ends
            with self._lock:
                self._loads.pop(ref.key, None)

    def generator(self, style: str | StyleRef):
        """The loaded ``AvatarGenerator`` of a built-in style name or a ``StyleRef`` (blocking on first
        use: call it off the loop, the service through ``load``). A custom style whose files no longer
        match its hash is refused."""
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
        if ref.custom and gen.weights_sha256 != ref.sha256:
            raise StyleError(f"style {ref.name!r} in {ref.path} changed since it was registered")
        with self._lock:
            loaded = self.loaded(ref.key)
            if loaded is not None:  # another thread loaded it meanwhile: one generator per key
                return loaded
            if ref.custom:
                self._custom[ref.key] = gen
                while len(self._custom) > MAX_CUSTOM_LOADED:
                    self._custom.popitem(last=False)
            else:
                self._generators[ref.key] = gen
                gc.freeze()  # a model's many long-lived objects would slow every full collection
        return gen

    def _scope(self, platform: str, chat_id: str) -> str | None:
        return job_scope(platform, chat_id) if self.catalogue is not None and platform else None


def _loader_priority() -> None:
    """Loading a style (reading and hashing its weights, building and compiling its generator) is
    background work: the render thread and the event loop come first. On Linux a thread has its own
    nice value."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOADER_NICE)
    except (AttributeError, OSError) as exc:  # not Linux, or not permitted: run at normal priority
        log.debug("style loader priority unchanged: %s", exc)
