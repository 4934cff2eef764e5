"""``MODEL_CARD.md`` for a style folder: drawn from its ``style.json``, followed by notes written by hand.

The two parts are split by ``NOTES_MARKER``, so the drawn part can be redrawn whenever ``style.json``
changes (new metrics, a truncation study) while the notes (data provenance, how it was trained, what
was measured beside it) stay as they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

NOTES_MARKER = ("<!-- Above: drawn from style.json by gan/model_card.py (avatarbot-train card STYLE redraws it). "
                "Below: notes written by hand, kept when it is redrawn. -->")


def _recalibration(cfg: dict) -> str:
    """What an export did to the EMA generator's BatchNorm statistics (``recalibrate_batchnorm``)."""
    if not cfg.get("ema_decay"):
        return ""
    frozen = cfg.get("g_frozen_layers", 0)
    outside = f" outside the {frozen} frozen blocks" if frozen else ""
    return f" (BatchNorm statistics recalibrated at export{outside})"


def _fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "n/a" if value in (None, "") else str(value)


def comparison_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of preset-against-preset results (one dict per run)."""
    lines = ["| preset | images seen | wall time | FID | KID (x1000) |", "| --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        wall = r.get("wall_time_s")
        lines.append(f"| {r.get('preset')} | {_fmt(r.get('images_seen'))} | "
                     f"{_fmt(wall / 60, 1) + ' min' if wall else 'n/a'} | {_fmt(r.get('fid'), 1)} | "
                     f"{_fmt(r['kid'] * 1000, 1) if isinstance(r.get('kid'), float) else 'n/a'} |")
    return "\n".join(lines)


def truncation_table(results: list[dict], chosen: float | None = None) -> str:
    """The study as a markdown table, the chosen truncation in bold."""
    lines = ["| truncation | FID | KID (x1000) | precision | recall |", "| ---: | ---: | ---: | ---: | ---: |"]
    for r in sorted(results, key=lambda r: -r["truncation"]):
        t = f"{r['truncation']:g}"
        lines.append(f"| {f'**{t}**' if chosen is not None and r['truncation'] == chosen else t} | "
                     f"{r['fid']:.1f} | {r['kid'] * 1000:.1f} | {r['precision']:.3f} | {r['recall']:.3f} |")
    return "\n".join(lines)


def truncation_section(meta: dict[str, Any], grid_image: str = "truncation.png") -> list[str]:
    """The truncation study recorded in ``meta`` (``avatarbot-train truncation --write``) as card lines."""
    found = meta.get("truncation_study")
    if not found:
        return []
    chosen = meta.get("truncation", 1.0)
    first = found["results"][0]
    return ["", "### Truncation", "",
            f"Faces are drawn at truncation **{chosen:g}** when the user gives none. Rule: "
            f"{found['rule']}. {first['num_fake']:,} generated (seeds 0-{first['num_fake'] - 1}) against "
            f"{first['num_real']:,} real images from `{found['real']}`; k-NN precision and recall "
            "(Kynkaanniemi et al. 2019, k=3) on the same Inception features as FID; measured by "
            f"`{found['command']}`.", "", truncation_table(found["results"], chosen), "",
            f"![the same seeds at each truncation]({grid_image})", "",
            "Rows from top: truncation " + ", ".join(f"{r['truncation']:g}" for r in sorted(
                found["results"], key=lambda r: -r["truncation"])) + "; columns: seeds 0-7.",
            *_truncation_reading(found["results"], chosen, meta.get("metrics", {}))]


def _truncation_reading(results: list[dict], chosen: float, metrics: dict[str, Any]) -> list[str]:
    """What the study's table says, in words: the trend from the highest truncation to the lowest, and
    how its FID (over fewer generated images) relates to the headline figure."""
    rows = sorted(results, key=lambda r: -r["truncation"])
    if len(rows) < 2:
        return []
    top, low = rows[0], rows[-1]

    def change(key: str, digits: int) -> str:
        return f"{key} {top[key]:.{digits}f} to {low[key]:.{digits}f}"

    text = (f"From truncation {top['truncation']:g} to {low['truncation']:g}: {change('precision', 3)}, "
            f"{change('recall', 3)}, FID {top['fid']:.1f} to {low['fid']:.1f}; the rule keeps {chosen:g}.")
    same = next((r for r in rows if r["truncation"] == metrics.get("truncation")), None)
    if same is not None and metrics.get("fid") is not None and metrics.get("num_fake") != same["num_fake"]:
        text += (f" FID here is over {same['num_fake']:,} generated images, so it reads higher than over "
                 f"{metrics['num_fake']:,} for the same generator ({same['fid']:.1f} against "
                 f"{metrics['fid']:.1f} at truncation {same['truncation']:g}): compare the rows with each "
                 "other, not with the figure above.")
    return ["", text]


def render_model_card(meta: dict[str, Any], notes: str = "", sample_image: str | None = "samples.png") -> str:
    """The model card text for a style described by ``meta`` (the parsed ``style.json``; its
    ``comparison`` rows, when present, become the presets table), then ``notes``."""
    cfg, tr, m = meta.get("config", {}), meta.get("training", {}), meta.get("metrics", {})
    wall = tr.get("wall_time_s")
    parts = [f"# Style `{meta.get('name')}`", ""]
    if meta.get("description"):
        parts += [meta["description"], ""]
    if sample_image:
        parts += [f"![sample grid]({sample_image})", "",
                  "Seeds 0-15 at truncation 1.0 (`avatarbot grid --seeds 0-15 --style "
                  f"{meta.get('name')}`).", ""]
    r1 = f"; R1 penalty on the discriminator, weight {cfg['d_r1']}" if cfg.get("d_r1") else ""
    if r1 and cfg.get("d_r1_every", 1) > 1:
        r1 += f" (lazy: every {cfg['d_r1_every']} steps at {cfg['d_r1_every']} times the weight)"
    parts += [
        "## Model",
        "",
        f"- Preset `{cfg.get('preset')}`: latent size {cfg.get('latent_dim')}, {cfg.get('image_size')}x"
        f"{cfg.get('image_size')} RGB output, generator width {cfg.get('g_channels')}, discriminator "
        f"width {cfg.get('d_channels')} ({cfg.get('d_norm', 'batch')} norm).",
        f"- Loss `{cfg.get('loss')}`; Adam, learning rates G {cfg.get('g_lr')} / D {cfg.get('d_lr')}, betas "
        f"({cfg.get('beta1')}, {cfg.get('beta2')}); generator EMA decay {cfg.get('ema_decay')}"
        f"{_recalibration(cfg)}; "
        f"DiffAugment `{cfg.get('diffaugment') or 'off'}`{r1}.",
        f"- Weights: `generator.weights.h5`, sha256 `{meta['weights']['generator.weights.h5']['sha256']}`.",
        "",
        "## Training",
        "",
        f"- Data: `{tr.get('data')}`.",
        f"- Steps {_fmt(tr.get('steps'))} at batch {tr.get('batch_size')}: {_fmt(tr.get('images_seen'))} "
        f"images seen; bfloat16 mixed precision: {tr.get('mixed_precision')}.",
        f"- Wall time {_fmt(wall / 3600, 2) + ' h' if wall else 'n/a'} on {tr.get('hardware', 'n/a')}.",
    ]
    if tr.get("init_from"):
        parts.append(f"- Fine-tuned from `{tr['init_from']}`.")
    parts += ["", "## Quality", ""]
    if m.get("fid") is not None:
        parts += [
            f"- FID **{_fmt(m.get('fid'), 1)}**, KID {_fmt(m.get('kid'), 4)} +- {_fmt(m.get('kid_std'), 4)}: "
            f"{_fmt(m.get('num_fake'))} generated against {_fmt(m.get('num_real'))} real images from "
            f"`{m.get('real')}`, Inception-v3 pool features (`{m.get('inception')}`), truncation "
            f"{m.get('truncation')}; measured by `avatarbot-train evaluate`.",
        ]
    else:
        parts.append("- Not evaluated.")
    parts += truncation_section(meta)
    if meta.get("comparison"):
        parts += ["", "### Presets side by side", "", comparison_table(meta["comparison"])]
    parts += ["", NOTES_MARKER]
    if notes:
        parts += ["", notes.strip()]
    return "\n".join(parts) + "\n"


def card_notes(text: str) -> str | None:
    """The notes of a card written by ``render_model_card`` (what follows ``NOTES_MARKER``), or None
    for a card without the marker."""
    _, found, notes = text.partition(NOTES_MARKER)
    return notes.strip() if found else None


def kept_notes(folder: str | Path) -> str:
    """The notes of ``folder/MODEL_CARD.md`` ("" without a card); ``ValueError`` for a card without
    ``NOTES_MARKER``, whose hand-written part cannot be told apart from the drawn one."""
    path = Path(folder) / "MODEL_CARD.md"
    notes = card_notes(path.read_text()) if path.exists() else ""
    if notes is None:
        raise ValueError(f"{path} has no notes marker, so its hand-written part cannot be told apart; "
                         "give the notes to keep (avatarbot-train card STYLE --notes FILE)")
    return notes


def write_model_card(folder: str | Path, notes: str | None = None) -> Path:
    """Write ``folder/MODEL_CARD.md`` from the folder's ``style.json``, followed by ``notes``; with
    ``notes`` None, the notes of the card already there are kept (``ValueError`` when that card has
    no ``NOTES_MARKER``: it would be lost)."""
    folder = Path(folder)
    meta = json.loads((folder / "style.json").read_text())
    sample = "samples.png" if (folder / "samples.png").exists() else None
    path = folder / "MODEL_CARD.md"
    if notes is None:
        notes = kept_notes(folder)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(render_model_card(meta, notes, sample))
    tmp.replace(path)
    return path
