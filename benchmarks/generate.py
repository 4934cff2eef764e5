"""Generation speed: ``AvatarGenerator`` against the seed article's way of drawing a face.

* **seed's way**: an eager ``generator(noise, training=False)`` call per request, the noise drawn
  with ``np.random`` in float32, the output converted to uint8 pixels.
* **ours**: ``gan.inference.AvatarGenerator.generate(seeds)``: the seed contract's latents, one
  compiled (``tf.function``) calls on a few fixed batch shapes, padded, uint8 pixels.

Both run the same weights in float32: the style in ``--style`` (``weights/default`` by default) or,
when that folder has no ``style.json``, a freshly initialised generator of the default style's shape
(improved preset, g_channels=64, latent_dim=128) written to a temporary style folder. Speed does not
depend on what the weights have learnt.

It prints single-avatar latency (p50/p90 over ``--requests`` one-seed requests, seed's way and ours
interleaved), batch throughput (images/s for ``--batch`` seeds in one request), the generator's
FLOPs per image (TensorFlow's profiler on the batch-1 graph), and the time to encode one avatar as
a ``--size`` px PNG with its metadata (``gan.imaging.avatar_png``), which a bot pays per reply.

Run from the repository root: ``python -m benchmarks.generate [--requests N] [--style PATH]``.
"""

# ruff: noqa: E402 (benchmarks.common must be imported before TensorFlow; see the sys.path line)
from __future__ import annotations

import argparse
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import cpu_name, median, percentile, pillow_png, repo_path, table, time_calls

import keras
import numpy as np
import tensorflow as tf

from gan.config import GANConfig
from gan.imaging import avatar_png
from gan.inference import CHUNKS, AvatarGenerator
from gan.networks import build_generator
from gan.styles import float32_policy, load_generator, write_style

DEFAULT_STYLE = "weights/default"


def seed_way(generator: keras.Model, count: int, latent_dim: int) -> np.ndarray:
    """The seed article's way: fresh ``np.random`` noise and an eager call; uint8 pixels out."""
    noise = np.random.normal(size=(count, latent_dim)).astype(np.float32)
    images = generator(noise, training=False).numpy()
    return (images * 127.5 + 127.5).clip(0, 255).astype(np.uint8)


def flops_per_image(generator: keras.Model, latent_dim: int) -> float:
    """Floating-point operations of one batch-1 forward pass, counted by TensorFlow's profiler.

    The profiler counts the multiply-adds a layer really does (a transposed convolution's cost is
    counted per input pixel), so zeros inserted by a stride-2 transposed convolution are not counted.
    """
    concrete = tf.function(lambda z: generator(z, training=False)).get_concrete_function(
        tf.TensorSpec([1, latent_dim], tf.float32))
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    logger, level = tf.get_logger(), tf.get_logger().level
    logger.setLevel("ERROR")  # the v1 profiler logs a deprecation warning about its own internals
    try:
        return float(tf.compat.v1.profiler.profile(graph=concrete.graph, options=options).total_float_ops)
    finally:
        logger.setLevel(level)


def temporary_style(folder: Path) -> Path:
    """A style folder holding a freshly initialised generator of the default style's shape."""
    config = GANConfig.preset_config("improved", g_channels=64, d_channels=32, latent_dim=128)
    keras.utils.set_random_seed(0)
    with float32_policy():
        generator = build_generator(config)
    return write_style(folder / "bench", "bench", config, generator,
                       description="untrained generator for benchmarks")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--style", default=None,
                   help=f"style folder (default: {DEFAULT_STYLE}, or an untrained one when it is missing)")
    p.add_argument("--requests", type=int, default=100, help="single-avatar requests per side")
    p.add_argument("--batch", type=int, default=64, help="seeds per request in the throughput test")
    p.add_argument("--batches", type=int, default=10, help="batch requests per side")
    p.add_argument("--chunks", default=",".join(map(str, CHUNKS)),
                   help="AvatarGenerator's compiled batch shapes, comma-separated")
    p.add_argument("--size", type=int, default=256, help="PNG size in px")
    p.add_argument("--pngs", type=int, default=50, help="PNG encodings timed")
    args = p.parse_args(argv)
    args.chunks = tuple(int(c) for c in args.chunks.split(","))
    for name in ("requests", "batch", "batches", "pngs"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with ExitStack() as stack:
        if args.style is not None:
            folder = repo_path(args.style)
            if not (folder / "style.json").is_file():
                print(f"generate.py: error: {folder} is not a style folder (no style.json)", file=sys.stderr)
                return 2
            source = f"style {folder}"
        elif (repo_path(DEFAULT_STYLE) / "style.json").is_file():
            folder = repo_path(DEFAULT_STYLE)
            source = f"style {folder}"
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="avatarbench-")))
            folder = temporary_style(tmp)
            source = (f"UNTRAINED generator ({DEFAULT_STYLE} has no style.json): improved preset, "
                      "g_channels=64, latent_dim=128, in a temporary style folder")
        ours = AvatarGenerator.load(folder, chunks=args.chunks)  # verifies the folder, traces once
        generator, info = load_generator(folder)  # the same weights, as a plain Keras model
    latent_dim = info.config.latent_dim
    cfg = info.config

    print("Generation speed: AvatarGenerator against the seed's eager generator(noise) per request")
    print(f"CPU: {cpu_name()}")
    print(f"model: {source}")
    print(f"       preset {cfg.preset}, latent {latent_dim}, g_channels {cfg.g_channels}, "
          f"{generator.count_params():,} parameters, float32")
    print(f"ours: compiled calls on batch shapes {ours.chunks} of {args.chunks} (the ones bit-identical on this "
          "CPU; a request is padded to the smallest that fits)")

    flops = flops_per_image(generator, latent_dim)
    print(f"generator cost: {flops / 1e9:.3f} GFLOP per image (TensorFlow profiler, batch 1)\n")

    # Warm-up: the eager path's first calls, and ours at the batch size (already traced by load()).
    for _ in range(3):
        seed_way(generator, 1, latent_dim)
        seed_way(generator, args.batch, latent_dim)
    ours.generate(list(range(args.batch)))

    seed_single: list[float] = []
    our_single: list[float] = []
    for i in range(args.requests):  # interleaved, so both see the same machine load
        seed_single += time_calls(lambda: seed_way(generator, 1, latent_dim), 1)
        our_single += time_calls(lambda: ours.generate([1000 + i]), 1)

    seeds = list(range(args.batch))
    seed_batch: list[float] = []
    our_batch: list[float] = []
    for _ in range(args.batches):
        seed_batch += time_calls(lambda: seed_way(generator, args.batch, latent_dim), 1)
        our_batch += time_calls(lambda: ours.generate(seeds), 1)

    images = ours.generate(list(range(min(args.pngs, 64))))
    meta = ours.metadata(0)
    png_bytes = len(avatar_png(images[0], args.size, meta))  # warm-up
    png_times: list[float] = []
    pillow_times: list[float] = []
    for i in range(args.pngs):
        png_times += time_calls(lambda: avatar_png(images[i % len(images)], args.size, meta), 1)
        pillow_times += time_calls(lambda: pillow_png(images[i % len(images)], args.size, meta), 1)

    ms = 1000.0
    s50, s90 = percentile(seed_single, 50) * ms, percentile(seed_single, 90) * ms
    o50, o90 = percentile(our_single, 50) * ms, percentile(our_single, 90) * ms
    seed_rate, our_rate = args.batch / median(seed_batch), args.batch / median(our_batch)
    rows = [
        ["single avatar p50 (ms)", f"{s50:.2f}", f"{o50:.2f}", f"{s50 / o50:.2f}x"],
        ["single avatar p90 (ms)", f"{s90:.2f}", f"{o90:.2f}", f"{s90 / o90:.2f}x"],
        [f"batch of {args.batch} (images/s)", f"{seed_rate:.0f}", f"{our_rate:.0f}", f"{our_rate / seed_rate:.2f}x"],
        [f"batch of {args.batch}, ms per image", f"{ms / seed_rate:.3f}", f"{ms / our_rate:.3f}", ""],
    ]
    print(table(["", "seed's way", "ours", "speed-up"], rows))
    print(f"\n({args.requests} single requests and {args.batches} batch requests per side; "
          "speed-up = seed time / our time)")
    print(f"achieved at batch {args.batch}: ours {flops * our_rate / 1e9:.0f} GFLOP/s, "
          f"seed's way {flops * seed_rate / 1e9:.0f} GFLOP/s")
    p50, p90 = percentile(png_times, 50) * ms, percentile(png_times, 90) * ms
    pil50 = percentile(pillow_times, 50) * ms
    pillow_size = len(pillow_png(images[0], args.size, meta))
    print(f"PNG encoding at {args.size} px (upscale + metadata, gan.imaging.avatar_png): "
          f"p50 {p50:.2f} ms, p90 {p90:.2f} ms per avatar ({png_bytes / 1024:.0f} KiB); "
          f"Pillow's Lanczos and PNG defaults: p50 {pil50:.2f} ms ({pillow_size / 1024:.0f} KiB), "
          f"{pil50 / p50:.1f}x slower")
    print(f"generate: single avatar p50 ours {o50:.1f} ms vs seed {s50:.1f} ms ({s50 / o50:.2f}x); "
          f"batch {args.batch} ours {our_rate:.0f} img/s vs seed {seed_rate:.0f} img/s "
          f"({our_rate / seed_rate:.2f}x); {flops / 1e9:.3f} GFLOP/image; PNG {args.size} px {p50:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
