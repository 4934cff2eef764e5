"""Upscalers: 64-px faces to HD, by bicubic interpolation, the distilled student or Real-CUGAN.

An upscaler folder (``weights/upscalers/<name>/``) holds ``upscaler.weights.h5`` (weights only) and
``upscaler.json``: its kind (``realcugan`` or ``student``), scale, the network's shape and the sha256
of the weights. As with styles, the network is built in code and only weights are loaded into it; a
file whose hash or shape does not match is refused with one clear line. The folders have no
``style.json``, so the style listing never takes them for styles.

Users choose among three upscalers by name (``UPSCALERS``):

- ``bicubic``: OpenCV's bicubic interpolation; instant and soft.
- ``student``: the small network distilled from Real-CUGAN (``gan.student``); crisp, a few ms a face.
- ``cugan``: Real-CUGAN itself (``gan.cugan``), 4x, then 2x for sizes above 256 px; the sharpest,
  about 70 ms a face on two CPU cores. The student learnt from the same 4x network, so an Upscale
  shows the same face as the avatar, larger and crisper.

Networks run on fixed batch shapes (``gan.batching``), so a face upscales to the same bytes alone, in
a grid or in a micro-batch of other users' requests. Sizes between the network's scales are reached
by area-averaging the next larger output down (and bicubic interpolation up, past the last stage).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gan.styles import StyleError, precision_policy, sha256_file

log = logging.getLogger(__name__)

UPSCALER_FILE = "upscaler.json"
WEIGHTS_FILE = "upscaler.weights.h5"
UPSCALERS = ("bicubic", "student", "cugan")
DEFAULT_UPSCALER = "student"
# The folders each user-facing name resolves to, in order of the stages they run.
DEFAULT_FOLDERS = {"student": ("student-4x",), "cugan": ("realcugan-4x-no-denoise", "realcugan-2x-no-denoise")}
NETWORK_CHUNKS = {"student": (1, 4, 16, 64), "realcugan": (1, 4)}
_PROBE_SEED = 20261204
_FOLDER_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")  # (fullmatch) a folder under the upscalers root, no paths


class UpscalerError(StyleError):
    """An upscaler folder that cannot be used (missing, corrupt, wrong shape), with the reason."""


def check_upscaler(name: str) -> str:
    """Return ``name`` if it names an upscaler, else raise ``ValueError`` listing the choices."""
    if name not in UPSCALERS:
        raise ValueError(f"unknown upscaler {name!r}: choose one of {', '.join(UPSCALERS)}")
    return name


@dataclass(frozen=True)
class UpscalerInfo:
    """A verified upscaler folder's description (``upscaler.json``)."""

    folder: Path
    name: str
    kind: str
    scale: int
    weights_sha256: str
    meta: dict[str, Any]


def read_upscaler(folder: str | os.PathLike, verify_hash: bool = True) -> UpscalerInfo:
    """Read and check ``upscaler.json`` and the hash of the weights it describes."""
    folder = Path(folder)
    path = folder / UPSCALER_FILE
    try:
        meta = json.loads(path.read_text())
        kind, scale, sha = str(meta["kind"]), int(meta["scale"]), str(meta["weights_sha256"])
    except FileNotFoundError:
        raise UpscalerError(f"{folder} is not an upscaler folder (no {UPSCALER_FILE})") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise UpscalerError(f"{path} is not a valid upscaler description ({exc})") from None
    if kind not in ("realcugan", "student"):
        raise UpscalerError(f"{path}: unknown upscaler kind {kind!r}")
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise UpscalerError(f"{weights} is missing")
    if verify_hash and sha256_file(weights) != sha:
        raise UpscalerError(f"{weights} does not match the sha256 in {UPSCALER_FILE} (corrupt or modified file)")
    return UpscalerInfo(folder, str(meta.get("name", folder.name)), kind, scale, sha, meta)


def write_upscaler(folder: str | os.PathLike, model, kind: str, scale: int, **meta: Any) -> dict:
    """Save ``model``'s weights and the ``upscaler.json`` describing them (``meta`` adds its own
    fields) into ``folder``, named after it; returns the description."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_weights(folder / WEIGHTS_FILE)
    meta = {"format": 1, "kind": kind, "name": folder.name, "scale": scale, **meta,
            "weights_sha256": sha256_file(folder / WEIGHTS_FILE)}
    (folder / UPSCALER_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def build_network(info: UpscalerInfo):
    """The Keras network an upscaler folder describes, without weights."""
    if info.kind == "realcugan":
        from gan.cugan import build_upcunet

        return build_upcunet(info.scale)
    from gan.student import StudentConfig, build_student

    try:
        config = StudentConfig.from_dict({**info.meta.get("config", {}), "scale": info.scale})
    except (ValueError, TypeError) as exc:
        raise UpscalerError(f"{info.folder}: {exc}") from None
    return build_student(config)


def load_network(folder: str | os.PathLike, precision: str = "float32"):
    """Build and load a verified upscaler network: ``(model, info)``. ``precision`` is the Keras
    dtype policy it computes in (``mixed_bfloat16``: bfloat16 inside, float32 weights and output)."""
    info = read_upscaler(folder)
    with precision_policy(precision):
        model = build_network(info)
    try:
        model.load_weights(info.folder / WEIGHTS_FILE)
    except (ValueError, OSError, KeyError) as exc:
        raise UpscalerError(f"{info.folder / WEIGHTS_FILE} does not fit the {info.kind} network "
                            f"({type(exc).__name__}: {str(exc)[:200]})") from None
    return model, info


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """(N, h, w, 3) uint8 -> (N, size, size, 3): bicubic up, area-averaged down."""
    from gan.imaging import upscale

    images = np.asarray(images, np.uint8)
    if images.shape[1:3] == (size, size):
        return images
    return np.stack([upscale(image, size) for image in images]) if len(images) else \
        np.zeros((0, size, size, 3), np.uint8)


class Upscaler:
    """uint8 faces -> uint8 faces of a given size. ``name`` is what users and metadata call it."""

    name = "bicubic"
    precision = "float32"  # the dtype policy its networks compute in

    def weights_for(self, size: int) -> str:
        """``folder@sha256-prefix`` of each network that draws a face of ``size`` px ("" for none)."""
        del size
        return ""

    def upscale(self, images: np.ndarray, size: int) -> np.ndarray:
        """(N, h, w, 3) uint8 -> (N, size, size, 3) uint8."""
        return resize(images, size)

    def prepare(self, size: int) -> None:
        """Load and warm up every network a face of ``size`` px runs through, so that the first
        request of that size does not wait for them (nothing to do for interpolation)."""
        del size


def uint8_network(model):
    """``model`` as uint8 faces in, uint8 faces out, rounding as ``gan.cugan.to_uint8`` does: the
    conversions run inside the compiled graph, a fifth of the student's time when done in NumPy."""
    from keras import ops

    def run(x, training: bool = False):
        y = ops.cast(model(ops.cast(x, "float32") / 255.0, training=training), "float32")
        return ops.cast(ops.clip(ops.floor(y * 255.0 + 0.5), 0.0, 255.0), "uint8")
    return run


def student_precision() -> str:
    """The dtype policy the student runs in here: bfloat16 where the hardware has it (a GPU, or a
    CPU with AMX or AVX512-BF16: 1.75x faster on 2 AMD EPYC cores, and within 4 levels of float32,
    53 dB, on 64 default faces), else float32 (emulated bfloat16 is several times slower)."""
    from gan.runtime import bf16_is_fast

    return "mixed_bfloat16" if bf16_is_fast() else "float32"


class NetworkUpscaler(Upscaler):
    """One or more networks in a row (e.g. Real-CUGAN 4x, then 2x for 512 px), each on fixed shapes.

    The student computes in ``student_precision()``; Real-CUGAN always in float32 (it is the
    reference the student and the tests are measured against)."""

    def __init__(self, name: str, folders: list[Path], input_size: int = 64,
                 student_precision: str = "float32") -> None:
        self.name = name
        self._stages = []  # (scale, runner of its input size), loaded lazily after the first
        self._folders = list(folders)
        self._input_size = input_size
        self._student_precision = student_precision
        self._lock = threading.Lock()
        self.infos = [read_upscaler(f) for f in self._folders]
        self.precision = student_precision if any(i.kind == "student" for i in self.infos) else "float32"
        self._stage(0)  # the first stage is always needed: load and warm it up now

    def _stage(self, index: int):
        from gan.batching import FixedBatchRunner

        with self._lock:
            while len(self._stages) <= index:
                i = len(self._stages)
                info = self.infos[i]
                model, info = load_network(self._folders[i],
                                           self._student_precision if info.kind == "student" else "float32")
                size = self._input_size * int(np.prod([s for s, _ in self._stages] or [1]))
                probe = np.random.default_rng(_PROBE_SEED).integers(0, 256, (4, size, size, 3), np.uint8)
                # Past the first stage the inputs are large (a 2x stage on 256 px needs about 1 GB a
                # face at batch 4), so they run one face at a time.
                chunks = NETWORK_CHUNKS[info.kind] if i == 0 else (1,)
                runner = FixedBatchRunner(uint8_network(model), (size, size, 3), chunks, probe[:max(chunks)],
                                          what=f"upscaler {info.name}", dtype="uint8")
                log.info("loaded upscaler %s (%s, %s), batch shapes %s", info.name, info.weights_sha256[:12],
                         model.dtype_policy.name, runner.chunks)
                self._stages.append((info.scale, runner))
            return self._stages[index]

    def stages_for(self, size: int) -> int:
        """How many stages a face of ``size`` px runs through (each until the output reaches it)."""
        count, current = 0, self._input_size
        for info in self.infos:
            if current >= size:
                break
            current *= info.scale
            count += 1
        return count

    def weights_for(self, size: int) -> str:
        return "+".join(f"{i.name}@{i.weights_sha256[:12]}" for i in self.infos[:self.stages_for(size)])

    def prepare(self, size: int) -> None:
        # Loading a stage runs each of its graphs once on the probe: that is the warm-up.
        for index in range(self.stages_for(size)):
            self._stage(index)

    def upscale(self, images: np.ndarray, size: int) -> np.ndarray:
        images = np.asarray(images, np.uint8)
        if images.shape[1:] != (self._input_size, self._input_size, 3):
            raise ValueError(f"upscaler {self.name} takes {self._input_size}-px faces, not {images.shape[1:]}")
        out = images
        for index in range(self.stages_for(size)):
            _, runner = self._stage(index)
            out = runner(out)
        return resize(out, size)


class UpscalerLibrary:
    """The upscalers under one folder (``weights/upscalers``), loaded once and shared by every style.

    ``student_precision`` is the student's dtype policy; None picks ``student_precision()``."""

    def __init__(self, root: str | os.PathLike, input_size: int = 64, student_precision: str | None = None) -> None:
        self.root = Path(root)
        self.input_size = input_size
        self.student_precision = student_precision
        self._loaded: dict[tuple[str, ...], Upscaler] = {}
        self._lock = threading.Lock()

    def folders(self, name: str, style_meta: dict | None = None) -> tuple[str, ...]:
        """The folders behind ``name`` for a style (its ``style.json`` may name its own student)."""
        check_upscaler(name)
        if name == "bicubic":
            return ()
        own = (style_meta or {}).get("upscalers", {}).get(name)
        if not own:
            return DEFAULT_FOLDERS[name]
        if not isinstance(own, list) or not all(isinstance(f, str) and _FOLDER_NAME.fullmatch(f) for f in own):
            raise UpscalerError(f"style.json names bad {name} upscaler folders {own!r} (plain folder names only)")
        return tuple(own)

    def get(self, name: str, style_meta: dict | None = None) -> Upscaler:
        """The upscaler ``name`` (one of ``UPSCALERS``), loading it on first use (raises ``UpscalerError``)."""
        folders = self.folders(name, style_meta)
        if not folders:
            return Upscaler()
        with self._lock:
            found = self._loaded.get(folders)
            if found is None:
                if self.student_precision is None:
                    self.student_precision = student_precision()
                found = NetworkUpscaler(name, [self.root / f for f in folders], self.input_size,
                                        self.student_precision)
                self._loaded[folders] = found
        return found


def default_root() -> Path:
    """The upscalers shipped with the code (``weights/upscalers`` next to the packages)."""
    return Path(__file__).resolve().parent.parent / "weights" / "upscalers"


def upscalers_dir(weights_dir: str | os.PathLike) -> Path:
    """``<weights_dir>/upscalers`` when that folder exists, else the shipped upscalers."""
    local = Path(weights_dir) / "upscalers"
    return local if local.is_dir() else default_root()
