"""``avatarbot-train directions``: find hair and eye colour directions in a style's latent space.

In the manner of InterFaceGAN (Shen et al. 2020):

1. Draw ``samples`` faces from seeds ``FIT_SEEDS_START`` on (far from the held-out seeds 0-499 that
   ``benchmarks/colours.py`` measures on) and label their hair and eye colours (``gan.colours``).
2. Fit one linear classifier per colour, one-vs-rest, on the latents: logistic regression with
   balanced class weights (a rare colour counts as much as a common one). Its unit normal ``n`` and
   offset ``b`` (intercept / |w|) give each latent a signed distance ``n . z + b`` from the boundary.
   Faces the labeller is unsure of are left out. A colour with fewer than ``MIN_POSITIVES`` faces
   with it, or without it, gets no direction.
3. Each kind's directions move along its normals with the other kind's normals projected out, so a
   hair edit keeps every eye score and an eye edit every hair score.
4. Calibrate the rule's one parameter per colour, the target distance: on ``calibration`` more
   seeds after the fitting ones, try the targets in ``TARGETS`` from the smallest, and keep the
   first at which at least ``CALIBRATION_GOAL`` of the edited faces get the asked colour from the
   labeller (else the one that gets the most). The smallest target moves faces the least, so they
   stay the same person. A colour that no target brings to ``MIN_OFFERED_SHARE`` of the faces is
   dropped (its direction does not draw it), and its kind calibrated again without it.

``--write`` stores ``directions.npz`` in the style folder, describes it in ``style.json`` and draws
``colours.png`` (rows: colours; columns: seeds 0-5).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np

from gan.colours import EYE_COLOURS, HAIR_COLOURS, UNSURE, label_faces
from gan.edits import DIRECTIONS_FILE, KINDS, Directions, save_directions

log = logging.getLogger(__name__)

FIT_SEEDS_START = 1_000_000
MIN_POSITIVES = 30
TARGETS = tuple(k / 4 for k in range(1, 13))  # 0.25, 0.5, ... 3.0: further, faces break up
CALIBRATION_GOAL = 0.85  # on 400 faces, 2.7 standard errors above the 80% goal
MIN_OFFERED_SHARE = 0.5  # a colour whose best target gets fewer faces to it is not offered
REGULARISATION_C = 1.0
GRID_SEEDS = list(range(6))
GRID_FILE = "colours.png"
RULE = ("move the latent by the smallest combination of the kind's directions after which the asked colour's "
        "classifier distance is at least its target and every other colour's at most zero (latents already "
        "there stay); hair first, then eyes, each along its normals with the other kind's projected out; the "
        f"target is the smallest of {list(TARGETS)} at which {CALIBRATION_GOAL:.0%} of calibration faces get "
        "the colour")


def draw(gen, latents: np.ndarray, chunk: int = 1024, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """(N, D) latents -> (N, 64, 64, 3) uint8 faces through the style's generator, in chunks."""
    out = []
    for i in range(0, len(latents), chunk):
        out.append(gen.render_latents(latents[i:i + chunk]))
        if progress:
            progress(len(out[-1]))
    return np.concatenate(out) if out else np.zeros((0, gen.image_size, gen.image_size, 3), np.uint8)


def fit_kind(z: np.ndarray, labels: np.ndarray, names: tuple[str, ...]) -> tuple[list[str], np.ndarray, np.ndarray, dict]:
    """One-vs-rest logistic regressions of ``labels`` (indices into ``names``, ``UNSURE`` left out)
    on the latents: the colours fitted, their (K, D) unit normals, (K,) offsets, and a summary."""
    from sklearn.linear_model import LogisticRegression

    sure = labels != UNSURE
    x, y = z[sure].astype(np.float64), labels[sure]
    colours, normals, offsets, counts = [], [], [], {}
    for k, name in enumerate(names):
        positives = int((y == k).sum())
        counts[name] = positives
        if min(positives, len(y) - positives) < MIN_POSITIVES:  # nothing to tell apart
            log.warning("colour %s: %d of %d labelled faces, no direction", name, positives, len(y))
            continue
        model = LogisticRegression(C=REGULARISATION_C, class_weight="balanced", max_iter=2000)
        model.fit(x, y == k)
        w, b = model.coef_[0], float(model.intercept_[0])
        norm = float(np.linalg.norm(w))
        colours.append(name)
        normals.append(w / norm)
        offsets.append(b / norm)
    return colours, np.array(normals), np.array(offsets), {"faces": int(sure.sum()), "unsure": int((~sure).sum()),
                                                           "counts": counts}


def project_out(vectors: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Each row of ``vectors`` minus its component in the span of ``basis``'s rows, renormalised."""
    q, _ = np.linalg.qr(basis.T)
    rest = vectors - (vectors @ q) @ q.T
    return rest / np.linalg.norm(rest, axis=1, keepdims=True)


def steering(hair: np.ndarray, eyes: np.ndarray) -> dict[str, np.ndarray]:
    """The steering directions of (K, D) hair and eye normals: each kind's normals with the other
    kind's projected out, so that an edit of one kind leaves every score of the other as it was.
    (Steering hair along its own normals turned the eyes too, and moved red-haired faces further
    from themselves than two random faces are apart: docs/colours.md, "Hair keeps the eyes".)"""
    return {"hair": project_out(hair, eyes), "eyes": project_out(eyes, hair)}


def balanced_accuracy(directions: Directions, kind: str, z: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Per colour, the mean of the true-positive and true-negative rates of its classifier on
    labelled latents ``z`` (faces it was not fitted on)."""
    names = HAIR_COLOURS if kind == "hair" else EYE_COLOURS
    sure = labels != UNSURE
    d = directions.distances(kind, z[sure])
    out = {}
    for j, colour in enumerate(directions.colours[kind]):
        truth = labels[sure] == names.index(colour)
        said = d[:, j] > 0
        if truth.any() and (~truth).any():
            out[colour] = round(float((said[truth].mean() + (~said[~truth]).mean()) / 2), 3)
    return out


def calibrate(gen, directions: Directions, kind: str, z: np.ndarray,
              progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, dict]:
    """Per colour, the smallest target in ``TARGETS`` at which ``CALIBRATION_GOAL`` of the latents
    ``z``, edited, are labelled with the colour; and the share reached at each target tried."""
    names = HAIR_COLOURS if kind == "hair" else EYE_COLOURS
    targets, tried = [], {}
    for k, colour in enumerate(directions.colours[kind]):
        shares = {}
        for target in TARGETS:
            trial = dataclasses.replace(directions, targets={**directions.targets, kind: np.full(
                len(directions.colours[kind]), target)})
            faces = draw(gen, trial.apply(z, **{kind: colour}))
            labels = label_faces(faces)
            got = labels.hair if kind == "hair" else labels.eyes
            shares[target] = float((got == names.index(colour)).mean())
            if progress:
                progress(1)
            if shares[target] >= CALIBRATION_GOAL:
                break
        best = max(shares.values())
        chosen = next(t for t, s in shares.items() if s >= min(CALIBRATION_GOAL, best))
        targets.append(chosen)
        tried[colour] = {"target": chosen, "shares": {f"{t:g}": round(s, 3) for t, s in shares.items()}}
        log.info("%s %s: target %g (%s)", kind, colour, chosen, tried[colour]["shares"])
    return np.array(targets, np.float64), tried


def fit(style: str | os.PathLike, samples: int = 20_000, calibration: int = 400,
        progress: bool = False) -> tuple[Directions, dict]:
    """Fit and calibrate a style's colour directions; returns them and a report for ``style.json``."""
    from tqdm import tqdm

    from gan.inference import AvatarGenerator
    from gan.latents import latents_for_seeds

    if samples < 1000 or calibration < 50:
        raise ValueError("use at least 1000 samples and 50 calibration seeds")
    gen = AvatarGenerator.load(style)
    dim = gen.latent_dim
    fit_seeds = list(range(FIT_SEEDS_START, FIT_SEEDS_START + samples))
    cal_seeds = list(range(FIT_SEEDS_START + samples, FIT_SEEDS_START + samples + calibration))
    z = latents_for_seeds(fit_seeds, dim)
    with tqdm(total=samples, desc="drawing", unit="face", disable=not progress) as bar:
        labels = label_faces(draw(gen, z, progress=bar.update))
    hair = fit_kind(z, labels.hair, HAIR_COLOURS)
    eyes = fit_kind(z, labels.eyes, EYE_COLOURS)
    for kind, found in (("hair", hair), ("eyes", eyes)):
        if not found[0]:
            seen = ", ".join(f"{c} {n}" for c, n in found[3]["counts"].items() if n) or "none"
            raise ValueError(f"cannot fit {kind} colour directions: of {samples} faces, {found[3]['unsure']} are "
                             f"unsure and the rest {seen}; a colour needs {MIN_POSITIVES} faces with it and "
                             f"{MIN_POSITIVES} without")
    directions = Directions(
        colours={"hair": tuple(hair[0]), "eyes": tuple(eyes[0])},
        normals={"hair": hair[1], "eyes": eyes[1]}, offsets={"hair": hair[2], "eyes": eyes[2]},
        targets={"hair": np.zeros(len(hair[0])), "eyes": np.zeros(len(eyes[0]))},
        steer=steering(hair[1], eyes[1]))
    zc = latents_for_seeds(cal_seeds, dim)
    cal_labels = label_faces(draw(gen, zc))
    report = {"samples": samples, "fit_seeds": f"{fit_seeds[0]}-{fit_seeds[-1]}",
              "calibration_seeds": f"{cal_seeds[0]}-{cal_seeds[-1]}",
              "classifier": f"scikit-learn LogisticRegression(C={REGULARISATION_C}, class_weight='balanced'), "
                            "one-vs-rest, on the latents",
              "labels": {"hair": hair[3], "eyes": eyes[3]},
              "balanced_accuracy": {"hair": balanced_accuracy(directions, "hair", zc, cal_labels.hair),
                                    "eyes": balanced_accuracy(directions, "eyes", zc, cal_labels.eyes)},
              "calibration": {}, "dropped": {}}
    steps = len(TARGETS) * (len(hair[0]) + len(eyes[0]))
    with tqdm(total=steps, desc="calibrating", disable=not progress) as bar:
        for kind in KINDS:
            while True:
                targets, tried = calibrate(gen, directions, kind, zc, bar.update)
                weak = [c for c in directions.colours[kind] if max(tried[c]["shares"].values()) < MIN_OFFERED_SHARE]
                if not weak:
                    break
                report["dropped"].update({f"{kind} {c}": tried[c]["shares"] for c in weak})
                log.warning("%s %s: no target reaches %.0f%% of faces; not offered", kind, ", ".join(weak),
                            100 * MIN_OFFERED_SHARE)
                directions = drop_colours(directions, kind, weak)
                if not directions.colours[kind]:
                    raise ValueError(f"no {kind} colour direction works on this style")
            directions = dataclasses.replace(directions, targets={**directions.targets, kind: targets})
            report["calibration"][kind] = tried
    return directions, report


def drop_colours(directions: Directions, kind: str, colours: list[str]) -> Directions:
    """``directions`` without some colours of one kind."""
    keep = [i for i, c in enumerate(directions.colours[kind]) if c not in colours]
    fields = {field: {**getattr(directions, field), kind: getattr(directions, field)[kind][keep]}
              for field in ("normals", "offsets", "targets", "steer")}
    return dataclasses.replace(directions, colours={**directions.colours,
                                                    kind: tuple(directions.colours[kind][i] for i in keep)}, **fields)


def labelled_rows(rows: list[tuple[str, np.ndarray]], cell: int = 96, label_width: int = 96):
    """One row of faces per (label, (N, H, W, 3) uint8 faces), the label on the left, as a PIL image."""
    from PIL import Image, ImageDraw

    from gan.imaging import grid

    cols = max(len(faces) for _, faces in rows)
    pad = 2
    strips = [grid(faces, cols=cols, cell=cell, pad=pad) for _, faces in rows]
    out = Image.new("RGB", (label_width + strips[0].width, sum(s.height for s in strips)), "white")
    pen = ImageDraw.Draw(out)
    y = 0
    for (label, _), strip in zip(rows, strips):
        out.paste(strip, (label_width, y))
        pen.text((6, y + strip.height // 2 - 6), label, fill="black")
        y += strip.height
    return out


def colour_grid(gen, seeds: list[int] = GRID_SEEDS, cell: int = 80):
    """The same seeds unedited (top row), then with each hair colour, then each eye colour."""
    rows = [("as drawn", gen.generate(seeds))]
    rows += [(f"hair {c}", gen.generate(seeds, hair=c)) for c in gen.colours("hair")]
    rows += [(f"eyes {c}", gen.generate(seeds, eyes=c)) for c in gen.colours("eyes")]
    return labelled_rows(rows, cell)


def record(style: str | os.PathLike, directions: Directions, report: dict, command: str) -> Path:
    """Write ``directions.npz`` into the style folder and describe it in ``style.json``; then draw
    the grid of edits (``colours.png``). Returns the grid's path."""
    from gan.inference import AvatarGenerator
    from gan.styles import sha256_file, update_style_json

    folder = Path(style)
    tmp = folder / f".{DIRECTIONS_FILE}.tmp"
    save_directions(tmp, directions)
    os.replace(tmp, folder / DIRECTIONS_FILE)
    update_style_json(folder, directions={
        "file": DIRECTIONS_FILE,
        "sha256": sha256_file(folder / DIRECTIONS_FILE),
        "bytes": (folder / DIRECTIONS_FILE).stat().st_size,
        "hair": list(directions.colours["hair"]),
        "eyes": list(directions.colours["eyes"]),
        "rule": {"text": RULE, "targets": {kind: {c: float(t) for c, t in zip(directions.colours[kind],
                                                                                   directions.targets[kind])}
                                           for kind in KINDS}},
        "fit": report,
        "command": command,
    })
    grid_path = folder / GRID_FILE
    colour_grid(AvatarGenerator.load(folder)).save(grid_path, optimize=True)
    return grid_path


def summary(directions: Directions, report: dict) -> str:
    """A plain-text table of the fitted colours: faces labelled, balanced accuracy, target."""
    lines = [f"{'kind':<5} {'colour':<7} {'faces':>6} {'bal.acc':>7} {'target':>6}  share at each target tried"]
    for kind in KINDS:
        for colour, target in zip(directions.colours[kind], directions.targets[kind]):
            shares = report["calibration"][kind][colour]["shares"]
            lines.append(f"{kind:<5} {colour:<7} {report['labels'][kind]['counts'][colour]:>6} "
                         f"{report['balanced_accuracy'][kind].get(colour, float('nan')):>7.3f} {target:>6g}  "
                         + " ".join(f"{t}:{s:.2f}" for t, s in shares.items()))
    for name, shares in report.get("dropped", {}).items():
        lines.append(f"{name}: not offered (at most {max(shares.values()):.0%} of faces at any target)")
    return "\n".join(lines)
