"""Replies: a drawn request turned into the file, text and buttons an adapter sends.

Built in an encoder thread from a ``Plan`` and its faces (already at their final size). The file
carries its reproduction metadata (seed, style, truncation, upscaler, weights hashes), and the
``Command`` says how to ask for the same picture again. This module imports neither discord nor
telegram.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from bot.actions import Action
from bot.requests import VARIATION_STRENGTH, VARIATIONS, Plan
from gan.imaging import avatar_png, gif_bytes, grid, png_bytes
from gan.latents import MAX_SEED

UPSCALER_LABELS = {"bicubic": "bicubic", "student": "HD (fast)", "cugan": "Real-CUGAN"}


@dataclass(frozen=True)
class Command:
    """A command that reproduces a reply; each adapter writes it in its platform's syntax."""

    name: str
    args: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Reply:
    """A finished answer: one file, how to present it, and the buttons under it."""

    kind: str
    media: Literal["photo", "document", "animation"]
    filename: str
    data: bytes
    title: str
    fields: tuple[tuple[str, str], ...]
    command: Command
    hint: str = ""
    actions: tuple[Action, ...] = ()
    weights_sha256: str = ""


def _face_args(plan: Plan) -> list[tuple[str, str]]:
    args = [("name", plan.name)] if plan.name else [("seed", str(plan.seed))]
    if plan.variation:
        args.append(("variation", str(plan.variation)))
    return args


def _common_args(plan: Plan) -> list[tuple[str, str]]:
    args = [("style", plan.style)]
    style_default = plan.ref.truncation if plan.ref is not None else 1.0
    if plan.truncation != 1.0 or style_default != 1.0:  # stays exact if the style's default changes
        args.append(("truncation", f"{plan.truncation:g}"))
    return args


def _fields(plan: Plan) -> list[tuple[str, str]]:
    fields = [("Seed", str(plan.seed))]
    if plan.name:
        fields.insert(0, ("Name", plan.name))
    if plan.variation:
        fields.append(("Variation", str(plan.variation)))
    return fields + [("Style", plan.style), ("Truncation", f"{plan.truncation:g}")]


def _face_grid(images: np.ndarray, cell: int, metadata: dict) -> bytes:
    """Several faces tiled two per row (one alone) as one PNG."""
    return png_bytes(grid(images, cols=1 if len(images) == 1 else 2, cell=cell), metadata)


def build_reply(plan: Plan, images: np.ndarray, gen) -> Reply:
    """The reply to a plan, from its faces (drawn at ``plan.face_size``) and their generator."""
    meta = gen.metadata(plan.seed, plan.truncation, plan.upscaler, plan.face_size)
    sha = gen.weights_sha256
    act = dict(style=plan.style, truncation=plan.truncation)
    if plan.kind == "morph":
        args = [("from", plan.name or str(plan.seed)), ("to", plan.target_name or str(plan.target))]
        return Reply("morph", "animation", f"morph-{plan.seed}-{plan.target}.gif",
                     gif_bytes(images, plan.size), f"Seed {plan.seed} \N{RIGHTWARDS ARROW} seed {plan.target}",
                     (("From", str(plan.seed)), ("To", str(plan.target)), ("Style", plan.style),
                      ("Truncation", f"{plan.truncation:g}")),
                     Command("morph", tuple(args + _common_args(plan))), weights_sha256=sha)
    if plan.kind == "variations":
        data = _face_grid(images, plan.size // 2, {**meta, "variations": f"1-{VARIATIONS}",
                                                   "variation_strength": VARIATION_STRENGTH})
        picks = tuple(Action("f", plan.seed, variation=i + 1, label_text=str(i + 1), **act)
                      for i in range(VARIATIONS))
        return Reply("variations", "photo", f"variations-{plan.seed}.png", data,
                     f"Variations of seed {plan.seed}", tuple(_fields(plan)),
                     Command("avatar", (("seed", str(plan.seed)), ("variation", "N")) + tuple(_common_args(plan))),
                     hint=f"N = 1 to {VARIATIONS}, left to right, top to bottom; or pick one below.",
                     actions=picks + (Action("r", plan.seed, **act),), weights_sha256=sha)
    if plan.count > 1:
        seeds = [(plan.seed + i) % MAX_SEED for i in range(plan.count)]
        data = _face_grid(images, plan.size // 2, {**meta, "seeds": ",".join(map(str, seeds))})
        picks = tuple(Action("f", s, label_text=str(i + 1), **act) for i, s in enumerate(seeds))
        return Reply("grid", "photo", f"avatars-{plan.seed}.png", data,
                     f"Seeds {seeds[0]} to {seeds[-1]}", tuple(_fields(plan)) + (("Count", str(plan.count)),),
                     Command("avatar", tuple(_face_args(plan)) + (("count", str(plan.count)),)
                             + tuple(_common_args(plan))),
                     actions=picks + (Action("r", plan.seed, count=plan.count, **act),), weights_sha256=sha)
    if plan.name:
        meta["name"] = plan.name
    if plan.variation:
        meta.update(variation=plan.variation, variation_strength=VARIATION_STRENGTH)
    data = avatar_png(images[0], plan.size, meta)
    suffix = f"-v{plan.variation}" if plan.variation else ""
    title = plan.name or f"Seed {plan.seed}"
    if plan.variation:
        title += f", variation {plan.variation}"
    command = Command("avatar", tuple(_face_args(plan) + _common_args(plan)))
    if plan.kind == "upscale":
        upscaler = UPSCALER_LABELS.get(str(meta["upscaler"]), str(meta["upscaler"]))
        return Reply("upscale", "document", f"avatar-{plan.seed}{suffix}-{plan.size}px.png", data, title,
                     tuple(_fields(plan)) + (("Size", f"{plan.size} px"), ("Upscaler", upscaler)), command,
                     weights_sha256=sha)
    face = dict(variation=plan.variation, **act)
    actions = [Action("r", plan.seed, **act), Action("v", plan.seed, **face), Action("u", plan.seed, **face),
               Action("m", plan.seed, **face)]
    if plan.variation:  # variations and morphs start from a seed's own face
        actions = [a for a in actions if a.verb in "ru"]
    return Reply("avatar", "photo", f"avatar-{plan.seed}{suffix}.png", data, title, tuple(_fields(plan)),
                 command, actions=tuple(actions), weights_sha256=sha)
