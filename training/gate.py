"""The quality gate of a custom style: is the new style closer to the admin's pictures than the default?

After a job exports its style, the worker measures the KID (``gan.metrics.kid``, on Inception-v3
pool features of uint8 faces) of the new style's faces against the uploaded pictures, and of the
baseline's faces (the default style, or ``GateSpec.baseline``) against the same pictures. The
ratio KID(baseline) / KID(style) says how many times closer the style came; under 1 it came out
worse, and the job manager registers it as pending until an admin publishes it.

The figures go into the style's ``style.json`` under ``"gate"``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# KIDs at or below this are noise around zero (the unbiased estimate can go negative): both figures
# are floored to it, so the ratio stays finite and a style as close as its pictures reads as such.
KID_FLOOR = 1e-5


@dataclass(frozen=True)
class GateSpec:
    """How the worker measures a new style (part of the job's ``JobSpec``)."""

    inception_weights: str | None = None  # a no-top .h5 file; None: Keras' ImageNet weights (downloaded)
    samples: int = 150  # faces drawn from each style
    real_samples: int = 150  # uploaded pictures compared against (at most)
    baseline: str | None = None  # a style folder or a folder of pictures; None: the job's init_from
    batch_size: int = 50

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "GateSpec | None":
        """A spec from its JSON object, or None when the gate is off."""
        return None if data is None else cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON."""
        return asdict(self)


def ratio_of(kid_baseline: float, kid_style: float) -> float:
    """How many times closer the style is to the pictures than the baseline (both KIDs floored)."""
    return max(kid_baseline, KID_FLOOR) / max(kid_style, KID_FLOOR)


def measure(style_dir: str | Path, baseline: str | Path, pictures: str | Path, spec: GateSpec) -> dict[str, Any]:
    """KID of ``style_dir``'s faces and of ``baseline``'s (a style or a folder of pictures) against
    ``pictures``; returns the figures written into ``style.json``."""
    from gan.metrics import InceptionFeatures, folder_features, kid, style_features

    started = time.monotonic()
    extractor = InceptionFeatures(spec.inception_weights, spec.batch_size)
    real = folder_features(pictures, spec.real_samples, extractor, cache=False)
    style = style_features(style_dir, spec.samples, extractor, cache=False)
    # The baseline is the same for every job: its features are measured once and cached.
    if (Path(baseline) / "style.json").is_file():
        base = style_features(baseline, spec.samples, extractor)
    else:
        base = folder_features(baseline, spec.samples, extractor)
    subset = min(len(real), spec.samples)
    kid_style, _ = kid(style, real, subsets=50, subset_size=subset)
    kid_base, _ = kid(base, real, subsets=50, subset_size=subset)
    figures = {"kid_style": round(kid_style, 5), "kid_default": round(kid_base, 5),
               "ratio": round(ratio_of(kid_base, kid_style), 2), "samples": spec.samples,
               "real_samples": len(real), "inception": extractor.weights_id,
               "seconds": round(time.monotonic() - started, 1)}
    log.info("quality gate: %s", figures)
    return figures


def record(style_dir: str | Path, figures: dict[str, Any]) -> None:
    """Write the gate's figures into the style's ``style.json`` (its weights hashes are unchanged)."""
    from gan.styles import update_style_json

    update_style_json(style_dir, gate=figures)


def read_figures(style_dir: str | Path) -> dict[str, Any] | None:
    """The gate's figures in a style's ``style.json`` (``{"error": ...}`` when it could not measure),
    or None when the gate did not run."""
    try:
        figures = json.loads((Path(style_dir) / "style.json").read_text()).get("gate")
    except (OSError, ValueError, AttributeError):
        return None
    return figures if isinstance(figures, dict) else None


def passed(figures: dict[str, Any] | None) -> bool:
    """Whether a style may be published at once: no gate ran, or it came out at least as close to the
    pictures as the default (a gate that could not measure holds the style back too)."""
    if figures is None:
        return True
    ratio = figures.get("ratio")
    return isinstance(ratio, (int, float)) and ratio >= 1.0
