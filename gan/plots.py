"""Loss curves of a run, drawn from its ``history.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: always render to a file
import matplotlib.pyplot as plt  # noqa: E402


def plot_history(history: Path, out: Path) -> Path | None:
    """Plot discriminator and generator losses (and D's scores) against images seen."""
    if not history.exists():
        return None
    rows = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
    if not rows:
        return None
    x = [r["images"] / 1000 for r in rows]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for key in ("d_loss", "g_loss"):
        ax1.plot(x, [r.get(key, float("nan")) for r in rows], label=key, linewidth=0.8)
    ax1.set_ylabel("loss")
    ax1.legend()
    for key in ("d_real", "d_fake"):
        ax2.plot(x, [r.get(key, float("nan")) for r in rows], label=key, linewidth=0.8)
    ax2.set_ylabel("mean sigmoid(D)")
    ax2.set_xlabel("images seen (thousands)")
    ax2.legend()
    fig.tight_layout()
    tmp = out.with_name(out.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out)
    return out
