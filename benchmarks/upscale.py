"""Upscaler benchmark: bicubic, the distilled student and Real-CUGAN side by side, in one run.

    python -m benchmarks.upscale                    # 200 faces of weights/default (seeds 0-199), 256 px
    python -m benchmarks.upscale --faces 64 --size 512
    python -m benchmarks.upscale --look manga       # the faces in benchmarks/style.py's flat-tone manga look

For each upscaler, on the same faces (the seeds the student never trained on):

* ms per face at batch 1 and at batch 64, through ``AvatarGenerator.upscale`` (fixed batch shapes);
* sharpness: the mean luma gradient of the HD faces, as a ratio to bicubic's;
* PSNR (dB) of the HD face area-averaged back to 64 px against the 64-px face: how faithful it stays;
* PSNR (dB) against Real-CUGAN's output (the student's distillation target), on RGB and on luma (BT.601
  Y with a 4-px border shaved, the usual super-resolution measure); at least 30 dB of luma PSNR is the
  goal for the student to be the default;
* palette share: the share of HD pixels within 0.1 (of the [-1, 1] range) of the 8 colours fitted to
  the 64-px faces. Pictures drawn in a few flat tones (``--look manga``, like the styles trained on
  such pictures) should stay in them; blurred edges fall between tones.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gan.runtime import tensorflow_environment  # noqa: E402

tensorflow_environment()  # before TensorFlow is imported


def main(args: argparse.Namespace) -> int:
    import numpy as np

    from benchmarks.common import cpu_name, median, repo_path, table
    from gan.inference import AvatarGenerator
    from gan.model import palette_colours
    from gan.upscalers import UPSCALERS, UpscalerLibrary, resize, upscalers_dir
    from training.distill import mean_gradient, psnr, psnr_y

    weights = repo_path(args.weights_dir)
    gen = AvatarGenerator.load(weights / args.style, upscalers=UpscalerLibrary(upscalers_dir(weights)))
    faces = gen.generate(list(range(args.faces)))
    if args.look != "none":
        from PIL import Image

        from benchmarks.style import LOOKS

        faces = np.stack([np.asarray(LOOKS[args.look](Image.fromarray(f))) for f in faces])
    print(f"{cpu_name()}; style {gen.style}, {len(faces)} faces (seeds 0-{len(faces) - 1}), look {args.look}, "
          f"64 -> {args.size} px")
    outputs, timing = {}, {}
    for name in UPSCALERS:
        gen.upscale(faces[:4], args.size, name)  # load and warm up
        single = []
        for i in range(args.single):
            start = time.perf_counter()
            gen.upscale(faces[i % len(faces):i % len(faces) + 1], args.size, name)
            single.append(time.perf_counter() - start)
        batch = faces[:64]
        reps = 1 if name == "cugan" else 3
        start = time.perf_counter()
        for _ in range(reps):
            gen.upscale(batch, args.size, name)
        timing[name] = (median(single) * 1000, (time.perf_counter() - start) / (reps * len(batch)) * 1000)
        outputs[name] = gen.upscale(faces, args.size, name)
    base_sharp = mean_gradient(outputs["bicubic"])
    palette = palette_colours(faces.reshape(-1, 3).astype(np.float64) / 127.5 - 1.0, 8)
    rows = []
    for name in UPSCALERS:
        out = outputs[name]
        rows.append([name, f"{timing[name][0]:.2f}", f"{timing[name][1]:.2f}",
                     f"{mean_gradient(out) / base_sharp:.2f}x", f"{psnr(resize(out, 64), faces):.1f}",
                     "-" if name == "cugan" else f"{psnr(out, outputs['cugan']):.1f}",
                     "-" if name == "cugan" else f"{psnr_y(out, outputs['cugan']):.1f}",
                     f"{palette_share(out, palette):.3f}"])
    print(table(["upscaler", "ms/face b1", "ms/face b64", "sharpness", "PSNR down vs 64px",
                 "PSNR vs Real-CUGAN", "luma PSNR vs Real-CUGAN", "palette share"], rows))
    student_db = psnr_y(outputs["student"], outputs["cugan"])
    speedup = timing["cugan"][1] / timing["student"][1]
    print(f"upscale: student {student_db:.2f} dB luma PSNR against Real-CUGAN (goal >= 30: "
          f"{'met' if student_db >= 30 else 'NOT met'}), {timing['student'][1]:.2f} ms/face at batch 64 "
          f"({speedup:.0f}x faster than Real-CUGAN), sharpness {mean_gradient(outputs['student']) / base_sharp:.2f}x "
          f"bicubic (Real-CUGAN {mean_gradient(outputs['cugan']) / base_sharp:.2f}x)")
    return 0


def palette_share(images, colours, tolerance: float = 0.1) -> float:
    """The share of pixels within ``tolerance`` of one of ``colours`` (both in the [-1, 1] range)."""
    import numpy as np

    pixels = images.reshape(-1, 3).astype(np.float64) / 127.5 - 1.0
    sample = pixels[np.random.default_rng(0).choice(len(pixels), min(200_000, len(pixels)), replace=False)]
    gaps = np.sqrt(((sample[:, None, :] - colours[None]) ** 2).sum(-1)).min(axis=1)
    return float((gaps <= tolerance).mean())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights-dir", default="weights")
    p.add_argument("--style", default="default")
    p.add_argument("--faces", type=int, default=200, help="faces to compare (default 200)")
    p.add_argument("--size", type=int, default=256, help="output size (default 256)")
    p.add_argument("--look", choices=("none", "manga", "teal"), default="none",
                   help="redraw the faces in a look of benchmarks/style.py first (default none)")
    p.add_argument("--single", type=int, default=10, help="batch-1 calls timed per upscaler (default 10)")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main(parse_args()))
