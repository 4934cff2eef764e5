"""``avatarbot-train truncation``: choose a style's default truncation by measurement.

Truncation scales the latent towards the mean face: lower values give more typical, cleaner faces
(higher precision) and less variety (lower recall). The study measures FID, KID and k-NN precision
and recall (``gan.metrics``) at each truncation on the same real features, draws the same seeds at
each one, and picks the default: the truncation with the lowest FID among those whose precision is
at least the precision at 1.0 (so the bot's default never draws fewer plausible faces than the
untruncated generator). ``--write`` records the choice and the table in ``style.json``, where the
bot and the CLI read it, and the model card shows them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from gan.styles import record_in_style

log = logging.getLogger(__name__)

GRID_SEEDS = list(range(8))


def choose_truncation(results: list[dict]) -> float:
    """The lowest-FID truncation whose precision is at least that at the highest truncation studied."""
    if not results:
        raise ValueError("no truncation measured")
    top = max(results, key=lambda r: r["truncation"])
    allowed = [r for r in results if r["precision"] >= top["precision"]]
    return float(min(allowed, key=lambda r: (r["fid"], -r["truncation"]))["truncation"])


def study(style: str | os.PathLike, real: str | os.PathLike, truncations: list[float], n_fake: int = 10_000,
          n_real: int = 10_000, inception_weights: str | None = None, batch_size: int = 100,
          progress: bool = False) -> list[dict]:
    """FID, KID, precision and recall of a style folder's faces at each truncation (seeds 0..n_fake-1)."""
    from gan.inference import AvatarGenerator
    from gan.latents import check_truncation
    from gan.metrics import InceptionFeatures, feature_scores, folder_features

    truncations = [check_truncation(t) for t in truncations]
    if not Path(real).is_dir():
        raise FileNotFoundError(f"real image folder not found: {real}")
    gen = AvatarGenerator.load(style)
    extractor = InceptionFeatures(inception_weights, batch_size, progress=progress)
    real_feats = folder_features(real, n_real, extractor)
    results = []
    for psi in truncations:
        images = gen.generate(list(range(n_fake)), psi)
        scores = feature_scores(extractor(images, desc=f"truncation {psi:g}"), real_feats)
        results.append({"truncation": psi, **scores})
        log.info("truncation %g: %s", psi, scores)
    return results


def study_grid(style: str | os.PathLike, truncations: list[float], seeds: list[int] = GRID_SEEDS,
               cell: int = 128):
    """One row per truncation (top: the first), the same seeds in each column, as a PIL image."""
    from gan.imaging import grid
    from gan.inference import AvatarGenerator

    gen = AvatarGenerator.load(style)
    rows = [gen.generate(seeds, psi, size=cell) for psi in truncations]
    return grid(np.concatenate(rows), cols=len(seeds), cell=cell)


def record(style: str | os.PathLike, results: list[dict], chosen: float, real: str, command: str) -> Path:
    """Write the chosen default and the study into the style's ``style.json`` (weights untouched), and
    redraw its model card (the card's notes kept)."""
    record_in_style(style, truncation=chosen, truncation_study={
        "results": results, "real": str(real), "command": command,
        "rule": "lowest FID among truncations with precision >= precision at 1.0"})
    return Path(style) / "style.json"
