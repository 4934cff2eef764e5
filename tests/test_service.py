"""The avatar service without any chat platform: validation, limits, queue, batching, cache, buttons."""

from __future__ import annotations

import asyncio
import io
import logging

import numpy as np
import pytest
from PIL import Image

from bot.actions import Action
from bot.config import Settings
from bot.errors import ErrorKind, UserError
from bot.logs import RedactingFormatter
from bot.registry import StyleRegistry
from bot.requests import AvatarRequest
from bot.service import AvatarService, ServiceLimits, StyleLoading
from gan.imaging import read_png_metadata, upscale
from gan.latents import MAX_SEED, seed_for_name
from gan.styles import StyleError
from tests.fakes.styles import make_tiny_styles


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = make_tiny_styles(tmp_path_factory.mktemp("weights"), ("default", "other"))
    reg = StyleRegistry(root, "default")
    reg.generator("default")
    return reg


def make_service(registry, clock=None, **limits) -> AvatarService:
    limits.setdefault("user_cooldown_s", 0)
    return AvatarService(registry, ServiceLimits(**limits), clock=clock or Clock())


def req(user="u1", chat="c1", platform="discord", **options) -> AvatarRequest:
    return AvatarRequest(platform, user, chat, **options)


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


async def test_a_face_is_the_same_alone_or_in_a_busy_batch(registry):
    service = make_service(registry)
    alone = await service.handle(req(seed=42))
    service_b = make_service(registry, cache_size=0)
    crowd = await asyncio.gather(*[service_b.handle(req(user=f"u{i}", seed=s))
                                   for i, s in enumerate([7, 42, 9, 1234, 5] * 4)])
    for reply in crowd[1::5]:
        assert reply.data == alone.data
    gen = registry.generator("default")
    hd = gen.generate([42], size=256)[0]  # through the style's upscaler, the distilled student
    np.testing.assert_array_equal(pixels(alone.data), hd)
    assert not np.array_equal(hd, upscale(gen.generate([42])[0], 256)), "an HD face, not a bicubic one"
    meta = read_png_metadata(alone.data)
    student = gen.upscaler("student")
    precision = {"upscaler_precision": student.precision} if student.precision != "float32" else {}
    assert meta == {"seed": "42", "style": "default", "truncation": "1", "weights_sha256": gen.weights_sha256,
                    "upscaler": "student", "upscaler_weights": student.weights_for(256), **precision, "size": "256"}
    assert meta["upscaler_weights"].startswith("student-4x@")


async def test_requests_arriving_together_share_one_generator_call(registry):
    service = make_service(registry, cache_size=0, max_batch=64)
    await service.handle(req(seed=1))  # make the batcher exist
    key = registry.resolve("default").key
    batcher = next(b for k, (_, b) in service._batchers.items() if k[0] == key)
    calls = batcher.calls
    replies = await asyncio.gather(*[service.handle(req(user=f"u{i}", seed=100 + i)) for i in range(32)])
    assert len({r.data for r in replies}) == 32
    assert batcher.calls - calls <= 2  # 32 faces in one call (two if the window split them)
    assert service.served == 33


async def test_drawing_and_encoding_never_run_on_the_event_loop(registry, monkeypatch):
    """The generator, the upscalers and the PNG/GIF writer each take milliseconds to seconds, and a
    reply's texts in the user's language a fraction of one: on the loop they would stall every other
    chat's replies and Discord's heartbeats. Every kind of request does that work on the service's
    threads."""
    import threading

    import bot.service as service_module
    from bot.replies import Reply
    from gan.inference import AvatarGenerator

    loop_thread = threading.get_ident()
    threads: dict[str, set[int]] = {"render": set(), "encode": set(), "localize": set()}

    def on_threads(kind, fn):
        def recorded(*args, **kwargs):
            threads[kind].add(threading.get_ident())
            return fn(*args, **kwargs)
        return recorded

    monkeypatch.setattr(AvatarGenerator, "render_latents", on_threads("render", AvatarGenerator.render_latents))
    monkeypatch.setattr(service_module, "build_reply", on_threads("encode", service_module.build_reply))
    monkeypatch.setattr(Reply, "localized", on_threads("localize", Reply.localized))
    service = make_service(registry, cache_size=0)
    requests = [req(user=f"u{i}", seed=i) for i in range(8)] + [
        req(user="g", seed=1, count=4), req(user="v", kind="variations", seed=2),
        req(user="up", kind="upscale", seed=3), req(user="m", kind="morph", seed=4, target=5)]
    replies = await asyncio.gather(*[service.handle(r) for r in requests])
    assert len(replies) == len(requests) and all(r.data for r in replies)
    assert all(threads.values()), "the recorded functions did the work"
    assert loop_thread not in set.union(*threads.values())


async def test_batches_wait_for_the_encoders_and_then_take_everyone_waiting():
    from concurrent.futures import ThreadPoolExecutor

    from bot.batcher import MicroBatcher

    sizes: list[int] = []
    encoders_free = asyncio.Event()

    def render(z: np.ndarray) -> np.ndarray:
        sizes.append(len(z))
        return np.zeros((len(z), 2, 2, 3), np.uint8)

    with ThreadPoolExecutor(1) as pool:
        batcher = MicroBatcher(render, pool, window_s=0, max_batch=64, ready=encoders_free.wait)
        tasks = [asyncio.create_task(batcher.render(np.zeros((1, 8)))) for _ in range(10)]
        await asyncio.sleep(0.05)
        assert sizes == []  # held back while the encoders are busy
        tasks += [asyncio.create_task(batcher.render(np.zeros((2, 8)))) for _ in range(3)]
        await asyncio.sleep(0)
        encoders_free.set()
        results = await asyncio.gather(*tasks)
    assert sizes == [16]  # everyone who arrived meanwhile, in one generator call
    assert [len(r) for r in results] == [1] * 10 + [2] * 3


async def test_names_grids_variations_upscale_morph(registry):
    service = make_service(registry)
    named = await service.handle(req(name="Alice"))
    assert read_png_metadata(named.data)["seed"] == str(seed_for_name("Alice"))
    assert dict(named.command.args)["name"] == "Alice"

    grid = await service.handle(req(seed=MAX_SEED - 1, count=2))
    assert read_png_metadata(grid.data)["seeds"] == f"{MAX_SEED - 1},0"  # seeds wrap around
    assert [a.label for a in grid.actions][:2] == ["1", "2"]

    variations = await service.handle(req(kind="variations", seed=42))
    assert pixels(variations.data).shape == (2 * 128 + 3 * 2, 2 * 128 + 3 * 2, 3)
    pick = variations.actions[2]
    single = await service.handle(AvatarRequest.from_action(pick, "telegram", "u2", "c2"))
    assert read_png_metadata(single.data)["variation"] == "3"
    assert [a.verb for a in single.actions] == ["r", "u"]

    up = await service.handle(req(kind="upscale", seed=42))
    assert up.media == "document" and pixels(up.data).shape == (512, 512, 3)
    gen = registry.generator("default")
    np.testing.assert_array_equal(pixels(up.data), gen.generate([42], size=512, upscaler="cugan")[0])
    meta = read_png_metadata(up.data)
    assert meta["upscaler"] == "cugan" and meta["size"] == "512"
    assert meta["upscaler_weights"].startswith("realcugan-4x-no-denoise@") and "+realcugan-2x-" in meta["upscaler_weights"]
    assert ("Upscaler", "Real-CUGAN") in up.fields

    morph = await service.handle(req(kind="morph", seed="42", target="Bob", truncation=0.7))
    with Image.open(io.BytesIO(morph.data)) as im:
        assert im.format == "GIF" and im.n_frames == 2 * 24 - 2
    assert dict(morph.command.args) == {"from": "42", "to": "Bob", "style": "default", "truncation": "0.7"}


@pytest.mark.parametrize("options, message", [
    (dict(seed="abc"), "seed must be a whole number from 0 to 9223372036854775807"),
    (dict(seed=-1), "seed must be a whole number"),
    (dict(seed=MAX_SEED), "seed must be a whole number"),
    (dict(seed="1.5"), "seed must be a whole number"),
    (dict(seed="9" * 5000), "seed must be a whole number"),  # no digit-limit error from int()
    (dict(count="\u00b2"), "count must be a whole number"),
    (dict(seed=1, name="Bob"), "not both"),
    (dict(name="x" * 101), "too long"),
    (dict(count=0), "count must be a whole number from 1 to 4"),
    (dict(count=5), "count must be a whole number from 1 to 4"),
    (dict(count="two"), "count must be"),
    (dict(truncation=0), "truncation must be a number from 0.05 to 1"),
    (dict(truncation=1.5), "truncation must be"),
    (dict(truncation="nan"), "truncation must be"),
    (dict(style="nope"), "Unknown style 'nope'. Available styles: default, other."),
    (dict(variation=65), "variation must be a whole number from 0 to 64"),
    (dict(count=2, variation=1), "count works only for plain avatars"),
    (dict(kind="upscale"), "Which face?"),
    (dict(kind="morph"), "Give a seed or a name for 'from'"),
])
def test_bad_options_are_refused_with_a_clear_message(registry, options, message):
    service = make_service(registry)
    with pytest.raises(UserError) as info:
        service.admit(req(**options))
    assert info.value.kind is ErrorKind.BAD_INPUT
    assert message in str(info.value)
    assert service.in_flight == 0


def test_truncation_is_rounded_and_styles_are_case_insensitive(registry):
    service = make_service(registry)
    job = service.admit(req(seed="  7 ", truncation="0.333", style="Other"))
    assert (job.plan.seed, job.plan.truncation, job.plan.style) == (7, 0.33, "other")
    job.release()


async def test_a_style_draws_at_its_measured_truncation_and_says_so_in_the_command(tmp_path):
    import json

    root = make_tiny_styles(tmp_path / "weights", ("default",))
    meta_path = root / "default" / "style.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "truncation": 0.7}))
    registry = StyleRegistry(root, "default")
    service = make_service(registry)
    plain = await service.handle(req(seed=42))
    gen = registry.generator("default")
    np.testing.assert_array_equal(pixels(plain.data), gen.generate([42], 0.7, size=256)[0])
    assert read_png_metadata(plain.data)["truncation"] == "0.7"
    assert dict(plain.command.args)["truncation"] == "0.7"
    # asking for 1 explicitly is kept, and the command names it: without it, it would mean the style's 0.7
    full = await service.handle(req(seed=42, truncation=1))
    np.testing.assert_array_equal(pixels(full.data), gen.generate([42], 1.0, size=256)[0])
    assert dict(full.command.args)["truncation"] == "1"
    service.close()


def test_cooldown_per_user_with_an_honest_wait(registry):
    clock = Clock()
    service = make_service(registry, clock, user_cooldown_s=10)
    service.admit(req(user="a", seed=1)).release()
    clock.now += 4
    with pytest.raises(UserError) as info:
        service.admit(req(user="a", seed=2))
    assert info.value.kind is ErrorKind.COOLDOWN and str(info.value) == "Slow down a little: try again in 6 s."
    service.admit(req(user="b", seed=2)).release()  # other users are not affected
    service.admit(req(user="a", platform="telegram", seed=2)).release()  # nor the same id on another platform
    clock.now += 6
    service.admit(req(user="a", seed=3)).release()


def test_per_chat_limit(registry):
    clock = Clock()
    service = make_service(registry, clock, chat_limit_per_minute=3)
    for i in range(3):
        service.admit(req(user=f"u{i}", chat="busy", seed=i)).release()
        clock.now += 1
    with pytest.raises(UserError) as info:
        service.admit(req(user="u9", chat="busy", seed=9))
    assert info.value.kind is ErrorKind.BUSY and "try again in 57 s" in str(info.value)
    service.admit(req(user="u9", chat="quiet", seed=9)).release()
    clock.now += 57  # the oldest of the three falls out of the minute
    service.admit(req(user="u9", chat="busy", seed=9)).release()


async def test_full_queue_says_busy_and_frees_up(registry):
    service = make_service(registry, queue_size=2)
    first, second = service.admit(req(user="a", seed=1)), service.admit(req(user="b", seed=2, count=4))
    with pytest.raises(UserError) as info:
        service.admit(req(user="c", seed=3))
    assert info.value.kind is ErrorKind.BUSY
    assert info.value.retry_after >= 1 and "busy drawing for others: try again in" in str(info.value)
    async with first:
        await first.run()
    async with service.admit(req(user="c", seed=3)) as third:
        assert (await third.run()).filename == "avatar-3.png"
    second.release()
    assert service.in_flight == 0


async def test_busy_estimate_follows_throughput_not_latency(registry):
    import time

    service = make_service(registry, cache_size=0)
    await service.start()
    start = time.perf_counter()
    await asyncio.gather(*[service.handle(req(user=f"u{i}", seed=500 + i)) for i in range(48)])
    wall = time.perf_counter() - start
    # Clearing 48 faces is estimated at about what it took, not 48 times one request's latency.
    assert 48 * service.seconds_per_face < 2 * wall


async def test_shutdown_refuses_new_work_and_waits_for_admitted_work(registry):
    service = make_service(registry)
    job = service.admit(req(user="a", seed=1))
    service.stop_accepting()
    with pytest.raises(UserError, match="restarting"):
        service.admit(req(user="b", seed=2))
    assert not await service.drain(timeout=0.05)

    async def answer() -> None:
        async with job:
            await job.run()

    task = asyncio.create_task(answer())
    assert await service.drain(timeout=30)
    await task


async def test_recent_results_come_from_the_cache(registry):
    service = make_service(registry)
    a = await service.handle(req(user="a", seed=77))
    b = await service.handle(req(user="b", seed=77, platform="telegram"))
    assert a is b and service.served == 1


@pytest.mark.parametrize("action", [
    Action("r", 0, "default"),
    Action("v", MAX_SEED - 1, "a" * 32, 0, 0.05, 4),
    Action("f", MAX_SEED - 1, "x-" * 16, 64, 0.33, 1),
])
def test_button_ids_carry_the_whole_state(action):
    encoded = action.encode()
    assert len(encoded.encode()) <= 64  # Telegram's callback_data limit (Discord allows 100)
    assert Action.decode(encoded) == action


@pytest.mark.parametrize("bad", ["", "av1:r:1:0:1:1", "av2:r:1:0:1:1:default", "av1:z:1:0:1:1:default",
                                 "av1:r:zzzzzzzzzzzzzz:0:1:1:default", "av1:r:1:0:7:1:default",
                                 "av1:r:1:0:1:1:../etc", "av1:r:1:x:1:1:default"])
def test_damaged_button_ids_are_refused(bad):
    with pytest.raises(ValueError):
        Action.decode(bad)


def test_settings_keep_tokens_secret(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISCORD_TOKEN", "discord-very-secret")
    monkeypatch.setenv("DISCORD_GUILD_IDS", "1, 2")
    monkeypatch.setenv("DISCORD_SHARD_COUNT", "auto")
    (tmp_path / ".env").write_text("TELEGRAM_TOKEN=123:telegram-very-secret\nQUEUE_SIZE=9\n")
    settings = Settings()
    assert settings.discord_guild_ids == [1, 2] and settings.discord_shard_count is None
    assert settings.queue_size == 9
    text = repr(settings) + str(settings) + settings.model_dump_json()
    assert "very-secret" not in text
    assert sorted(settings.secrets()) == ["123:telegram-very-secret", "discord-very-secret"]


def test_log_lines_and_tracebacks_are_redacted():
    formatter = RedactingFormatter("%(message)s", ["s3cr3t-token"])
    try:
        raise RuntimeError("request to https://api/bots3cr3t-token/getMe failed")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "token is %s", ("s3cr3t-token",),
                                   exc_info=__import__("sys").exc_info())
    text = formatter.format(record)
    assert "s3cr3t-token" not in text and text.count("[redacted]") >= 2 and "RuntimeError" in text


def test_env_example_documents_every_setting():
    from pathlib import Path

    example = (Path(__file__).resolve().parent.parent / ".env.example").read_text()
    for name in Settings.model_fields:
        assert f"{name.upper()}=" in example, f"{name.upper()} is missing from .env.example"


# -- texts within the platforms' limits, shared by both adapters (bot.text, bot.styles) ---------------

def test_texts_are_cut_to_a_limit_with_an_ellipsis():
    from bot.text import clip, echo, text_length

    assert clip("short", 10) == "short"
    assert clip("x" * 5000, 4096) == "x" * 4095 + "\N{HORIZONTAL ELLIPSIS}"
    assert text_length("\N{GRINNING FACE}") == 2  # counted as Telegram's UTF-16 units
    assert text_length(clip("\N{GRINNING FACE}" * 300, 200)) <= 200
    assert echo("a\nb   c") == "a b c"  # quoted back on one line
    assert echo("x" * 5000) == "x" * 39 + "\N{HORIZONTAL ELLIPSIS}"


def test_a_long_list_in_a_message_ends_with_and_n_more():
    from bot.text import fit

    names = [f"style-{i:02d}-" + "x" * 23 for i in range(12)]
    message = f"Unknown style 'gone'. Available styles: {', '.join(names)}."
    alert = fit(message, 200)
    assert len(alert) <= 200
    assert alert.startswith("Unknown style 'gone'. Available styles: style-00-")
    kept = alert.count("style-")
    assert alert.endswith(f", {names[kept - 1]} \N{HORIZONTAL ELLIPSIS} and {12 - kept} more.")
    assert fit(message, 1000) == message
    assert fit("no list here " * 50, 200).endswith("\N{HORIZONTAL ELLIPSIS}")


def test_typed_style_names_too_long_for_any_style_are_cut():
    from bot.styles import typed_style

    assert typed_style(None) is None
    assert typed_style("  Ink ") == "Ink"
    assert typed_style("a" * 32) == "a" * 32  # the longest valid name is untouched
    cut = typed_style("a" * 5000)
    assert cut == "a" * 39 + "\N{HORIZONTAL ELLIPSIS}"


def _desk(registry, max_upload_mb: float = 25):
    from types import SimpleNamespace

    from bot.styles import StyleDesk

    return StyleDesk(SimpleNamespace(subscribe=lambda callback: None), registry, int(max_upload_mb * 2**20))


def test_the_style_list_fits_a_message(registry):
    desk = _desk(registry)
    full = desk.list_text("telegram", "1")
    assert full == "default (default): tiny test style default\nother: tiny test style other"
    assert desk.list_text("telegram", "1", limit=4096) == full
    short = desk.list_text("telegram", "1", limit=60)
    assert short == "default (default): tiny test style default\n\N{HORIZONTAL ELLIPSIS} and 1 more"


def test_uploads_over_telegrams_download_limit_are_refused_before_downloading(registry):
    mb = 2**20
    desk = _desk(registry)  # STYLE_MAX_UPLOAD_MB=25, the default
    desk.check_upload_size(25 * mb)  # Discord: the setting
    with pytest.raises(UserError, match=r"^That file is 25\.1 MB; uploads may be at most 25 MB\.$"):
        desk.check_upload_size(25 * mb + 1)
    desk.check_upload_size(20 * mb, 20 * mb, "Telegram")
    with pytest.raises(UserError) as info:
        desk.check_upload_size(21 * mb, 20 * mb, "Telegram")
    assert str(info.value) == ("That file is 21.0 MB; Telegram lets bots download files of at most 20 MB: "
                               "send a smaller zip.")
    small = _desk(registry, max_upload_mb=10)  # a setting below the platform's limit wins
    with pytest.raises(UserError, match=r"uploads may be at most 10 MB"):
        small.check_upload_size(15 * mb, 20 * mb, "Telegram")
    small.check_upload_size(None, 20 * mb, "Telegram")  # size unknown: checked again once downloaded


def test_a_style_name_with_a_trailing_newline_is_not_valid():
    with pytest.raises(ValueError):
        Action.decode("av1:r:1:0:1:1:default\n")


# -- custom styles load off the render thread ------------------------------------------------------

WAIT_S = 120  # a bound on waiting for a thread on a busy machine; reaching it fails the test


@pytest.fixture(scope="module")
def custom_folders(tmp_path_factory):
    return make_tiny_styles(tmp_path_factory.mktemp("custom"), ("ink", "ink2", "ink3"))


def custom_registry(registry, custom_folders):
    """A fresh registry of the module's built-in styles (default loaded), with three custom styles in
    the Discord server "1", and its catalogue of custom styles."""
    from tests.test_registry import Jobs, attach

    fresh = StyleRegistry(registry.root, "default")
    fresh.generator("default")
    catalogue = Jobs()
    for name in ("ink", "ink2", "ink3"):
        catalogue.register("discord:1", name, custom_folders / name)
    attach(fresh, catalogue)
    return fresh, catalogue


async def test_a_custom_style_answers_loading_at_once_while_default_avatars_go_on(registry, custom_folders,
                                                                                 monkeypatch):
    import threading

    from gan.inference import AvatarGenerator

    reg, catalogue = custom_registry(registry, custom_folders)
    service = make_service(reg)
    started, proceed = threading.Event(), threading.Event()
    real_load = AvatarGenerator.load.__func__

    def held_load(cls, folder, *args, **kwargs):  # the real load, held at its start until the test says
        started.set()
        proceed.wait(WAIT_S)
        return real_load(cls, folder, *args, **kwargs)

    monkeypatch.setattr(AvatarGenerator, "load", classmethod(held_load))
    ink = req(user="a", chat="1", style="ink", seed=42)
    with pytest.raises(StyleLoading) as info:
        service.admit(ink)
    assert info.value.kind is ErrorKind.BUSY
    assert str(info.value) == "Style 'ink' is loading, try again in a moment."
    assert await asyncio.to_thread(started.wait, WAIT_S), "the style loads in the background"
    # While the load is held, the default style's avatars are drawn and answered.
    plain = await asyncio.wait_for(service.handle(req(user="b", chat="1", seed=7)), WAIT_S)
    assert read_png_metadata(plain.data)["style"] == "default"
    ref = reg.resolve("ink", "discord", "1")
    assert reg.loading(ref.key) and reg.loaded(ref.key) is None, "the ink load was still under way"
    with pytest.raises(StyleLoading):  # asked again meanwhile: the same answer, the same load
        service.admit(req(user="c", chat="1", style="ink", seed=42))
    proceed.set()
    await asyncio.wrap_future(reg.load(ref))
    monkeypatch.undo()
    reply = await service.handle(ink)
    expected = AvatarGenerator.load(custom_folders / "ink", upscalers=reg.upscalers).generate([42], size=256)[0]
    np.testing.assert_array_equal(pixels(reply.data), expected)
    assert read_png_metadata(reply.data)["style"] == "ink"


async def test_style_loads_per_minute_are_bounded(registry, custom_folders):
    clock = Clock()
    reg, catalogue = custom_registry(registry, custom_folders)
    service = make_service(reg, clock, style_loads_per_minute=2)
    refs = {name: reg.resolve(name, "discord", "1") for name in ("ink", "ink2", "ink3")}
    for name in refs:
        with pytest.raises(StyleLoading):
            service.admit(req(user=name, chat="1", style=name, seed=1))
    for name in ("ink", "ink2"):  # the loader takes one style at a time, in order
        await asyncio.wrap_future(reg.load(refs[name]))
    third = refs["ink3"].key
    assert not reg.loading(third) and reg.loaded(third) is None, "the third load of the minute was not started"
    with pytest.raises(StyleLoading, match="Style 'ink3' is loading, try again in a moment."):
        service.admit(req(user="again", chat="1", style="ink3", seed=1))
    assert not reg.loading(third) and reg.loaded(third) is None
    service.admit(req(user="x", chat="1", style="ink", seed=1)).release()  # loaded ones cost nothing
    clock.now += 30  # two a minute: one more after half a minute
    with pytest.raises(StyleLoading):
        service.admit(req(user="later", chat="1", style="ink3", seed=1))
    await asyncio.wrap_future(reg.load(refs["ink3"]))
    reply = await service.handle(req(user="last", chat="1", style="ink3", seed=1))
    assert read_png_metadata(reply.data)["style"] == "ink3"


async def test_built_in_styles_are_loaded_at_start(registry):
    fresh = StyleRegistry(registry.root, "default")
    await make_service(fresh).start()
    assert all(fresh.loaded(fresh.resolve(name).key) is not None for name in ("default", "other"))


async def test_a_custom_style_whose_files_changed_is_not_available(registry, custom_folders, tmp_path):
    import shutil

    reg, catalogue = custom_registry(registry, custom_folders)
    broken = tmp_path / "ink"
    shutil.copytree(custom_folders / "ink", broken)
    catalogue.register("discord:1", "ink", broken)
    shutil.copy(custom_folders / "ink2" / "generator.weights.h5", broken / "generator.weights.h5")
    service = make_service(reg)
    with pytest.raises(StyleLoading):
        service.admit(req(chat="1", style="ink", seed=1))
    ref = reg.resolve("ink", "discord", "1")
    with pytest.raises(StyleError):
        await asyncio.wrap_future(reg.load(ref))
    with pytest.raises(UserError, match="Style 'ink' is not available right now"):
        service.admit(req(user="u2", chat="1", style="ink", seed=1))
