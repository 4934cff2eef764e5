"""Shared fixtures: tiny real TensorFlow models and small image folders made on the fly."""

from __future__ import annotations

import asyncio
import inspect
import io
import re
import sqlite3
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

from gan.runtime import tensorflow_environment

tensorflow_environment()  # before TensorFlow is imported: the kernels the product runs with

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
INCEPTION_WEIGHTS = SHARED_DATA / "inception" / "inception_v3_fid_notop.weights.h5"
ANIME_FACES = SHARED_DATA / "anime-faces-64"


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Each test (and the CLIs it runs) caches features under its own folder, not the user's
    ~/.cache: a test neither leaves files there nor passes on a hit from an earlier run."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


def in_process_cli(capsys, main: Callable[[list[str]], int], prog: str) -> Callable[..., subprocess.CompletedProcess]:
    """``prog ARGS...`` run in this process as its console script runs it (``sys.exit(main())``): the
    same exit status and output streams, without starting TensorFlow again for each command."""
    def run(*args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
        out = capsys.readouterr()
        return subprocess.CompletedProcess([prog, *args], code, out.out, out.err)

    return run


def tiny_config(**overrides):
    """A real but tiny improved-preset config (8 channels), fast on any CPU."""
    from gan.config import GANConfig

    preset = overrides.pop("preset", "improved")
    base = dict(g_channels=8, d_channels=8, latent_dim=128)
    base.update(overrides)
    return GANConfig.preset_config(preset, **base)


def make_style(folder: Path, name: str = "default", **overrides) -> Path:
    """Write a complete style folder with freshly initialised tiny networks."""
    import keras

    from gan.networks import build_discriminator, build_generator
    from gan.styles import float32_policy, write_style

    config = tiny_config(**overrides)
    keras.utils.set_random_seed(1234)
    with float32_policy():
        generator = build_generator(config)
        discriminator = build_discriminator(config)
    return write_style(folder / name, name, config, generator, discriminator, description="test style")


def make_image_folder(folder: Path, n: int, seed: int = 0, size: int = 64) -> Path:
    """``n`` random-blob RGB JPEGs (distinct pictures, not flat)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        cy, cx, r = rng.uniform(10, size - 10, 2).tolist() + [rng.uniform(6, 20)]
        base = rng.integers(0, 255, 3)
        img = np.broadcast_to(base, (size, size, 3)).copy()
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 255, 3)
        Image.fromarray(img.astype(np.uint8)).save(folder / f"{i:04d}.jpg", quality=95)
    return folder


def zip_of(folder: Path, extra: dict[str, bytes] | None = None) -> bytes:
    """A zip (in memory) of every file in ``folder`` under ``pics/``, plus ``extra`` raw entries."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"pics/{path.name}")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


async def until(condition: Callable[[], object], what: str, timeout: float = 120.0):
    """Poll ``condition`` (a function, or a coroutine function) until it returns something true, and
    return that; fail the test after ``timeout`` seconds, a bound for a busy machine that nothing times."""
    for _ in range(int(timeout / 0.05)):
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"waited {timeout:.0f} s for {what}")


def autogroup_nice(pid: int) -> int | None:
    """The nice value of the process's session autogroup, or None where Linux schedules it without one."""
    group = Path(f"/proc/{pid}/autogroup")
    enabled = Path("/proc/sys/kernel/sched_autogroup_enabled")
    if not group.exists() or not enabled.exists() or enabled.read_text().strip() != "1":
        return None
    # "/autogroup-12 nice 19"; empty for a process in a cgroup of a container's own, which the
    # kernel schedules by that cgroup and not by an autogroup.
    found = re.fullmatch(r"/autogroup-\d+ nice (-?\d+)", group.read_text().strip())
    return int(found.group(1)) if found else None


def integrity(db: Path) -> str:
    """SQLite's own consistency check of a database file ("ok" when sound)."""
    with sqlite3.connect(db) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


@pytest.fixture(scope="session")
def tiny_style(tmp_path_factory) -> Path:
    """A weights folder holding one tiny style named ``default``; returns the weights folder."""
    root = tmp_path_factory.mktemp("weights")
    make_style(root)
    return root


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images"), 48)


@pytest.fixture(scope="session")
def coloured_style(tiny_style, tmp_path_factory) -> Path:
    """A copy of the tiny style with recorded (random) hair and eye directions; returns its weights folder."""
    import shutil

    from gan.colours import EYE_COLOURS, HAIR_COLOURS
    from gan.edits import Directions
    from training.directions import record, steering

    root = tmp_path_factory.mktemp("coloured")
    shutil.copytree(tiny_style / "default", root / "default")
    rng = np.random.default_rng(7)
    hair, eyes = (rng.standard_normal((len(c), 128)) for c in (HAIR_COLOURS, EYE_COLOURS))
    hair /= np.linalg.norm(hair, axis=1, keepdims=True)
    eyes /= np.linalg.norm(eyes, axis=1, keepdims=True)
    directions = Directions(
        colours={"hair": HAIR_COLOURS, "eyes": EYE_COLOURS}, normals={"hair": hair, "eyes": eyes},
        offsets={"hair": np.full(len(hair), -0.5), "eyes": np.full(len(eyes), -0.5)},
        targets={"hair": np.full(len(hair), 1.0), "eyes": np.full(len(eyes), 1.5)},
        steer=steering(hair, eyes))
    record(root / "default", directions, {"samples": 0}, "avatarbot-train directions (test)")
    return root
