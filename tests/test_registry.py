"""StyleRegistry with custom styles: per-scope visibility, scope defaults, and generators cached by
folder and weights hash (a style deleted and retrained under the same name is loaded afresh)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot.errors import UserError
from bot.registry import StyleRegistry
from tests.fakes.styles import make_tiny_styles


@dataclass(frozen=True)
class Record:
    path: Path
    sha256: str


class Jobs:
    """The part of ``training.style_store.StyleStore`` the registry reads (its in-memory lookups) and
    tells (``mark_used``)."""

    def __init__(self) -> None:
        self.styles: dict[tuple[str, str], Record] = {}
        self.defaults: dict[str, str] = {}
        self.used: list[tuple[str, str]] = []

    def register(self, scope: str, name: str, path: Path) -> None:
        from gan.styles import read_style

        self.styles[(scope, name)] = Record(path, read_style(path).generator_sha256)

    def style_record(self, scope: str, name: str) -> Record | None:
        return self.styles.get((scope, name))

    def resolve_style(self, scope: str, name: str) -> Path | None:
        record = self.styles.get((scope, name))
        return record.path if record else None

    def style_names(self, scope: str) -> list[str]:
        return sorted(n for s, n in self.styles if s == scope)

    def default_style(self, scope: str) -> str | None:
        return self.defaults.get(scope)

    def mark_used(self, scope: str, name: str) -> None:
        self.used.append((scope, name))


def attach(registry: StyleRegistry, jobs: Jobs) -> None:
    """Attach ``jobs`` as a job manager's style catalogue."""
    registry.attach_jobs(SimpleNamespace(styles=jobs))


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    builtin = make_tiny_styles(tmp_path_factory.mktemp("weights"), ("default", "other"))
    first = make_tiny_styles(tmp_path_factory.mktemp("first"), ("ink",))  # random weights, seed 0
    second = make_tiny_styles(tmp_path_factory.mktemp("second"), ("x", "ink"))  # other weights (seed 1)
    return {"builtin": builtin, "ink1": first / "ink", "ink2": second / "ink"}


def test_custom_styles_are_visible_only_in_their_scope(folders):
    registry = StyleRegistry(folders["builtin"], "default")
    jobs = Jobs()
    attach(registry, jobs)
    jobs.register("discord:1", "ink", folders["ink1"])

    assert registry.names("discord", "1") == ["default", "ink", "other"]
    assert registry.names("discord", "2") == ["default", "other"]
    assert registry.names("telegram", "1") == ["default", "other"]
    assert registry.names("discord", "dm-77") == ["default", "other"]  # no scope: built-ins only
    ref = registry.resolve("INK ", "discord", "1")
    assert ref.custom and ref.path == folders["ink1"]
    with pytest.raises(UserError, match="Unknown style 'ink'. Available styles: default, other."):
        registry.resolve("ink", "discord", "2")
    # A built-in name always means the built-in style.
    assert not registry.resolve("default", "discord", "1").custom
    entries = {e.name: e for e in registry.entries("discord", "1")}
    assert entries["ink"].custom and entries["default"].default and not entries["ink"].default


def test_a_scope_default_applies_only_there_and_only_while_it_exists(folders):
    registry = StyleRegistry(folders["builtin"], "default")
    jobs = Jobs()
    attach(registry, jobs)
    jobs.register("discord:1", "ink", folders["ink1"])
    jobs.defaults["discord:1"] = "ink"
    jobs.defaults["discord:2"] = "other"
    assert registry.resolve(None, "discord", "1").name == "ink"
    assert registry.names("discord", "1")[0] == "ink"
    assert registry.resolve("", "discord", "2").name == "other"
    assert registry.resolve(None, "discord", "3").name == "default"
    del jobs.styles[("discord:1", "ink")]  # deleted: the bot's default again
    assert registry.resolve(None, "discord", "1").name == "default"


def test_generators_are_cached_by_path_and_hash(folders, tmp_path):
    import shutil

    registry = StyleRegistry(folders["builtin"], "default")
    jobs = Jobs()
    attach(registry, jobs)
    path = tmp_path / "styles" / "discord" / "1" / "ink"
    shutil.copytree(folders["ink1"], path)
    jobs.register("discord:1", "ink", path)
    first = registry.resolve("ink", "discord", "1")
    assert registry.loaded(first.key) is None
    gen1 = registry.generator(first)
    assert registry.loaded(first.key) is gen1 and registry.generator(first) is gen1

    # Deleted and retrained under the same name, in the same folder: other weights, another generator.
    shutil.rmtree(path)
    shutil.copytree(folders["ink2"], path)
    jobs.register("discord:1", "ink", path)
    second = registry.resolve("ink", "discord", "1")
    assert second.key != first.key and registry.loaded(second.key) is None
    gen2 = registry.generator(second)
    assert gen2 is not gen1 and gen2.weights_sha256 == second.sha256 != gen1.weights_sha256
    # A stale reference whose files changed is refused, not served with the wrong weights.
    from gan.styles import StyleError

    fresh = StyleRegistry(folders["builtin"], "default")
    attach(fresh, jobs)
    with pytest.raises(StyleError, match="changed since it was registered"):
        fresh.generator(first)


def test_drawing_in_a_custom_style_tells_the_catalogue_which_one(folders):
    registry = StyleRegistry(folders["builtin"], "default")
    jobs = Jobs()
    attach(registry, jobs)
    jobs.register("discord:1", "ink", folders["ink1"])
    ink = registry.resolve("ink", "discord", "1")
    assert ink.scope == "discord:1"
    registry.mark_used(ink)
    registry.mark_used(registry.resolve("default", "discord", "1"))  # built-in styles are never pruned
    assert jobs.used == [("discord:1", "ink")]
