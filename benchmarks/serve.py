"""Serving benchmark: the avatar service against the naive design, in the same run.

    python benchmarks/serve.py                      # weights/default, or a random full-size model
    python benchmarks/serve.py --levels 1,16,64,256 --rounds 4

For each concurrency level, that many clients each send a request, wait for the PNG, and send the
next (a closed loop), with fresh seeds throughout (no cache hits). Printed per level: avatars per
second, p50 and p99 latency, for

* HD:      ``AvatarService.handle`` as the bot serves it: the style's own upscaler (the distilled
  student) turns each 64-px face into an HD avatar in the same micro-batched render call;
* service: the same service with ``OUTPUT_UPSCALER=bicubic`` (validation, limits, micro-batching,
  one render thread, encoder threads), the serving path before super-resolution;
* naive:   one eager ``generator(z, training=False)`` per request through ``run_in_executor``,
  then PNG encoding the way a plain bot does it: Pillow's resize and ``Image.save(..., "PNG")``
  with its defaults (the goal's baseline);
* naive+:  the same naive design, but encoding with ``gan.imaging.avatar_png`` (our fast upscale
  and PNG writer), to show how much of the speed-up is the serving design alone;

and the floor: the model's own batched time per image (64 at a time), without any encoding. The last
columns are the event loop's largest lag during the HD and bicubic runs (``bot.looplag``; the bot
logs a warning above 100 ms): the drawing runs on threads, so the loop stays free for other chats.
Then the Upscale button: 512-px avatars through Real-CUGAN, p50 and p99 at 1 and 4 concurrent.

Goals on the 2-core machine at 64 concurrent requests: HD at least 200 avatars/s with p99 under
500 ms; bicubic service at least 10x naive throughput with p99 under 150 ms; Upscale p50 under 1.5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gan.runtime import tensorflow_environment  # noqa: E402

tensorflow_environment()  # before TensorFlow is imported


def _style_root(args: argparse.Namespace) -> Path:
    root = Path(args.weights_dir)
    if (root / args.style / "style.json").exists():
        return root
    print(f"no style {args.style!r} in {root}: using a random-weights full-size 'improved' generator")
    import keras

    from gan.config import GANConfig
    from gan.networks import build_generator
    from gan.styles import float32_policy, write_style

    tmp = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    cfg = GANConfig.preset_config("improved")
    keras.utils.set_random_seed(0)
    with float32_policy():
        gen = build_generator(cfg)
    write_style(tmp / args.style, args.style, cfg, gen, description="benchmark: random weights")
    return tmp


async def _closed_loop(call, concurrency: int, total: int) -> tuple[float, float, float, float]:
    """``concurrency`` clients send ``total`` requests in all: avatars/s, p50 ms, p99 ms, and the
    event loop's largest lag meanwhile in ms (the bot warns above 100 ms, ``bot.looplag``)."""
    from bot.looplag import LoopLagMonitor

    seeds = itertools.count(int(time.time() * 1000) % 10**12)
    latencies: list[float] = []
    remaining = [total]

    async def client() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            start = time.perf_counter()
            await call(next(seeds))
            latencies.append(time.perf_counter() - start)

    lag = LoopLagMonitor(warn_ms=float("inf"))
    lag.start()
    start = time.perf_counter()
    await asyncio.gather(*[client() for _ in range(concurrency)])
    wall = time.perf_counter() - start
    await lag.stop()
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    return len(latencies) / wall, statistics.median(latencies) * 1000, p99 * 1000, lag.max_ms


async def main(args: argparse.Namespace) -> int:
    import numpy as np

    from benchmarks.common import pillow_png
    from bot.registry import StyleRegistry
    from bot.requests import AvatarRequest
    from bot.service import AvatarService, ServiceLimits
    from gan.imaging import avatar_png, to_uint8
    from gan.latents import latent_for_seed

    root = _style_root(args)
    registry = StyleRegistry(root, args.style)
    gen = registry.generator(args.style)

    def limits(upscaler: str) -> ServiceLimits:
        return ServiceLimits(output_size=args.size, user_cooldown_s=0, chat_limit_per_minute=10**9,
                             queue_size=10**6, cache_size=0, encode_threads=args.encode_threads,
                             output_upscaler=upscaler)

    hd_service, service = AvatarService(registry, limits("")), AvatarService(registry, limits("bicubic"))
    await hd_service.start()
    await service.start()
    keras_model = gen._generator
    loop = asyncio.get_running_loop()
    users = itertools.count()

    def caller(svc: AvatarService, kind: str = "avatar"):
        async def call(seed: int) -> bytes:
            return (await svc.handle(AvatarRequest("bench", str(next(users)), "bench", kind=kind, seed=seed))).data
        return call

    via_hd, via_service = caller(hd_service), caller(service)

    def eager_face(seed: int) -> np.ndarray:
        z = latent_for_seed(seed, gen.latent_dim)[None]
        return to_uint8(keras_model(z, training=False).numpy())[0]

    def naive_sync(seed: int) -> bytes:
        return pillow_png(eager_face(seed), args.size, gen.metadata(seed))

    def naive_plus_sync(seed: int) -> bytes:
        return avatar_png(eager_face(seed), args.size, gen.metadata(seed))

    async def naive(seed: int) -> bytes:
        return await loop.run_in_executor(None, naive_sync, seed)

    async def naive_plus(seed: int) -> bytes:
        return await loop.run_in_executor(None, naive_plus_sync, seed)

    # floor: the compiled generator alone, 64 faces per call
    z = np.stack([latent_for_seed(s, gen.latent_dim) for s in range(64)])
    gen.render_latents(z)
    reps = 5
    start = time.perf_counter()
    for _ in range(reps):
        gen.render_latents(z)
    floor_ms = (time.perf_counter() - start) / (reps * 64) * 1000
    naive_sync(0)  # warm the eager path too
    naive_plus_sync(0)

    hd_name = gen.metadata(0, upscaler=None, size=args.size).get("upscaler_weights", gen.default_upscaler)
    print(f"style {gen.style} ({gen.weights_sha256[:12]}), {args.size} px PNG, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; HD upscaler {hd_name}")
    print(f"floor (model only, batched 64): {floor_ms:.2f} ms/image = {1000 / floor_ms:.0f} images/s")
    print(f"{'concurrency':>11} | {'HD /s':>6} {'p50 ms':>7} {'p99 ms':>7} | {'bicubic /s':>10} {'p50 ms':>7} "
          f"{'p99 ms':>7} | {'naive /s':>8} {'p50 ms':>7} {'p99 ms':>7} | {'naive+ /s':>9} {'p99 ms':>7} | "
          f"{'HD/bicubic':>10} {'bic/naive':>9} {'bic/naive+':>10} | {'loop lag ms: HD':>15} {'bicubic':>7}")
    results = {}
    for level in args.levels:
        total = max(args.rounds * level, 32)
        naive_total = max(level, min(total, args.naive_max))
        h = await _closed_loop(via_hd, level, total)
        s = await _closed_loop(via_service, level, total)
        n = await _closed_loop(naive, level, naive_total)
        p = await _closed_loop(naive_plus, level, naive_total)
        results[level] = (h, s, n, p)
        print(f"{level:>11} | {h[0]:>6.0f} {h[1]:>7.1f} {h[2]:>7.1f} | {s[0]:>10.0f} {s[1]:>7.1f} {s[2]:>7.1f} | "
              f"{n[0]:>8.0f} {n[1]:>7.1f} {n[2]:>7.1f} | {p[0]:>9.0f} {p[2]:>7.1f} | "
              f"{h[0] / s[0]:>9.2f}x {s[0] / n[0]:>8.1f}x {s[0] / p[0]:>9.1f}x | {h[3]:>15.1f} {s[3]:>7.1f}")
    if 64 in results:
        (h, s, n, p) = results[64]
        ok = h[0] >= 200 and h[2] < 500
        print(f"goal HD at 64 concurrent (>= 200 avatars/s, p99 < 500 ms): {'met' if ok else 'NOT met'} "
              f"({h[0]:.0f}/s, p99 {h[2]:.0f} ms; {h[0] / s[0]:.2f}x the bicubic service)")
        ok = s[0] >= 10 * n[0] and s[2] < 150
        print(f"goal bicubic at 64 concurrent (>= 10x naive, p99 < 150 ms): {'met' if ok else 'NOT met'} "
              f"({s[0] / n[0]:.1f}x naive, {s[0] / p[0]:.1f}x naive+, p99 {s[2]:.0f} ms)")
    via_upscale = caller(hd_service, "upscale")
    ups = {}
    for level in (1, 4):
        ups[level] = await _closed_loop(via_upscale, level, max(args.upscale_requests, level))
        print(f"Upscale to {hd_service.limits.upscale_size} px by Real-CUGAN, {level} concurrent: "
              f"{ups[level][0]:.2f}/s, p50 {ups[level][1]:.0f} ms, p99 {ups[level][2]:.0f} ms")
    print(f"goal Upscale p50 < 1500 ms (alone): {'met' if ups[1][1] < 1500 else 'NOT met'} ({ups[1][1]:.0f} ms)")
    hd_service.close()
    service.close()
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights-dir", default="weights")
    p.add_argument("--style", default="default")
    p.add_argument("--size", type=int, default=256, help="avatar size in pixels (default 256, as the bot)")
    p.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16, 64, 256])
    p.add_argument("--rounds", type=int, default=4, help="requests per client at each level (default 4)")
    p.add_argument("--naive-max", type=int, default=256, help="cap on naive requests per level (it is slow)")
    p.add_argument("--encode-threads", type=int, default=2)
    p.add_argument("--upscale-requests", type=int, default=8, help="Upscale requests per level (default 8)")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
