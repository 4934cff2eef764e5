"""Which styles exist, which a chat may use, and their loaded generators.

Today every chat sees every style under the weights folder. Per-server custom styles plug in here:
``names()`` and ``resolve()`` already receive the platform and chat of the request.
"""

from __future__ import annotations

import gc
import logging
import threading
from pathlib import Path

from bot.errors import UserError
from gan.styles import StyleError, StyleInfo, list_styles

log = logging.getLogger(__name__)


class StyleRegistry:
    """Styles under ``root`` (``weights/<style>/``), with generators loaded once and kept."""

    def __init__(self, root: str | Path, default: str) -> None:
        self.root = Path(root)
        self.default = default
        self._infos: dict[str, StyleInfo] = {}
        self._generators: dict[str, object] = {}
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        """Rescan the weights folder (blocking file reads: call off the event loop when serving)."""
        self._infos = {info.name: info for info in list_styles(self.root)}
        log.info("styles in %s: %s", self.root, ", ".join(self._infos) or "none")

    def names(self, platform: str = "", chat_id: str = "") -> list[str]:
        """Style names this chat may use, the default first."""
        names = sorted(self._infos)
        return sorted(names, key=lambda n: n != self.default)

    def infos(self, platform: str = "", chat_id: str = "") -> list[StyleInfo]:
        """Descriptions of the styles this chat may use."""
        return [self._infos[n] for n in self.names(platform, chat_id)]

    def resolve(self, name: str | None, platform: str = "", chat_id: str = "") -> str:
        """The style to use for a request, or a ``UserError`` naming the choices."""
        name = (name or self.default).strip().lower()
        visible = self.names(platform, chat_id)
        if name not in visible:
            choices = ", ".join(visible) or "none installed"
            raise UserError.bad_input(f"Unknown style {name!r}. Available styles: {choices}.")
        return name

    def loaded(self, name: str):
        """The style's generator if it is already loaded, else None (never blocks)."""
        return self._generators.get(name)

    def generator(self, name: str):
        """The loaded ``AvatarGenerator`` of a style (blocking on first use: call it off the loop)."""
        from gan.inference import AvatarGenerator

        with self._lock:
            gen = self._generators.get(name)
            if gen is None:
                info = self._infos.get(name)
                if info is None:
                    raise StyleError(f"style {name!r} is not installed in {self.root}")
                gen = AvatarGenerator.load(info.path)
                self._generators[name] = gen
                gc.freeze()  # a model's many long-lived objects would slow every full collection
            return gen
