"""The avatar service: one request type for every platform, validated, limited, batched and cached.

Adapters turn a platform event into an ``AvatarRequest`` and call::

    job = service.admit(request)        # instant: validation, cooldown, chat limit, queue (UserError)
    async with job:                     # holds a queue slot until the reply has been sent
        ...acknowledge the user...
        reply = await job.run()         # the faces, drawn off the event loop, encoded
        ...send reply...
        job.sent()                      # delivered: counted as answered, with its latency (bot.metrics)

This module imports neither discord nor telegram.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial

from bot.batcher import MicroBatcher
from bot.errors import RESTARTING, ErrorKind, UserError
from bot.i18n import _
from bot.limits import Cooldown, RateLimit
from bot.metrics import Metrics
from bot.registry import StyleRef, StyleRegistry
from bot.replies import Reply, build_reply
from bot.requests import COLOUR_KINDS, UPSCALE_WITH, AvatarRequest, Plan, make_plan
from gan.styles import StyleError

log = logging.getLogger(__name__)

WORKER_NICE = 10  # render and encoder threads yield the CPU to the event loop thread
LOADING_RETRY_S = 5.0  # what "try again in a moment" means when a style is loading


class StyleLoading(UserError):
    """The style's generator is not in memory yet: it is loading (or loads are over their per-minute
    bound). Adapters show it like any ``UserError``; the user tries again in a moment."""

    def __init__(self, style: str) -> None:
        super().__init__(ErrorKind.BUSY, _("Style '{style}' is loading, try again in a moment.").format(style=style),
                         LOADING_RETRY_S)


class TokenBucket:
    """At most ``per_minute`` takes a minute on average, and as many at once after a quiet minute."""

    def __init__(self, per_minute: int, clock=time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._tokens = self.capacity
        self._last = clock()

    def take(self) -> bool:
        """Take one token if there is one."""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


@dataclass
class ServiceLimits:
    """The service's knobs (see ``bot.config.Settings`` for their meaning and defaults)."""

    output_size: int = 256
    upscale_size: int = 512
    output_upscaler: str = ""  # "": each style's own
    max_grid: int = 4
    morph_frames: int = 24
    user_cooldown_s: float = 3.0
    chat_limit_per_minute: int = 120
    queue_size: int = 256
    batch_window_ms: float = 4.0
    max_batch: int = 64
    cache_size: int = 256
    encode_threads: int = 2
    style_loads_per_minute: int = 6

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
        self._admitted = time.perf_counter()
        self._outcome = "failed"  # until run() refuses or the adapter reports the reply sent

    @property
    def media(self) -> str:
        return self.plan.media

    async def run(self) -> Reply:
        """Draw and encode the reply (the generator runs off the event loop), its texts in the
        request's language (the cache keeps replies without a language)."""
        try:
            return await self._service._run(self.plan, self.request.locale)
        except UserError as exc:
            self._outcome = exc.kind.value
            raise

    def sent(self) -> None:
        """The adapter delivered the reply (for the metrics: an answered request and its latency)."""
        self._outcome = "ok"

    def release(self) -> None:
        """Give the queue slot back (idempotent)."""
        if not self._released:
            self._released = True
            self._service._release(self)
            self._service.metrics.request_done(self.request.platform, self._outcome,
                                               time.perf_counter() - self._admitted)

    async def __aenter__(self) -> "Job":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class AvatarService:
    """Validation, limits, the bounded queue, micro-batching and the cache, for every platform."""

    def __init__(self, registry: StyleRegistry, limits: ServiceLimits | None = None,
                 clock=time.monotonic, metrics: Metrics | None = None) -> None:
        self.registry = registry
        self.metrics = metrics or Metrics()
        self.limits = limits or ServiceLimits()
        self._cooldown = Cooldown(self.limits.user_cooldown_s, clock)
        self._chat_limit = RateLimit(self.limits.chat_limit_per_minute, 60.0, clock)
        self._render_pool = ThreadPoolExecutor(1, thread_name_prefix="render", initializer=_background_priority)
        self._encode_pool = ThreadPoolExecutor(self.limits.encode_threads, thread_name_prefix="encode",
                                               initializer=_background_priority)
        self._batchers: dict[tuple, tuple[object, MicroBatcher]] = {}
        self._loads = TokenBucket(self.limits.style_loads_per_minute, clock)
        self._encoding = 0  # replies handed to the encoder threads and not yet back
        self._encoders_free = asyncio.Condition()
        # A reply per plan, kept without a language (under None) and rendered in each language asked for.
        self._cache: OrderedDict[tuple, dict[str | None, Reply]] = OrderedDict()
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
        """Load and warm up the default style and the upscalers off the event loop (raises ``StyleError``),
        then the other built-in styles in the registry's loader thread (kept in memory for good).

        The Upscale button's upscaler is loaded here too, so that the first click does not wait for it.
        The default style loads on the render thread: TensorFlow's thread pools start with the first
        model and keep the priority of the thread that started them.
        """
        loop = asyncio.get_running_loop()
        ref = self.registry.resolve(None)
        gen = await loop.run_in_executor(self._render_pool, self.registry.generator, ref)
        for name in self.registry.builtin_names:
            try:
                await asyncio.wrap_future(self.registry.load(self.registry.resolve(name)))
            except StyleError as exc:
                log.error("built-in style %r could not be loaded: %s", name, exc)
        plan = Plan("avatar", ref.name, 0, 1.0, self.limits.output_size, count=1, ref=ref)
        z = plan.latents(gen.latent_dim)
        await loop.run_in_executor(self._render_pool, gen.prepare_upscaler, self.limits.upscale_size, UPSCALE_WITH)
        if gen.colours("hair"):  # the first colour edit imports SciPy (about 0.4 s): not in a user's wait
            await loop.run_in_executor(self._encode_pool, gen.edit, z, gen.colours("hair")[0])
        start = time.perf_counter()
        await loop.run_in_executor(self._render_pool, gen.render_latents, z, plan.face_size)
        self.seconds_per_face = max(self.seconds_per_face, time.perf_counter() - start)
        log.info("avatar service ready: default style %r, upscaler %s", ref.name, gen.default_upscaler)

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

    @property
    def accepting(self) -> bool:
        """False from ``stop_accepting`` on: the bot is shutting down."""
        return self._accepting

    @property
    def render_queue_faces(self) -> int:
        """Faces waiting for the render thread, all styles together."""
        return sum(batcher.pending_faces for _, batcher in self._batchers.values())

    async def ping_render(self, timeout: float) -> bool:
        """Whether the render thread runs a trivial job within ``timeout`` seconds (it waits behind
        the batches already queued); False once the service is closed."""
        try:
            future = self._render_pool.submit(time.perf_counter)
        except RuntimeError:  # the pool is shut down
            return False
        try:
            await asyncio.wait_for(asyncio.wrap_future(future), timeout)
            return True
        except asyncio.TimeoutError:
            future.cancel()  # a stuck thread must not pile up pings
            return False

    # -- admission --------------------------------------------------------------------------------

    def admit(self, request: AvatarRequest, cooldown: bool = True) -> Job:
        """Validate and admit a request at once, or raise ``UserError`` saying why not. ``cooldown=False``
        neither checks nor restarts the user's cooldown: for the other faces of a strip one user asked for
        at once, which together count as one request."""
        try:
            return self._admit(request, cooldown)
        except UserError as exc:
            self.metrics.request_done(request.platform, exc.kind.value)
            raise

    def _admit(self, request: AvatarRequest, cooldown: bool = True) -> Job:
        plan = self.plan(request)
        if not self._accepting:
            raise UserError(ErrorKind.BUSY, RESTARTING, 60)
        user_key = f"{request.platform}:user:{request.user_id}"
        chat_key = f"{request.platform}:chat:{request.chat_id}"
        wait = self._cooldown.wait_time(user_key) if cooldown else 0.0
        if wait > 0:
            raise UserError.cooldown(wait)
        wait = self._chat_limit.wait_time(chat_key)
        if wait > 0:
            raise UserError.busy(wait, _("This chat has asked for a lot of avatars"))
        if len(self._active) >= self.limits.queue_size:
            raise UserError.busy(self.backlog_seconds())
        if plan.ref.custom:
            self._start_loading(plan.ref)  # not charged to the cooldown: "try again in a moment" holds
        if cooldown:
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
        """Check every option of a request and work out exactly what to draw (``bot.requests``)."""
        lim = self.limits
        plan = make_plan(request, self.registry, lim.output_size, lim.upscale_size, lim.max_grid, lim.morph_frames,
                         self._colours)
        if plan.upscaler is None and lim.output_upscaler:
            plan = replace(plan, upscaler=lim.output_upscaler)
        return plan

    def _colours(self, ref: StyleRef) -> dict[str, tuple[str, ...]]:
        """The hair and eye colours a style can draw, from its loaded generator's colour directions. A
        style not in memory (a custom one, evicted or never drawn in) is loaded first: ``StyleLoading``,
        and the user's next try is checked against its directions."""
        if self.registry.loaded(ref.key) is None:
            self._start_loading(ref)  # raises unless it was loaded meanwhile (built-ins: by start())
        gen = self.registry.loaded(ref.key)
        return {kind: gen.colours(kind) for kind in COLOUR_KINDS}

    # -- drawing ----------------------------------------------------------------------------------

    def _batcher(self, plan: Plan, gen) -> MicroBatcher:
        """The micro-batcher of a style, upscaler and face size: its calls draw and upscale at once."""
        key = (plan.ref.key, plan.upscaler, plan.face_size)
        entry = self._batchers.get(key)
        if entry is None or entry[0] is not gen:
            # Generators the registry has let go of (deleted or least recently used styles) go too.
            for stale in [k for k, (g, b) in self._batchers.items()
                          if self.registry.loaded(k[0]) is not g and not b.pending_faces]:
                del self._batchers[stale]
            render = partial(gen.render_latents, size=plan.face_size, upscaler=plan.upscaler)
            batcher = MicroBatcher(render, self._render_pool, self.limits.batch_window_ms / 1000,
                                   self.limits.max_batch, ready=self._encoders_ready,
                                   on_batch=self.metrics.batch_rendered)
            self._batchers[key] = entry = (gen, batcher)
        return entry[1]

    async def _generator(self, ref: StyleRef):
        """The style's generator, never loaded on the render thread. A custom style not in memory (evicted
        since its request was admitted) raises ``StyleLoading``; a built-in one (loaded by ``start``, unless
        it failed there or ``start`` was not called) is loaded in the registry's loader thread and waited for."""
        gen = self.registry.loaded(ref.key)
        self.metrics.cache_lookup("generator", gen is not None)
        if gen is not None:
            return gen
        if ref.custom:
            self._start_loading(ref)
        return await asyncio.wrap_future(self.registry.load(ref))

    def _start_loading(self, ref: StyleRef) -> None:
        """Return if a custom style's generator is in memory. Else start loading it in the registry's loader
        thread, within ``style_loads_per_minute``, and raise ``StyleLoading`` at once: a load takes a second
        or more, and no one else's avatar waits for it. A style whose files were refused is a ``UserError``."""
        if self.registry.loaded(ref.key) is not None:
            return
        if self.registry.load_error(ref.key) is not None:
            raise UserError.bad_input(_("Style {style} is not available right now; an admin may have deleted or "
                                        "be replacing it.").format(style=repr(ref.name)))
        if not self.registry.loading(ref.key) and self._loads.take():
            log.info("loading custom style %r from %s", ref.name, ref.path)
            self.registry.load(ref)
        raise StyleLoading(ref.name)

    async def _encoders_ready(self) -> None:
        """Return once the encoders are idle: the next batch is drawn when the last one is sent."""
        async with self._encoders_free:
            await self._encoders_free.wait_for(lambda: self._encoding == 0)

    async def _run(self, plan: Plan, locale: str) -> Reply:
        loop = asyncio.get_running_loop()
        gen = await self._generator(plan.ref)
        self.registry.mark_used(plan.ref)  # in memory: custom styles unused for long can be pruned
        key = (plan, gen.weights_sha256)
        cached = self._cache.get(key)
        self.metrics.cache_lookup("reply", cached is not None)
        if cached is not None:
            self._cache.move_to_end(key)
            return _in_language(cached, locale)
        z = plan.latents(gen.latent_dim)
        if plan.hair or plan.eyes:
            # The edit moves each latent on its own, before the batch: a face's bytes do not depend on
            # the requests it is drawn with. A few ms of NumPy and SciPy, kept off the event loop.
            z = await loop.run_in_executor(self._encode_pool, gen.edit, z, plan.hair, plan.eyes)
        images = await self._batcher(plan, gen).render(z)
        self._encoding += 1
        try:
            reply, localized = await loop.run_in_executor(self._encode_pool, _build_in_language, plan, images, gen,
                                                          locale)
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
            self._cache[key] = {None: reply, locale: localized}
            while len(self._cache) > self.limits.cache_size:
                self._cache.popitem(last=False)
        return localized


def _build_in_language(plan: Plan, images, gen, locale: str) -> tuple[Reply, Reply]:
    """The reply with lazy texts (what the cache keeps for every language) and the same in ``locale``.
    Rendering a reply's labels and fields is about 0.2 ms of Python: done here, on an encoder thread,
    it leaves the event loop free for the other chats (``python -m benchmarks.serve``)."""
    reply = build_reply(plan, images, gen)
    return reply, reply.localized(locale)


def _in_language(entry: dict[str | None, Reply], locale: str) -> Reply:
    """A cached reply's texts in ``locale`` (``Reply.localized``), rendered once per language."""
    if locale not in entry:
        entry[locale] = entry[None].localized(locale)
    return entry[locale]


def _background_priority() -> None:
    """Drawing and encoding are batch work; the event loop thread is the latency-critical one. On
    Linux a thread has its own nice value (threads TensorFlow starts from here inherit it)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICE)
    except (AttributeError, OSError) as exc:  # not Linux, or not permitted: run at normal priority
        log.debug("worker thread priority unchanged: %s", exc)
