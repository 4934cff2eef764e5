"""The few-shot fine-tuning recipe that custom styles are trained with, as one preset.

``FEW_SHOT`` is what ``training.jobs.JobSettings`` starts from (``STYLE_*`` settings override the
budget). Why each setting is what it is, and what was measured against it, is in
``docs/custom-styles.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping


@dataclass(frozen=True)
class FineTuneRecipe:
    """How a custom style is fine-tuned from the default style."""

    steps: int  # the default budget, in steps of ``batch_size`` pictures
    batch_size: int  # pictures a step
    max_steps: int  # the most an admin may ask for
    min_steps: int  # the least: below it a style is made in seconds and looks like the default one
    model_overrides: Mapping[str, Any]  # on top of the default style's config (gan.config.GANConfig)
    flat_colour_overrides: Mapping[str, Any]  # added for pictures drawn in a few flat colours
    lr_warmup_steps: int  # the learning rates ramp up over these first steps (at most a fifth of a budget)
    lr_decay: bool  # then fall linearly to zero at the end of the budget


FEW_SHOT = FineTuneRecipe(
    steps=1200,
    batch_size=16,
    max_steps=5000,
    min_steps=200,
    # The default style frozen (g_frozen_layers) under a style head (g_head); DiffAugment, a faster
    # generator EMA, the job's own learning rates and a lazy R1 penalty on the discriminator.
    model_overrides=MappingProxyType({
        "diffaugment": "color,translation,cutout", "ema_decay": 0.99, "d_frozen_layers": 0,
        "g_frozen_layers": 5, "g_head": 32, "g_anchor": 0.0, "g_lr": 1e-4, "d_lr": 5e-4, "d_r1": 0.05,
        "d_r1_every": 4}),
    # A palette head of 8 colours and a colour-histogram loss.
    flat_colour_overrides=MappingProxyType({"g_palette": 8, "g_hist": 5.0}),
    lr_warmup_steps=300,
    lr_decay=True,
)
