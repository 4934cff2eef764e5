"""The avatar service: one request type for every platform, validated, limited, batched and cached.

Adapters turn a platform event into an ``AvatarRequest`` and call::

    job = service.admit(request)        # instant: validation, cooldown, chat limit, queue (UserError)
    async with job:                     # holds a queue slot until the reply has been sent
        ...acknowledge the user...
        reply = await job.run()         # the faces, drawn off the event loop, encoded
        ...send reply...

This module imports neither discord nor telegram.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from bot.actions import Action
from bot.batcher import MicroBatcher
from bot.errors import ErrorKind, UserError
from bot.limits import Cooldown, RateLimit
from bot.registry import StyleRef, StyleRegistry
from gan.imaging import avatar_png, gif_bytes, grid, png_bytes
from gan.latents import MAX_SEED, latents_for_seeds, seed_for_name, slerp, variation_latents
from gan.styles import StyleError

log = logging.getLogger(__name__)

Kind = Literal["avatar", "variations", "upscale", "morph"]
KINDS = ("avatar", "variations", "upscale", "morph")
VARIATIONS = 4  # faces shown by the Variations button
VARIATION_STRENGTH = 0.4
MAX_NAME = 100
WORKER_NICE = 10  # render and encoder threads yield the CPU to the event loop thread
_INT = re.compile(r"^\s*[+-]?\d+\s*$")


def looks_like_seed(text: str) -> bool:
    """Whether free text means a seed (an integer) rather than a name."""
    return bool(_INT.match(text))


@dataclass(frozen=True)
class AvatarRequest:
    """What a user asked for, on any platform, as typed (the service validates it).

    ``seed`` and ``target`` (the end of a morph) take an integer or its text; for a morph both also
    take a name. ``user_id`` and ``chat_id`` are the platform's ids; for Discord the chat is the
    server (or the DM channel).
    """

    platform: str
    user_id: str
    chat_id: str
    kind: Kind = "avatar"
    seed: int | str | None = None
    name: str | None = None
    target: int | str | None = None
    style: str | None = None
    count: int | str = 1
    truncation: float | str = 1.0
    variation: int | str = 0

    @classmethod
    def from_action(cls, action: Action, platform: str, user_id: str, chat_id: str) -> "AvatarRequest":
        """The request a button click makes."""
        base = cls(platform, user_id, chat_id, style=action.style, truncation=action.truncation)
        if action.verb == "r":
            return replace(base, count=action.count)
        if action.verb == "v":
            return replace(base, kind="variations", seed=action.seed)
        if action.verb == "u":
            return replace(base, kind="upscale", seed=action.seed, variation=action.variation)
        if action.verb == "m":
            return replace(base, kind="morph", seed=action.seed)
        return replace(base, seed=action.seed, variation=action.variation)


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


@dataclass(frozen=True)
class Plan:
    """A validated request: exactly which faces to draw and how to deliver them (``ref``: the resolved
    style, whose folder and weights hash pick the generator)."""

    kind: str
    style: str
    seed: int
    truncation: float
    size: int
    name: str | None = None
    variation: int = 0
    count: int = 1
    target: int | None = None
    target_name: str | None = None
    frames: int = 0
    ref: StyleRef | None = None

    @property
    def cost(self) -> int:
        """Faces to draw."""
        return {"variations": VARIATIONS, "morph": self.frames}.get(self.kind, self.count)

    @property
    def media(self) -> Literal["photo", "document", "animation"]:
        return {"upscale": "document", "morph": "animation"}.get(self.kind, "photo")  # type: ignore[return-value]

    def latents(self, dim: int) -> np.ndarray:
        """The (cost, dim) latents of the faces, from the public seed contract."""
        psi = self.truncation
        if self.kind == "variations":
            return variation_latents(self.seed, dim, VARIATIONS, VARIATION_STRENGTH, psi)
        if self.kind == "morph":
            ends = latents_for_seeds([self.seed, self.target], dim)
            return (slerp(ends[0], ends[1], self.frames) * np.float32(psi)).astype(np.float32)
        if self.variation:
            return variation_latents(self.seed, dim, self.variation, VARIATION_STRENGTH, psi)[-1:]
        return latents_for_seeds([(self.seed + i) % MAX_SEED for i in range(self.count)], dim, psi)


@dataclass
class ServiceLimits:
    """The service's knobs (see ``bot.config.Settings`` for their meaning and defaults)."""

    output_size: int = 256
    upscale_size: int = 512
    max_grid: int = 4
    morph_frames: int = 24
    user_cooldown_s: float = 3.0
    chat_limit_per_minute: int = 120
    queue_size: int = 256
    batch_window_ms: float = 4.0
    max_batch: int = 64
    cache_size: int = 256
    encode_threads: int = 2

    @classmethod
    def from_settings(cls, settings) -> "ServiceLimits":
        return cls(**{f: getattr(settings, f) for f in cls.__dataclass_fields__})


class Job:
    """An admitted request. ``async with job`` keeps its queue slot until the reply is sent."""

    def __init__(self, service: "AvatarService", request: AvatarRequest, plan: Plan) -> None:
        self.request = request
        self.plan = plan
        self._service = service
        self._released = False

    @property
    def media(self) -> str:
        return self.plan.media

    async def run(self) -> Reply:
        """Draw and encode the reply (the generator runs off the event loop)."""
        return await self._service._run(self.plan)

    def release(self) -> None:
        """Give the queue slot back (idempotent)."""
        if not self._released:
            self._released = True
            self._service._release(self)

    async def __aenter__(self) -> "Job":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class AvatarService:
    """Validation, limits, the bounded queue, micro-batching and the cache, for every platform."""

    def __init__(self, registry: StyleRegistry, limits: ServiceLimits | None = None,
                 clock=time.monotonic) -> None:
        self.registry = registry
        self.limits = limits or ServiceLimits()
        self._cooldown = Cooldown(self.limits.user_cooldown_s, clock)
        self._chat_limit = RateLimit(self.limits.chat_limit_per_minute, 60.0, clock)
        self._render_pool = ThreadPoolExecutor(1, thread_name_prefix="render", initializer=_background_priority)
        self._encode_pool = ThreadPoolExecutor(self.limits.encode_threads, thread_name_prefix="encode",
                                               initializer=_background_priority)
        self._batchers: dict[str, tuple[object, MicroBatcher]] = {}
        self._encoding = 0  # replies handed to the encoder threads and not yet back
        self._encoders_free = asyncio.Condition()
        self._cache: OrderedDict[tuple, Reply] = OrderedDict()
        self._active: set[Job] = set()
        self._active_cost = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._accepting = True
        # Smoothed seconds per face while the service is busy (1 / throughput), for the "busy, try again in
        # N s" estimate; measured as replies come out. Not a request's latency: a batch of 64 faces takes
        # 80 ms from start to end, but the service clears a face every 1.2 ms.
        self.seconds_per_face = 0.02
        self._last_reply: float | None = None
        self.served = 0

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load and warm up the default style off the event loop (raises ``StyleError``)."""
        loop = asyncio.get_running_loop()
        ref = self.registry.resolve(None)
        gen = await loop.run_in_executor(self._render_pool, self.registry.generator, ref)
        plan = Plan("avatar", ref.name, 0, 1.0, self.limits.output_size, count=1, ref=ref)
        start = time.perf_counter()
        await loop.run_in_executor(self._render_pool, gen.render_latents, plan.latents(gen.latent_dim))
        self.seconds_per_face = max(self.seconds_per_face, time.perf_counter() - start)
        log.info("avatar service ready: default style %r", ref.name)

    def stop_accepting(self) -> None:
        """Refuse new requests politely from now on; admitted ones still finish."""
        self._accepting = False

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until every admitted request has been answered; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            log.warning("%d requests still in flight after %.0f s", len(self._active), timeout or 0)
            return False

    def close(self) -> None:
        """Stop the worker threads."""
        self._render_pool.shutdown(wait=False, cancel_futures=True)
        self._encode_pool.shutdown(wait=False, cancel_futures=True)

    @property
    def in_flight(self) -> int:
        return len(self._active)

    # -- admission --------------------------------------------------------------------------------

    def admit(self, request: AvatarRequest) -> Job:
        """Validate and admit a request at once, or raise ``UserError`` saying why not."""
        plan = self.plan(request)
        if not self._accepting:
            raise UserError(ErrorKind.BUSY, "I'm restarting right now: please try again in a minute.", 60)
        user_key = f"{request.platform}:user:{request.user_id}"
        chat_key = f"{request.platform}:chat:{request.chat_id}"
        wait = self._cooldown.wait_time(user_key)
        if wait > 0:
            raise UserError.cooldown(wait)
        wait = self._chat_limit.wait_time(chat_key)
        if wait > 0:
            raise UserError.busy(wait, "This chat has asked for a lot of avatars")
        if len(self._active) >= self.limits.queue_size:
            raise UserError.busy(self.backlog_seconds())
        self._cooldown.hit(user_key)
        self._chat_limit.hit(chat_key)
        job = Job(self, request, plan)
        self._active.add(job)
        self._active_cost += plan.cost
        self._idle.clear()
        return job

    def backlog_seconds(self) -> float:
        """An honest estimate of how long the admitted work takes to clear."""
        return max(1.0, self._active_cost * self.seconds_per_face)

    def _release(self, job: Job) -> None:
        self._active.discard(job)
        self._active_cost -= job.plan.cost
        if not self._active:
            self._idle.set()

    async def handle(self, request: AvatarRequest) -> Reply:
        """Admit, draw and release in one call (for callers without a platform reply to send)."""
        async with self.admit(request) as job:
            return await job.run()

    # -- validation -------------------------------------------------------------------------------

    def plan(self, request: AvatarRequest) -> Plan:
        """Check every option of a request and work out exactly what to draw."""
        lim = self.limits
        if request.kind not in KINDS:
            raise UserError.bad_input(f"Unknown request {request.kind!r}.")
        ref = self.registry.resolve(request.style, request.platform, request.chat_id)
        style = ref.name
        psi = _truncation(request.truncation)
        if request.kind == "morph":
            seed, name = _seed_or_name(request.seed, "from")
            if request.target is None or str(request.target).strip() == "":
                target, target_name = secrets.randbelow(MAX_SEED), None
            else:
                target, target_name = _seed_or_name(request.target, "to")
            return Plan("morph", style, seed, psi, min(lim.output_size, 256), name=name, target=target,
                        target_name=target_name, frames=lim.morph_frames, ref=ref)
        if request.seed is not None and request.name is not None and str(request.name).strip():
            raise UserError.bad_input("Give a seed or a name, not both.")
        if request.name is not None and str(request.name).strip():
            seed, name = _name_seed(request.name), str(request.name).strip()
        elif request.seed is None or str(request.seed).strip() == "":
            if request.kind != "avatar":
                raise UserError.bad_input("Which face? Give a seed.")
            seed, name = secrets.randbelow(MAX_SEED), None
        else:
            seed, name = _seed(request.seed), None
        variation = _int_option(request.variation, "variation", 0, 64)
        count = _int_option(request.count, "count", 1, lim.max_grid)
        if count > 1 and (variation or request.kind != "avatar"):
            raise UserError.bad_input("count works only for plain avatars (no variation).")
        if request.kind == "variations":
            return Plan("variations", style, seed, psi, lim.output_size, name=name, ref=ref)
        size = lim.upscale_size if request.kind == "upscale" else lim.output_size
        return Plan(request.kind, style, seed, psi, size, name=name, variation=variation, count=count, ref=ref)

    # -- drawing ----------------------------------------------------------------------------------

    def _batcher(self, key: str, gen) -> MicroBatcher:
        entry = self._batchers.get(key)
        if entry is None or entry[0] is not gen:
            # Generators the registry has let go of (deleted or least recently used styles) go too.
            for stale in [k for k, (g, b) in self._batchers.items()
                          if self.registry.loaded(k) is not g and not b.pending_faces]:
                del self._batchers[stale]
            batcher = MicroBatcher(gen.render_latents, self._render_pool, self.limits.batch_window_ms / 1000,
                                   self.limits.max_batch, ready=self._encoders_ready)
            self._batchers[key] = entry = (gen, batcher)
        return entry[1]

    async def _generator(self, ref: StyleRef):
        """The style's generator, loaded in the render thread on first use."""
        gen = self.registry.loaded(ref.key)
        if gen is not None:
            return gen
        try:
            return await asyncio.get_running_loop().run_in_executor(self._render_pool, self.registry.generator, ref)
        except StyleError as exc:
            if not ref.custom:
                raise
            log.warning("custom style %s could not be loaded: %s", ref.path, exc)
            raise UserError.bad_input(f"Style {ref.name!r} is not available right now; "
                                      "an admin may have deleted or be replacing it.") from None

    async def _encoders_ready(self) -> None:
        """Return once the encoders are idle: the next batch is drawn when the last one is sent."""
        async with self._encoders_free:
            await self._encoders_free.wait_for(lambda: self._encoding == 0)

    async def _run(self, plan: Plan) -> Reply:
        loop = asyncio.get_running_loop()
        gen = await self._generator(plan.ref)
        key = (plan, gen.weights_sha256)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        images = await self._batcher(plan.ref.key, gen).render(plan.latents(gen.latent_dim))
        self._encoding += 1
        try:
            reply = await loop.run_in_executor(self._encode_pool, _build_reply, plan, images, gen)
        finally:
            self._encoding -= 1
            async with self._encoders_free:
                self._encoders_free.notify_all()
        now = time.perf_counter()
        if self._last_reply is not None and len(self._active) > 1:  # busy since the last reply
            self.seconds_per_face = 0.9 * self.seconds_per_face + 0.1 * (now - self._last_reply) / max(1, plan.cost)
        self._last_reply = now
        self.served += 1
        if self.limits.cache_size:
            self._cache[key] = reply
            while len(self._cache) > self.limits.cache_size:
                self._cache.popitem(last=False)
        return reply


def _background_priority() -> None:
    """Drawing and encoding are batch work; the event loop thread is the latency-critical one. On
    Linux a thread has its own nice value (threads TensorFlow starts from here inherit it)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICE)
    except (AttributeError, OSError) as exc:  # not Linux, or not permitted: run at normal priority
        log.debug("worker thread priority unchanged: %s", exc)


# -- option parsing -------------------------------------------------------------------------------

def _seed(value: int | str) -> int:
    text = str(value).strip()
    if not looks_like_seed(text) or not 0 <= int(text) < MAX_SEED:
        raise UserError.bad_input(f"The seed must be a whole number from 0 to {MAX_SEED - 1}.")
    return int(text)


def _name_seed(name: str) -> int:
    name = str(name).strip()
    if len(name) > MAX_NAME:
        raise UserError.bad_input(f"That name is too long (at most {MAX_NAME} characters).")
    return seed_for_name(name)


def _seed_or_name(value: int | str | None, what: str) -> tuple[int, str | None]:
    if value is None or str(value).strip() == "":
        raise UserError.bad_input(f"Give a seed or a name for '{what}'.")
    text = str(value).strip()
    if looks_like_seed(text):
        return _seed(text), None
    return _name_seed(text), text


def _int_option(value: int | str, what: str, lo: int, hi: int) -> int:
    text = str(value).strip()
    if not looks_like_seed(text) or not lo <= int(text) <= hi:
        raise UserError.bad_input(f"{what} must be a whole number from {lo} to {hi}.")
    return int(text)


def _truncation(value: float | str) -> float:
    try:
        psi = float(str(value).strip())
    except ValueError:
        psi = math.nan
    if not 0.05 <= psi <= 1.0:  # also refuses NaN
        raise UserError.bad_input("truncation must be a number from 0.05 to 1 (lower: more typical faces).")
    return round(psi, 2)


# -- replies (built in an encoder thread) ------------------------------------------------------------

def _face_args(plan: Plan) -> list[tuple[str, str]]:
    args = [("name", plan.name)] if plan.name else [("seed", str(plan.seed))]
    if plan.variation:
        args.append(("variation", str(plan.variation)))
    return args


def _common_args(plan: Plan) -> list[tuple[str, str]]:
    args = [("style", plan.style)]
    if plan.truncation != 1.0:
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


def _build_reply(plan: Plan, images: np.ndarray, gen) -> Reply:
    meta = gen.metadata(plan.seed, plan.truncation)
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
        return Reply("upscale", "document", f"avatar-{plan.seed}{suffix}-{plan.size}px.png", data, title,
                     tuple(_fields(plan)) + (("Size", f"{plan.size} px"),), command, weights_sha256=sha)
    face = dict(variation=plan.variation, **act)
    actions = [Action("r", plan.seed, **act), Action("v", plan.seed, **face), Action("u", plan.seed, **face),
               Action("m", plan.seed, **face)]
    if plan.variation:  # variations and morphs start from a seed's own face
        actions = [a for a in actions if a.verb in "ru"]
    return Reply("avatar", "photo", f"avatar-{plan.seed}{suffix}.png", data, title, tuple(_fields(plan)),
                 command, actions=tuple(actions), weights_sha256=sha)
