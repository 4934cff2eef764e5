"""Custom styles end to end: ``avatarbot run`` in its own process, real discord.py and
python-telegram-bot against the fake servers, real training workers on a tiny default style."""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from bot.progress import format_size
from gan.imaging import read_png_metadata
from tests.conftest import INCEPTION_WEIGHTS, integrity, zip_of, make_image_folder
from tests.fakes.discord_server import MANAGE_GUILD, ChannelMessage, FakeDiscord
from tests.fakes.harness import BotProcess, Servers, running_bot
from tests.fakes.loop_thread import wait_until
from tests.fakes.styles import make_tiny_styles
from tests.fakes.telegram_server import Call
from tests.test_bot_e2e import answer, is_ephemeral, new_user, picture, text_of, tg_reply
from training.style_store import folder_size

GUILD, OTHER_GUILD = 555, 556
JOB_WAIT_S = 240  # generous bounds on a busy machine; reaching one fails the test, nothing is timed
ADMIN = MANAGE_GUILD | 2248473465835073
# A 4-step job sends one sample grid (at its last step) before the style's own grid; a long job that
# a test cancels sends none, so no sample grids (each recomputes the EMA generator's BatchNorm
# statistics over thousands of faces) take the CPU from the bot while the test talks to it.
FAST = dict(style_train_steps=4, style_min_steps=1, style_batch_size=4, style_checkpoint_every=5,
            style_sample_every=1000, style_progress_interval_s=0, style_gate="off",
            # the tests keep both cores busy: an idle-priority worker could wait there for minutes
            style_train_priority="normal")


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return make_tiny_styles(tmp_path_factory.mktemp("weights"), ("default",))


@pytest.fixture(scope="module")
def uploads(tmp_path_factory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("uploads")
    good = make_image_folder(root / "good", 40, seed=7)
    few = make_image_folder(root / "few", 5, seed=3)
    return {"good": zip_of(good),
            "few": zip_of(few),
            "slip": zip_of(few, {"../../escaped.png": (good / "0000.jpg").read_bytes()})}


TG_OWNER = 4242


@pytest.fixture(scope="module")
def style_bot(weights, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("style-bot")
    with running_bot(workdir, weights, bot_admin_ids=TG_OWNER, **FAST) as (bot, dc, tg):
        yield bot, dc, tg, workdir
    assert "Traceback" not in bot.output, "every failure was expected and answered, none crashed"
    assert integrity(workdir / "data" / "avatarbot.db") == "ok"
    assert not list(workdir.rglob("escaped.png")), "nothing is written outside a job's folder"


def posts_with(dc: FakeDiscord, channel: int, pattern: str) -> list[ChannelMessage]:
    return [m for m in dc.posts(channel) if re.search(pattern, m.content)]


def discord_train(dc: FakeDiscord, name: str, data: bytes, channel: int, guild: int = GUILD, **options):
    return dc.slash("style train", {"name": name, "zip": dc.attachment(f"{name}.zip", data), **options},
                    user_id=new_user(), guild_id=guild, channel_id=channel, permissions=ADMIN)


# -- Discord ------------------------------------------------------------------------------------------

def test_discord_admin_trains_a_style_that_only_their_server_sees(style_bot, uploads):
    bot, dc, tg, workdir = style_bot
    channel = 7001

    # Who may: Manage Server only, and only in a server; checked in code, refused politely.
    member = dc.slash("style train", {"name": "ink", "zip": dc.attachment("ink.zip", uploads["good"])},
                      user_id=new_user(), channel_id=channel)
    ans = answer(member)
    assert is_ephemeral(ans) and "Manage Server" in text_of(ans)
    dm = answer(dc.slash("style list", {}, user_id=new_user(), guild_id=None, permissions=ADMIN))
    assert is_ephemeral(dm) and "belong to a server" in text_of(dm)

    # Refused uploads: too big (before downloading it), a zip-slip entry; each with its reason.
    big = dc.attachment("big.zip", uploads["good"], size=30 * 2**20)
    ans = answer(dc.slash("style train", {"name": "ink", "zip": big}, user_id=new_user(), channel_id=channel,
                          permissions=ADMIN))
    assert is_ephemeral(ans) and "at most 25 MB" in text_of(ans)
    assert not [p for p in dc.downloads if big["id"] in p], "a file known to be too big is not downloaded"
    slip = discord_train(dc, "ink", uploads["slip"], channel)
    assert "Upload refused" in text_of(answer(slip)) and "unsafe path" in text_of(answer(slip))

    # An admin trains "ink": the summary, then one progress message edited as it goes, then the result.
    train = discord_train(dc, "ink", uploads["good"], channel)
    ans = answer(train)
    assert train.callbacks[0]["type"] == 5 and train.acknowledged_after < 3.0  # deferred at once
    assert re.search(r"Training style 'ink' \(4 steps\) from your upload: kept 40 images\.", text_of(ans))
    ready = wait_until(lambda: posts_with(dc, channel, r"Style 'ink' is ready: try"), JOB_WAIT_S, "the style")
    assert ready[0].content == "Style 'ink' is ready: try /avatar style:ink here."
    assert ready[0].latest.files and read_png_metadata(ready[0].latest.files[0][1]) is not None
    progress = dc.posts(channel)[0]
    assert progress is not ready[0] and len(dc.posts(channel)) == 2, [m.content for m in dc.posts(channel)]
    texts = [v.content for v in progress.versions]
    assert any(re.search(r"Training 'ink' \[[#-]{12}\] \d+% - step \d/4", t) for t in texts), texts
    assert texts[-1] == "Style 'ink' is ready."
    assert any(v.files and v.files[0][0] == "samples.png" for v in progress.versions), "a sample grid"

    # The style draws in this server, and nowhere else.
    ans = answer(dc.slash("avatar", {"seed": "42", "style": "ink"}, user_id=new_user()))
    meta = read_png_metadata(picture(ans)[1])
    assert meta["style"] == "ink" and "`/avatar seed:42 style:ink`" in text_of(ans)
    default_sha = read_png_metadata(picture(answer(dc.slash("avatar", {"seed": "42"}, user_id=new_user())))[1])
    assert meta["weights_sha256"] != default_sha["weights_sha256"]
    other = answer(dc.slash("avatar", {"seed": "42", "style": "ink"}, user_id=new_user(), guild_id=OTHER_GUILD))
    assert is_ephemeral(other) and "Unknown style 'ink'. Available styles: default." in text_of(other)

    # The server's list (with what its custom styles take on disk), status and default style.
    listed = text_of(answer(dc.slash("style list", {}, user_id=new_user(), permissions=ADMIN)))
    assert "**default** (default)" in listed and "**ink** (custom)" in listed
    on_disk = format_size(folder_size(workdir / "data" / "styles" / "discord" / str(GUILD) / "ink"))
    assert listed.endswith(f"\nCustom styles here: 1 style, {on_disk}"), listed
    status = text_of(answer(dc.slash("style status", {}, user_id=new_user(), permissions=ADMIN)))
    assert status == "Style 'ink' is ready."
    ans = answer(dc.slash("style default", {"name": "ink"}, user_id=new_user(), permissions=ADMIN))
    assert "'ink' is now the default style here." in text_of(ans)
    plain = answer(dc.slash("avatar", {"seed": "7"}, user_id=new_user()))
    assert read_png_metadata(picture(plain)[1])["style"] == "ink"
    elsewhere = answer(dc.slash("avatar", {"seed": "7"}, user_id=new_user(), guild_id=OTHER_GUILD))
    assert read_png_metadata(picture(elsewhere)[1])["style"] == "default"

    # Names are unique per server; built-in names are reserved; delete frees the name.
    again = text_of(answer(discord_train(dc, "ink", uploads["good"], channel)))
    assert "A style named 'ink' already exists here" in again
    builtin = text_of(answer(discord_train(dc, "default", uploads["good"], channel)))
    assert "built-in style" in builtin
    ans = answer(dc.slash("style delete", {"name": "ink"}, user_id=new_user(), permissions=ADMIN))
    assert text_of(ans) == "Style 'ink' deleted."
    gone = answer(dc.slash("avatar", {"seed": "7", "style": "ink"}, user_id=new_user()))
    assert "Unknown style 'ink'" in text_of(gone)
    listed = text_of(answer(dc.slash("style list", {}, user_id=new_user(), permissions=ADMIN)))
    assert "ink" not in listed and "Custom styles here" not in listed
    assert read_png_metadata(picture(answer(dc.slash("avatar", {"seed": "7"}, user_id=new_user())))[1])[
        "style"] == "default"
    synced = {c["name"]: c for c in dc.commands["global"]}
    subcommands = {o["name"]: o for o in synced["style"]["options"]}
    assert set(subcommands) == {"train", "list", "status", "cancel", "delete", "default"}
    assert all(o.get("description") for s in subcommands.values() for o in s.get("options", []))


# -- Telegram -----------------------------------------------------------------------------------------

def test_telegram_group_admin_trains_a_style_for_that_chat(style_bot, uploads):
    bot, dc, tg, workdir = style_bot
    group, other_group = -1_000_777, -1_000_778
    admin, member = new_user(), new_user()
    tg.set_admin(group, admin)

    # Who may: the group's admins (getChatMember), in a private chat the bot's owners.
    tg.send_document("ink.zip", uploads["good"], member, chat_id=group, caption="/train ink")
    assert "only this group's admins" in tg_reply(tg, group).text
    stranger = new_user()
    tg.send_document("ink.zip", uploads["good"], stranger, caption="/train ink")
    assert "only the bot's owners" in tg_reply(tg, stranger).text
    owner_chat = len(tg.sent(TG_OWNER))
    tg.send_document("few.zip", uploads["few"], TG_OWNER, caption="/train ink")
    refused = tg_reply(tg, TG_OWNER, owner_chat).text
    assert "Upload refused" in refused and "only 5 usable images; at least 20" in refused
    # One upload a minute per person (STYLE_UPLOAD_COOLDOWN_S), refused or not.
    tg.send_document("few.zip", uploads["few"], TG_OWNER, caption="/train ink")
    assert re.fullmatch(r"You can send one training upload every 1 min; please wait \d+ s before sending "
                        r"another\.", tg_reply(tg, TG_OWNER, owner_chat + 1).text)

    # The admin replies /train to a zip sent earlier.
    before = len(tg.sent(group))
    document = tg.send_document("ink.zip", uploads["good"], admin, chat_id=group)
    tg.reply_text("/train ink", admin, group, document)
    started = wait_until(lambda: [c for c in tg.sent(group)[before:] if c.text.startswith("Training style")],
                         60, "the summary")
    assert re.search(r"Training style 'ink' \(4 steps\) from your upload: kept 40 images\.", started[0].text)

    def final() -> list[Call]:
        return [c for c in tg.sent(group) if c.method == "sendPhoto" and "is ready" in c.text]

    ready = wait_until(final, JOB_WAIT_S, "the style")
    assert ready[0].text == "Style 'ink' is ready: try /avatar style=ink here."
    edits = [c for c in tg.calls_to("editMessageText") if c.chat_id == str(group)]
    assert len({c.params["message_id"] for c in edits}) == 1, "one progress message, edited"
    assert any(re.search(r"Training 'ink' \[[#-]{12}\] \d+% - step \d/4", c.text) for c in edits)
    assert edits[-1].text == "Style 'ink' is ready."
    samples = [c for c in tg.sent(group) if c.method == "sendPhoto" and c.file[0] == "samples.png"]
    assert len(samples) >= 2  # a sample grid now and then, and the style's grid

    before = len(tg.sent(group))
    tg.send_text("/avatar 42 style=ink", new_user(), chat_id=group)
    call = tg_reply(tg, group, before)
    assert call.method == "sendPhoto" and read_png_metadata(call.file[1])["style"] == "ink"
    tg.send_text("/avatar 42 style=ink", new_user(), chat_id=other_group)
    assert "Unknown style 'ink'" in tg_reply(tg, other_group).text
    before = len(tg.sent(group))
    tg.send_text("/styles", member, chat_id=group)
    assert "ink (custom)" in tg_reply(tg, group, before).text
    before = len(tg.sent(group))
    tg.send_text("/style_delete ink", member, chat_id=group)
    assert "only this group's admins" in tg_reply(tg, group, before).text
    commands = tg.calls_to("setMyCommands")[-1].params["commands"]
    assert all(f'"{c}"' in commands for c in ("train", "style_status", "style_cancel", "style_delete",
                                               "style_default"))

    # The group is upgraded to a supergroup, a new chat id, while a style trains there: its styles, its
    # default style and the job go with it.
    before = len(tg.sent(group))
    tg.send_text("/style_default ink", admin, chat_id=group)
    assert tg_reply(tg, group, before).text == "'ink' is now the default style here."
    trainer = new_user()  # another admin: the first one's upload cooldown may still run
    tg.set_admin(group, trainer)
    before = len(tg.sent(group))
    tg.send_document("sea.zip", uploads["good"], trainer, chat_id=group, caption="/train sea 2000")
    wait_until(lambda: [c for c in tg.sent(group)[before:] if "Training style 'sea' (2000 steps)" in c.text], 60,
               "the summary")
    supergroup = -1_000_000_000_777
    tg.migrate_group(group, supergroup, admin)
    db = workdir / "data" / "avatarbot.db"
    wait_until(lambda: rows(db, "SELECT scope FROM jobs WHERE name = 'sea'") == [(f"telegram:{supergroup}",)], 60,
               "the job to move")
    assert rows(db, "SELECT scope FROM styles WHERE name = 'ink' AND scope LIKE 'telegram:%'") == [
        (f"telegram:{supergroup}",)]
    tg.send_text("/styles", member, chat_id=supergroup)
    listed = tg_reply(tg, supergroup).text
    on_disk = format_size(folder_size(workdir / "data" / "styles" / "telegram" / str(group) / "ink"))
    assert "ink (default, custom)" in listed and listed.endswith(f"Custom styles here: 1 style, {on_disk}")
    before = len(tg.sent(supergroup))
    tg.send_text("/avatar 42", new_user(), chat_id=supergroup)
    assert read_png_metadata(tg_reply(tg, supergroup, before).file[1])["style"] == "ink"
    progress = wait_until(lambda: [c for c in tg.sent(supergroup) if c.text.startswith("Training 'sea' [")],
                          JOB_WAIT_S, "the job's progress in the supergroup")
    assert progress[0].method == "sendMessage", "a new progress message, edited from then on"
    before = len(tg.sent(supergroup))
    tg.send_text("/style_cancel", admin, chat_id=supergroup)
    assert wait_until(lambda: [c for c in tg.sent(supergroup)[before:] if "was cancelled" in c.text], 60,
                      "the cancel")
    before = len(tg.sent(group))
    tg.send_text("/avatar 42 style=ink", new_user(), chat_id=group)
    assert "Unknown style 'ink'" in tg_reply(tg, group, before).text


def test_long_style_names_are_quoted_back_cut(style_bot, uploads):
    bot, dc, tg, workdir = style_bot
    cut = "x" * 39 + "\N{HORIZONTAL ELLIPSIS}"  # a name far past any style's, quoted back at a sane length

    # Discord: within a message's 2000 characters.
    long = "x" * 3000
    ans = answer(dc.slash("style delete", {"name": long}, user_id=new_user(), permissions=ADMIN))
    assert text_of(ans) == f"There is no custom style named '{cut}' here."
    ans = answer(dc.slash("style default", {"name": long}, user_id=new_user(), permissions=ADMIN))
    assert text_of(ans) == f"Unknown style '{cut}'."
    ans = answer(dc.slash("style train", {"name": long, "zip": dc.attachment("few.zip", uploads["few"])},
                          user_id=new_user(), channel_id=7010, permissions=ADMIN))
    assert text_of(ans).startswith(f"Invalid style name '{cut}': use 1-32 lowercase letters")

    # Telegram: within a message's 4096 characters (a user's message holds at most 4096).
    before = len(tg.sent(TG_OWNER))
    tg.send_text("/style_delete " + "x" * 4082, TG_OWNER)
    assert tg_reply(tg, TG_OWNER, before).text == f"There is no custom style named '{cut}' here."


def test_a_telegram_file_over_the_bot_apis_20_mb_is_refused_before_downloading(style_bot, uploads):
    """Bots download at most 20 MB through the Bot API: on Telegram that is the cap, though the default
    STYLE_MAX_UPLOAD_MB is 25."""
    bot, dc, tg, workdir = style_bot
    before, downloads = len(tg.sent(TG_OWNER)), len(tg.calls_to("getFile"))
    tg.send_document("big.zip", uploads["few"], TG_OWNER, caption="/train big", file_size=21 * 2**20)
    assert tg_reply(tg, TG_OWNER, before).text == ("That file is 21.0 MB; Telegram lets bots download files of "
                                                   "at most 20 MB: send a smaller zip.")
    assert len(tg.calls_to("getFile")) == downloads, "a file known to be too big is not downloaded"


# -- one bot per database --------------------------------------------------------------------------

def test_a_second_bot_on_the_same_database_exits_and_leaves_the_first_ones_job_alone(style_bot, weights, uploads,
                                                                                     tmp_path):
    bot, dc, tg, workdir = style_bot
    channel = 7003
    data = workdir / "data"
    db = data / "avatarbot.db"
    train = discord_train(dc, "long", uploads["good"], channel, steps=2000)
    assert "(2000 steps)" in text_of(answer(train))
    wait_until(lambda: re.search(r"step [1-9]\d*/2000", dc.posts(channel)[0].content) if dc.posts(channel) else None,
               JOB_WAIT_S, "the job to train")
    job = rows(db, "SELECT id, status, attempts, pid, run_dir FROM jobs WHERE name = 'long'")[0]
    assert job[1] == "running" and job[3]
    # What a bot's start-up cleans: a folder of no job, a half-deleted one, a half-installed style.
    leftovers = [data / "jobs" / "job-0123abcd", data / "jobs" / ".trash-job-0123abce-1a2b3c4d",
                 data / "styles" / "discord" / str(GUILD) / ".incoming-999"]
    for folder in leftovers:
        folder.mkdir(parents=True)
        (folder / "file").write_bytes(b"kept")
    second = BotProcess(tmp_path / "second", weights, dc, None, database_path=db, styles_dir=data / "styles", **FAST)
    try:
        wait_until(lambda: second.proc.poll() is not None or "serving on" in second.output, 180,
                   "the second bot to give up")
    finally:
        code = second.stop(timeout=30)
    assert code == 2, second.output[-3000:]
    assert second.output.splitlines() == [
        f"avatarbot: error: another avatarbot is already running on {db} (pid {bot.proc.pid}); "
        "stop it first, or give this one its own DATABASE_PATH"]
    assert all((folder / "file").read_bytes() == b"kept" for folder in leftovers)
    assert (workdir / job[4]).parent.is_dir()  # relative to where the first bot runs
    os.kill(job[3], 0)  # the first bot's worker still trains
    assert rows(db, "SELECT id, status, attempts, pid, run_dir FROM jobs WHERE name = 'long'") == [job]
    for folder in leftovers:
        shutil.rmtree(folder)
    answer(dc.slash("style cancel", {}, user_id=new_user(), channel_id=channel, permissions=ADMIN))
    wait_until(lambda: rows(db, "SELECT status FROM jobs WHERE name = 'long'") == [("cancelled",)], 60,
               "the job to be cancelled")


# -- restarts -----------------------------------------------------------------------------------------

def test_a_job_survives_a_bot_restart_and_registers_once(weights, uploads, tmp_path, monkeypatch):
    servers = Servers()
    dc = servers.discord
    channel = 7002
    settings = dict(FAST, style_checkpoint_every=10, style_sample_every=1000, database_path=tmp_path / "db" / "a.db",
                    styles_dir=tmp_path / "styles")
    with monkeypatch.context() as patch:  # its own process group, as a shell starts a command
        patch.setattr(subprocess, "Popen", functools.partial(subprocess.Popen, start_new_session=True))
        bot = BotProcess(tmp_path / "first", weights, dc, None, **settings)
    bot.wait_ready()
    try:
        train = discord_train(dc, "sea", uploads["good"], channel, steps=200)
        assert "(200 steps)" in text_of(answer(train))

        def mid_job() -> bool:
            posts = dc.posts(channel)
            return bool(posts) and bool(re.search(r"step (1\d|[2-9]\d)/200", posts[0].content))

        wait_until(mid_job, JOB_WAIT_S, "the job to pass step 10")
        worker = rows(settings["database_path"], "SELECT pid FROM jobs")[0][0]
        assert os.getsid(worker) == worker != os.getsid(bot.proc.pid), "the worker has a session of its own"
        os.killpg(bot.proc.pid, signal.SIGINT)  # Ctrl+C: the whole foreground group, the worker is not in it
        assert bot.proc.wait(90) == 0, bot.output[-3000:]
        bot.stop()
        assert "paused at step" in bot.output and "stopped unexpectedly" not in bot.output
        edited_before = len(dc.posts(channel)[0].versions)
        assert rows(settings["database_path"], "SELECT status, attempts FROM jobs") == [("queued", 0)]
        assert integrity(settings["database_path"]) == "ok"

        bot = BotProcess(tmp_path / "second", weights, dc, None, **settings).wait_ready()
        ready = wait_until(lambda: posts_with(dc, channel, r"Style 'sea' is ready: try"), JOB_WAIT_S, "the style")
        assert len(dc.posts(channel)) == 2, "the restarted bot edits the same progress message"
        steps = [int(m.group(1)) for v in dc.posts(channel)[0].versions[edited_before:]
                 if (m := re.search(r"step (\d+)/200", v.content))]
        assert steps and steps[0] >= 10, f"resumed from its checkpoint, not from the start: {steps[:5]}"
        assert ready[0].content == "Style 'sea' is ready: try /avatar style:sea here."
        ans = answer(dc.slash("avatar", {"seed": "1", "style": "sea"}, user_id=new_user()))
        assert read_png_metadata(picture(ans)[1])["style"] == "sea"
    finally:
        code = bot.stop()
        servers.close()
    assert code == 0 and "Traceback" not in bot.output
    db = settings["database_path"]
    assert rows(db, "SELECT scope, name FROM styles") == [(f"discord:{GUILD}", "sea")]
    assert rows(db, "SELECT status FROM jobs") == [("succeeded",)]
    assert integrity(db) == "ok"


# -- the quality gate ---------------------------------------------------------------------------------

@pytest.mark.skipif(not INCEPTION_WEIGHTS.exists(), reason="shared Inception weights not present")
def test_a_style_further_from_the_pictures_than_the_baseline_waits_for_an_admin_to_publish_it(
        weights, uploads, tmp_path):
    # The gate compares with the uploaded pictures themselves (STYLE_GATE_BASELINE): no style beats them.
    pictures = make_image_folder(tmp_path / "pictures", 40, seed=7)
    servers = Servers()
    dc, tg = servers.discord, servers.telegram
    settings = dict(FAST, style_gate="on", style_gate_inception_weights=INCEPTION_WEIGHTS, style_gate_samples=16,
                    style_gate_baseline=pictures, style_upload_cooldown_s=0)
    bot = BotProcess(tmp_path / "bot", weights, dc, tg, **settings).wait_ready()
    db = tmp_path / "bot" / "data" / "avatarbot.db"
    try:
        # Discord: the final message gives the figures and holds the style back, with two buttons.
        channel = 7004
        assert "(4 steps)" in text_of(answer(discord_train(dc, "ink", uploads["good"], channel)))
        held = wait_until(lambda: posts_with(dc, channel, r"Style 'ink' came out further"), JOB_WAIT_S, "the style")
        message = held[0].latest
        assert re.search(r"closer to your pictures by 0\.\d\d times than the default style \(KID \d\.\d{4}; the "
                         r"default style's \d\.\d{4}\)\. It is not published", message.content), message.content
        assert message.labels == ["Publish", "Discard"]
        assert dc.posts(channel)[0].content.startswith("Style 'ink' is trained but held back")
        ratio = float(re.search(r"by (\d\.\d\d) times", message.content).group(1))
        assert rows(db, "SELECT pending, json_extract(gate, '$.ratio') FROM styles WHERE name = 'ink'") == [(1, ratio)]
        # Members cannot draw in it, nor press the buttons; /style list shows it as held back.
        refused = answer(dc.slash("avatar", {"seed": "42", "style": "ink"}, user_id=new_user()))
        assert "Unknown style 'ink'" in text_of(refused)
        listed = text_of(answer(dc.slash("style list", {}, user_id=new_user(), permissions=ADMIN)))
        assert "ink (held back: not published yet)" in listed and "**ink** (custom)" not in listed
        publish, discard = message.custom_ids
        member = answer(dc.click(message, publish, user_id=new_user(), guild_id=GUILD))
        assert is_ephemeral(member) and "Manage Server" in text_of(member)
        assert rows(db, "SELECT pending FROM styles WHERE name = 'ink'") == [(1,)]
        assert held[0].latest.labels == ["Publish", "Discard"], "a member's press leaves the buttons"
        # An admin publishes it: from then on everyone draws in it.
        published = answer(dc.click(message, publish, user_id=new_user(), guild_id=GUILD, permissions=ADMIN))
        assert text_of(published) == "Style 'ink' is published: members can draw in it now."
        # The buttons have done their work: they come off the message, which keeps its figures.
        wait_until(lambda: held[0].latest.labels == [], 30, "the buttons to come off")
        assert held[0].content == message.content
        ans = answer(dc.slash("avatar", {"seed": "42", "style": "ink"}, user_id=new_user()))
        assert read_png_metadata(picture(ans)[1])["style"] == "ink"
        again = answer(dc.click(message, discard, user_id=new_user(), guild_id=GUILD, permissions=ADMIN))
        assert "no longer waiting to be published" in text_of(again)

        # Telegram: a group admin's style is held back the same way; Discard deletes it.
        group, admin, member_id = -1_000_901, new_user(), new_user()
        tg.set_admin(group, admin)
        tg.send_document("sea.zip", uploads["good"], admin, chat_id=group, caption="/train sea")
        final = wait_until(lambda: [c for c in tg.sent(group) if c.method == "sendPhoto"
                                    and "came out further" in c.text], JOB_WAIT_S, "the style")[0]
        assert [b["text"] for b in final.buttons] == ["Publish", "Discard"]
        discard = final.buttons[1]["callback_data"]
        folder = Path(rows(db, "SELECT path FROM styles WHERE name = 'sea'")[0][0])
        before = len(tg.sent(group))
        tg.press(final, discard, member_id)
        assert "only this group's admins" in tg_reply(tg, group, before).text
        before = len(tg.sent(group))
        tg.press(final, discard, admin)
        assert tg_reply(tg, group, before).text == "Style 'sea' discarded."
        cleared = wait_until(lambda: tg.calls_to("editMessageReplyMarkup"), 30, "the buttons to come off")
        assert str(cleared[0].params["message_id"]) == str(final.result["message_id"])
        assert not cleared[0].params.get("reply_markup")
        assert rows(db, "SELECT name FROM styles WHERE name = 'sea'") == []
        assert not (tmp_path / "bot" / folder).exists()
    finally:
        code = bot.stop()
        servers.close()
    assert code == 0 and "Traceback" not in bot.output, bot.output[-3000:]
    assert integrity(db) == "ok"
