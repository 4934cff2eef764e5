"""Model configuration: one JSON-serialisable dataclass describes a whole GAN.

A style folder stores this config in ``style.json``; the networks are always rebuilt in code
from it, and only weights are loaded from disk (see ``gan.styles``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

PRESETS = ("seed", "improved")
LOSSES = ("bce", "hinge")
# DiffAugment transforms (gan.augment, and gan.jax_trainer under JAX): "color" is brightness,
# saturation and contrast.
DIFFAUGMENT_POLICIES = ("color", "translation", "cutout")


def parse_policy(policy: str) -> list[str]:
    """Split and check a comma-separated DiffAugment policy such as ``"color,translation"``."""
    names = [p.strip() for p in policy.split(",") if p.strip()]
    for name in names:
        if name not in DIFFAUGMENT_POLICIES:
            raise ValueError(f"unknown DiffAugment policy {name!r}; choose from {', '.join(DIFFAUGMENT_POLICIES)}")
    return names


@dataclass(frozen=True)
class GANConfig:
    """Architecture and optimisation settings of one GAN.

    ``preset`` picks the network family: ``seed`` is the seed article's DCGAN (5x5 kernels, dropout
    discriminator, Adam 1e-4); ``improved`` is a Radford-style DCGAN (4x4 kernels, BatchNorm in both
    networks, Adam 2e-4 with beta1 0.5) with a weight EMA of the generator.
    """

    preset: str = "improved"
    latent_dim: int = 128
    image_size: int = 64
    g_channels: int = 64  # width of the last generator stage; earlier stages double it
    d_channels: int = 64  # width of the first discriminator stage; later stages double it
    loss: str = "bce"
    d_norm: str = "batch"  # improved preset: "batch" (Radford) or "spectral" (SNGAN-style D)
    g_lr: float = 2e-4
    d_lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    ema_decay: float = 0.999  # 0 turns the generator EMA off
    diffaugment: str = ""  # comma-separated DiffAugment policy, e.g. "color,translation,cutout"
    d_frozen_layers: int = 0  # freeze the first N discriminator conv blocks (few-shot fine-tuning)
    # Freeze the first N generator blocks: the Dense layer, then each upsampling stage; 5 freezes the
    # whole base generator (with a style head, only the head trains).
    g_frozen_layers: int = 0
    # Width of a style head: small convolutions after the generator's output that restyle its faces
    # (see gan.networks._image). 0: none. A custom style trains one on a frozen default style.
    g_head: int = 0
    # Colours of the style head's palette (see gan.networks.Palette): each pixel becomes a soft
    # choice among this many flat colours fitted to the training pictures. 0: none (a continuous
    # image). Needs g_head.
    g_palette: int = 0
    # Few-shot fine-tuning: weight of an L1 penalty that keeps the generator's coarse luminance (16x16)
    # for each latent close to the starting generator's, so a face keeps its layout while its look
    # changes. 0 turns it off.
    g_anchor: float = 0.0
    # Compare the coarse luminance maps after taking out each one's mean and contrast.
    g_anchor_standardize: bool = False
    # Weight of the R1 penalty (Mescheder et al. 2018): gamma/2 times the squared gradient of D's
    # logit with respect to the real images, which keeps a discriminator fed a small set from
    # carving sharp ridges around each picture. 0 turns it off.
    d_r1: float = 0.0
    # Lazy R1: the penalty on every N-th step only, at N times the weight (StyleGAN2's lazy
    # regularisation), which spares most of its cost. 1: on every step.
    d_r1_every: int = 1
    # Few-shot fine-tuning: weight of a loss that matches the colour histogram of each generated batch
    # to that of the real batch (gan.losses.colour_histogram_distance), so a style's tones come out
    # in the pictures' proportions. 0 turns it off.
    g_hist: float = 0.0
    # False: the discriminator's BatchNorm layers use their moving statistics while training, so D
    # judges each image on its own instead of telling a real batch from a fake one by its statistics.
    # An option for few-shot fine-tuning: on benchmarks/style.py's manga set it removed the tiled
    # artefacts of the first few hundred steps but did not lower KID, so the bot does not use it.
    d_batch_stats: bool = True

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.d_norm not in ("batch", "spectral"):
            raise ValueError("d_norm must be 'batch' or 'spectral'")
        if self.image_size != 64:
            raise ValueError("only 64x64 images are supported")
        if self.g_anchor < 0 or self.d_r1 < 0 or self.g_hist < 0:
            raise ValueError("g_anchor, d_r1 and g_hist must be at least 0")
        if self.d_r1_every < 1:
            raise ValueError("d_r1_every must be at least 1")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError("ema_decay must be in [0, 1)")
        if not 0 <= self.d_frozen_layers <= 4:
            raise ValueError("d_frozen_layers must be in 0..4")
        if not 0 <= self.g_frozen_layers <= 5:
            raise ValueError("g_frozen_layers must be in 0..5")
        if self.g_head < 0:
            raise ValueError("g_head must be at least 0")
        if self.g_palette < 0 or (self.g_palette and not self.g_head):
            raise ValueError("g_palette must be at least 0, and needs a style head (g_head)")
        if self.latent_dim < 1 or self.g_channels < 1 or self.d_channels < 1:
            raise ValueError("latent_dim and channel counts must be positive")

    @classmethod
    def preset_config(cls, name: str, **overrides: Any) -> "GANConfig":
        """The named preset's config, with optional field overrides."""
        if name == "seed":
            base = dict(preset="seed", latent_dim=100, g_channels=32, d_channels=64, loss="bce",
                        g_lr=1e-4, d_lr=1e-4, beta1=0.9, beta2=0.999, ema_decay=0.0)
        elif name == "improved":
            base = dict(preset="improved")
        else:
            raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        base.update(overrides)
        return cls.from_dict(base)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GANConfig":
        """Build from a dict, refusing unknown keys so a typo cannot pass silently."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
        return cls(**data)


@dataclass
class TrainOptions:
    """Options of one training run; saved as ``options.json`` in the run directory."""

    FILE: ClassVar[str] = "options.json"  # its name in a run directory (see gan.rundir)

    data: str = ""
    model: GANConfig = field(default_factory=GANConfig)
    batch_size: int = 64
    steps: int = 10_000
    steps_per_epoch: int = 500
    checkpoint_every: int = 500
    # Checkpoints of every N-th step are kept (besides the newest three), for `evaluate --step` and
    # comparisons of recipes at equal images seen. 0: every 10 epochs (``steps_per_epoch`` * 10).
    keep_every: int = 0
    crop_margin: int = 4  # images are loaded at size+margin and randomly cropped back
    mixed_precision: bool = False  # bfloat16 compute (fast on CPUs with AMX)
    strategy: str = "default"  # default | mirrored | multiworker
    seed: int = 0
    init_from: str = ""  # style folder or run directory to start from (fine-tuning)
    sample_seeds: list[int] = field(default_factory=lambda: list(range(16)))
    max_images: int = 0  # 0 = every image in the folder
    # None: constant learning rates. N: from step N both learning rates fall linearly to zero at
    # ``steps`` (a last phase that settles the weights; a function of the step, so resuming keeps it).
    lr_decay_start: int | None = None
    # Ramp both learning rates up from zero over the first N steps. A run started from trained
    # weights gets fresh Adam moments, whose first updates are as large as the learning rate in every
    # weight at once; a warm-up lets the moments settle first.
    lr_warmup_steps: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> "TrainOptions":
        """The options saved in a run directory (``options.json``)."""
        saved = Path(run_dir) / cls.FILE
        if not saved.exists():
            raise FileNotFoundError(f"{saved} not found: give options to start a new run")
        return cls.from_dict(json.loads(saved.read_text()))

    def save(self, run_dir: str | os.PathLike) -> None:
        """Write ``options.json`` into ``run_dir`` (whole or not at all: a temporary file, renamed)."""
        tmp = Path(run_dir) / "options.tmp"
        tmp.write_text(self.to_json())
        os.replace(tmp, Path(run_dir) / self.FILE)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainOptions":
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown option keys: {', '.join(sorted(unknown))}")
        data["model"] = GANConfig.from_dict(data.get("model", {}))
        return cls(**data)


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``["KEY=VALUE", ...]`` (command-line ``--set``) -> a dict of config overrides; each value is
    read as JSON when it parses (numbers, booleans) and as a plain string otherwise."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out
