"""Hair and eye colour: check the labeller on real faces, and measure a style's colour edits.

    python -m benchmarks.colours labeller               # real faces grouped by label -> docs/colours/
    python -m benchmarks.colours evaluate               # weights/default, held-out seeds 0-499
    python -m benchmarks.colours evaluate --identity-seeds 100 --markdown

``labeller`` labels the first ``--faces`` crops of ``../shared/data/anime-faces-64`` (skipping the
first ``--skip``) and draws two contact sheets: faces in one row per hair colour, eye bands in one
row per eye colour (and the unsure ones), to be judged by eye.

``evaluate`` draws the held-out seeds (``--seeds``, 0-499 by default; the directions were fitted
on seeds from 1,000,000 on) unedited and with each colour, and reports per colour:

* got: the share of edited faces the labeller gives the asked colour (goal: at least 80% for hair;
  eyes are reported against the same bar), next to the share the unedited faces already had;
* identity: the Inception-feature distance (``gan.metrics.InceptionFeatures``, FID's features) of
  each edited face to its unedited face, median over the faces the edit moved, on the first
  ``--identity-seeds`` seeds, against the median distance between two different unedited faces
  of those seeds (goal: below it); and the share of moved faces below that median;
* kept: for hair edits the share of faces whose eye colour label stays, for eye edits whose hair
  colour label stays.

It ends with the goals and one summary line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gan.runtime import tensorflow_environment  # noqa: E402

tensorflow_environment()  # before TensorFlow is imported

HAIR_GOAL = 0.8
INCEPTION = "../shared/data/inception/inception_v3_fid_notop.weights.h5"
REAL = "../shared/data/anime-faces-64"


def labeller_check(args: argparse.Namespace) -> int:
    from benchmarks.common import repo_path
    from gan.colours import EYE_COLOURS, HAIR_COLOURS, label_faces
    from gan.data import load_folder
    from training.directions import labelled_rows

    real = repo_path(args.real)
    faces, _ = load_folder(real, 64, max_images=args.skip + args.faces)
    faces = faces[args.skip:]
    start = time.perf_counter()
    labels = label_faces(faces)
    took = time.perf_counter() - start
    out = repo_path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for kind, names, got in (("hair", HAIR_COLOURS, labels.hair), ("eyes", EYE_COLOURS, labels.eyes)):
        rows = []
        for k, name in list(enumerate(names)) + [(-1, "unsure")]:
            picked = faces[got == k][:args.per_row]
            if kind == "eyes":  # the middle of the face, enlarged: rows 10-57, columns 8-55
                picked = picked[:, 10:58, 8:56]
            if len(picked):
                rows.append((f"{name} {int((got == k).sum())}", picked))
        cell = 96 if kind == "eyes" else 64
        labelled_rows(rows, cell=cell, label_width=96).save(out / f"labeller-{kind}.png", optimize=True)
        counts = ", ".join(f"{name} {int((got == k).sum())}" for k, name in list(enumerate(names)) + [(-1, "unsure")])
        print(f"{kind}: {counts}")
    print(f"labelled {len(faces)} real faces ({args.skip}-{args.skip + len(faces) - 1} of {real.name}) in "
          f"{took:.1f} s; contact sheets in {out}")
    return 0


def evaluate(args: argparse.Namespace) -> dict:
    """Per colour: the share labelled as asked, identity distances, what stayed; and the goals."""
    import numpy as np

    from benchmarks.common import cpu_name, repo_path
    from gan.colours import EYE_COLOURS, HAIR_COLOURS, label_faces
    from gan.inference import AvatarGenerator
    from gan.latents import latents_for_seeds
    from gan.metrics import InceptionFeatures
    from training.directions import draw

    gen = AvatarGenerator.load(repo_path(args.style))
    if gen.directions is None:
        raise SystemExit(f"style {gen.style!r} has no colour directions: run avatarbot-train directions first")
    lo, _, hi = args.seeds.partition("-")
    seeds = list(range(int(lo), int(hi or lo) + 1))
    n_id = min(args.identity_seeds, len(seeds))
    print(f"{cpu_name()}; style {gen.style}, directions {gen.directions.sha256[:12]}, seeds {seeds[0]}-{seeds[-1]} "
          f"(identity on the first {n_id}), truncation {args.truncation:g}")
    start = time.perf_counter()
    z = latents_for_seeds(seeds, gen.latent_dim, args.truncation)
    plain = draw(gen, z)
    plain_labels = label_faces(plain)
    extractor = InceptionFeatures(repo_path(args.inception_weights), batch_size=50)
    plain_feats = extractor(plain[:n_id])
    pair = np.linalg.norm(plain_feats[:, None] - plain_feats[None], axis=-1)
    random_median = float(np.median(pair[np.triu_indices(n_id, 1)]))
    rows = []
    for kind, names in (("hair", HAIR_COLOURS), ("eyes", EYE_COLOURS)):
        other = "eyes" if kind == "hair" else "hair"
        for colour in gen.colours(kind):
            k = names.index(colour)
            edited_z = gen.edit(z, **{kind: colour})
            moved = np.any(edited_z != z, axis=1)
            faces = draw(gen, edited_z)
            labels = label_faces(faces)
            got = getattr(labels, kind) == k
            kept = getattr(labels, other) == getattr(plain_labels, other)
            ids = np.flatnonzero(moved[:n_id])
            dist = np.linalg.norm(extractor(faces[ids]) - plain_feats[ids], axis=1) if len(ids) else np.zeros(0)
            rows.append({
                "kind": kind, "colour": colour,
                "target": float(gen.directions.targets[kind][gen.colours(kind).index(colour)]),
                "before": round(float((getattr(plain_labels, kind) == k).mean()), 3),
                "got": round(float(got.mean()), 3),
                "moved": round(float(moved.mean()), 3),
                "kept": round(float(kept.mean()), 3),
                "identity_median": round(float(np.median(dist)), 2) if len(dist) else 0.0,
                "identity_below_random": round(float((dist < random_median).mean()), 3) if len(dist) else 1.0,
                "identity_faces": int(len(ids)),
            })
            print(f"  {kind} {colour}: {rows[-1]}", file=sys.stderr)
    return {"style": gen.style, "directions_sha256": gen.directions.sha256, "seeds": f"{seeds[0]}-{seeds[-1]}",
            "identity_seeds": n_id, "truncation": args.truncation, "random_pair_median": round(random_median, 2),
            "rows": rows, "seconds": round(time.perf_counter() - start, 1)}


def goals(result: dict) -> list[tuple[str, bool]]:
    """(description, met) for each goal: hair colours labelled as asked, identity below random pairs."""
    hair = [r for r in result["rows"] if r["kind"] == "hair"]
    eyes = [r for r in result["rows"] if r["kind"] == "eyes"]
    rm = result["random_pair_median"]
    return [
        (f"every hair colour: at least {HAIR_GOAL:.0%} of edited faces labelled as asked "
         f"(lowest {min(r['got'] for r in hair):.0%}, {min(hair, key=lambda r: r['got'])['colour']})",
         all(r["got"] >= HAIR_GOAL for r in hair)),
        (f"every hair colour: median identity distance below two random faces' ({rm:.1f}; highest "
         f"{max(r['identity_median'] for r in hair):.1f})", all(r["identity_median"] < rm for r in hair)),
        (f"eyes (reported against the same bars): {sum(r['got'] >= HAIR_GOAL for r in eyes)} of {len(eyes)} colours "
         f"at {HAIR_GOAL:.0%}, {sum(r['identity_median'] < rm for r in eyes)} of {len(eyes)} below the identity bar",
         all(r["got"] >= HAIR_GOAL and r["identity_median"] < rm for r in eyes)),
    ]


def markdown(result: dict) -> str:
    """The evaluation as a markdown table (for the model card and docs/colours.md)."""
    lines = ["| edit | target | before | got | kept | moved | identity (median) | moved faces below random |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in result["rows"]:
        lines.append(f"| {r['kind']} {r['colour']} | {r['target']:g} | {r['before']:.0%} | **{r['got']:.0%}** | "
                     f"{r['kept']:.0%} | {r['moved']:.0%} | {r['identity_median']:.1f} | "
                     f"{r['identity_below_random']:.0%} |")
    return "\n".join(lines)


def print_evaluation(result: dict, as_markdown: bool) -> None:
    from benchmarks.common import table

    if as_markdown:
        print(markdown(result))
    else:
        print(table(["edit", "target", "before", "got", "kept", "moved", "identity", "below random"],
                    [[f"{r['kind']} {r['colour']}", f"{r['target']:g}", f"{r['before']:.0%}", f"{r['got']:.0%}",
                      f"{r['kept']:.0%}", f"{r['moved']:.0%}", f"{r['identity_median']:.1f}",
                      f"{r['identity_below_random']:.0%}"] for r in result["rows"]]))
    print(f"\nmedian Inception distance between two different unedited faces: {result['random_pair_median']:.1f} "
          f"({result['identity_seeds']} faces)")
    met = goals(result)
    for text, ok in met:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    hair = [r for r in result["rows"] if r["kind"] == "hair"]
    print(f"colours: hair {sum(r['got'] >= HAIR_GOAL for r in hair)}/{len(hair)} colours at {HAIR_GOAL:.0%}, "
          f"identity {'PASS' if met[1][1] else 'FAIL'}; {result['seconds']:.0f} s")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    lab = sub.add_parser("labeller", help="contact sheets of real faces grouped by their colour labels")
    lab.add_argument("--real", default=REAL, help=f"folder of real 64-px faces (default {REAL})")
    lab.add_argument("--faces", type=int, default=3000, help="faces to label (default 3000)")
    lab.add_argument("--skip", type=int, default=10_000, help="start after this many (default 10000)")
    lab.add_argument("--per-row", type=int, default=12, help="faces shown per label (default 12)")
    lab.add_argument("--out", default="docs/colours", help="where the sheets go (default docs/colours)")
    ev = sub.add_parser("evaluate", help="measure a style's colour edits on held-out seeds")
    ev.add_argument("--style", default="weights/default")
    ev.add_argument("--seeds", default="0-499", help="held-out seed range (default 0-499)")
    ev.add_argument("--identity-seeds", type=int, default=100,
                    help="the first N seeds also get Inception features (slow on a CPU; default 100)")
    ev.add_argument("--truncation", type=float, default=1.0)
    ev.add_argument("--inception-weights", default=INCEPTION)
    ev.add_argument("--markdown", action="store_true", help="print the table as markdown")
    ev.add_argument("-o", "--output", help="also write the results as JSON here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "labeller":
        return labeller_check(args)
    result = evaluate(args)
    print_evaluation(result, args.markdown)
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
