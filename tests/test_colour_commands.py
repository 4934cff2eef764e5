"""Hair and eye colour in the chat: ``/avatar seed:42 hair:blue eyes:red`` on Discord, ``/avatar 42
hair=blue eyes=red`` on Telegram, and the hair colour buttons under a face, end to end through the
real discord.py and python-telegram-bot against the fake servers (``avatarbot run`` in its own process).

The bot runs without its reply cache, so every request here is drawn afresh: a repeated request or one
inside a burst really goes through the generator again."""

from __future__ import annotations

import re
import shlex
import shutil

import numpy as np
import pytest

from gan.colours import EYE_COLOURS, HAIR_COLOURS
from gan.imaging import read_png_metadata
from tests.fakes.harness import running_bot
from tests.fakes.styles import make_tiny_styles
from tests.test_bot_e2e import answer, button, is_ephemeral, picture, pixels, text_of, tg_reply

_users = iter(range(30_000_000, 10**9))


def new_user() -> int:
    return next(_users)


@pytest.fixture(scope="module")
def weights(coloured_style, tmp_path_factory):
    """``default`` with hair and eye directions, ``other`` without any."""
    root = tmp_path_factory.mktemp("colour-weights")
    shutil.copytree(coloured_style / "default", root / "default")
    return make_tiny_styles(root, ("other",))


@pytest.fixture(scope="module")
def generator(weights):
    from gan.inference import AvatarGenerator

    return AvatarGenerator.load(weights / "default")


@pytest.fixture(scope="module")
def colour_bot(weights, tmp_path_factory):
    with running_bot(tmp_path_factory.mktemp("colour-bot"), weights, cache_size=0) as running:
        yield running


def discord_png(dc, options: dict) -> bytes:
    return picture(answer(dc.slash("avatar", options, user_id=new_user())))[1]


def telegram_png(tg, text: str) -> bytes:
    user = new_user()
    tg.send_text(text, user)
    call = tg_reply(tg, user)
    assert call.method == "sendPhoto", call.text
    return call.file[1]


def test_a_coloured_face_is_named_everywhere_and_the_same_on_both_platforms(colour_bot, generator, weights,
                                                                             tmp_path):
    bot, dc, tg = colour_bot
    ans = answer(dc.slash("avatar", {"seed": "42", "hair": "blue", "eyes": "red"}, user_id=new_user()))
    name, data = picture(ans)
    embed = ans.embeds[0]
    assert name == "avatar-42-blue-hair-red-eyes.png"
    assert embed["title"] == "Seed 42, blue hair, red eyes"
    assert "`/avatar seed:42 style:default hair:blue eyes:red`" in embed["description"]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Hair"] == "blue" and fields["Eyes"] == "red"

    user = new_user()
    tg.send_text("/avatar 42 hair=Blue eyes=red", user)  # any case, as typed
    call = tg_reply(tg, user)
    assert call.file[1] == data, "the same options give the same PNG on both platforms"
    assert "hair blue · eyes red" in call.text and "/avatar 42 style=default hair=blue eyes=red" in call.text

    plain = discord_png(dc, {"seed": "42"})
    assert not np.array_equal(pixels(plain), pixels(data)), "the colours changed nothing"
    np.testing.assert_array_equal(pixels(data), generator.generate([42], size=256, hair="blue", eyes="red")[0])
    meta = read_png_metadata(data)
    assert meta["hair"] == "blue" and meta["eyes"] == "red"
    assert meta["directions_sha256"] == generator.directions.sha256
    cli = "avatarbot generate --seed 42 --style default --hair blue --eyes red"
    assert embed["footer"]["text"] == f"weights {generator.weights_sha256[:12]} · {cli}"
    assert "hair" not in read_png_metadata(plain)

    # the chat command and the command line it names draw it again, pixel for pixel
    assert discord_png(dc, {"seed": "42", "style": "default", "hair": "blue", "eyes": "red"}) == data
    from bot.cli import build_parser

    args = build_parser().parse_args(shlex.split(cli)[1:]
                                     + ["--weights-dir", str(weights), "-o", str(tmp_path / "cli.png")])
    assert args.func(args) == 0
    np.testing.assert_array_equal(pixels((tmp_path / "cli.png").read_bytes()), pixels(data))


def test_a_coloured_face_is_the_same_inside_a_burst_of_other_requests(colour_bot):
    bot, dc, tg = colour_bot
    alone = discord_png(dc, {"seed": "7", "hair": "green"})
    others = [{"seed": str(500 + i), **({"hair": HAIR_COLOURS[i % 9]} if i % 3 else {}),
               **({"eyes": EYE_COLOURS[i % 6]} if i % 2 else {})} for i in range(24)]
    others[11] = {"seed": "7", "hair": "green"}
    payloads = [dc.slash_payload("avatar", o, user_id=new_user()) for o in others]
    t_users = [new_user() for _ in range(12)]
    tg.send_many([tg.message_update(f"/avatar {7 if i == 5 else 900 + i} hair=green", u)
                  for i, u in enumerate(t_users)])
    interactions = dc.dispatch_many(payloads)
    assert picture(answer(interactions[11], 180))[1] == alone
    assert tg_reply(tg, t_users[5], timeout=180).file[1] == alone
    for interaction in interactions:
        assert picture(answer(interaction, 180))
    batched = [int(n) for n in re.findall(r"rendered \d+ faces for (\d+) requests", bot.output)]
    assert max(batched) > 1, "the burst was never batched"


def test_unknown_colours_and_styles_without_colours_get_one_clear_line_and_no_picture(colour_bot):
    bot, dc, tg = colour_bot
    user = new_user()
    tg.send_text("/avatar 42 hair=teal", user)
    call = tg_reply(tg, user)
    assert call.method == "sendMessage"
    assert call.text == ("Unknown hair colour 'teal'. Hair colours in style 'default': "
                         "black, brown, blonde, red, pink, blue, green, purple, white.")
    tg.send_text("/avatar 42 style=other eyes=red", user)
    call = tg_reply(tg, user, 1)
    assert call.method == "sendMessage" and call.text.startswith("Style 'other' has no colour controls")
    tg.send_text("/morph 1 2 hair=blue", user)
    assert "own colours" in tg_reply(tg, user, 2).text
    assert not tg.sent(user, ("sendPhoto", "sendAnimation", "sendDocument"))

    interaction = dc.slash("avatar", {"seed": "42", "style": "other", "hair": "blue"}, user_id=new_user())
    ans = answer(interaction)
    assert is_ephemeral(ans) and not interaction.originals
    assert text_of(ans).startswith("Style 'other' has no colour controls") and "\n" not in text_of(ans)

    options = {o["name"]: o for o in next(c for c in dc.commands["global"] if c["name"] == "avatar")["options"]}
    assert [c["value"] for c in options["hair"]["choices"]] == list(HAIR_COLOURS)
    assert [c["value"] for c in options["eyes"]["choices"]] == list(EYE_COLOURS)


def test_a_hair_colour_button_redraws_the_face_with_that_hair(colour_bot):
    bot, dc, tg = colour_bot
    first = answer(dc.slash("avatar", {"seed": "42", "eyes": "red"}, user_id=new_user()))
    rows = [[c["label"] for c in row["components"]] for row in first.payload["components"]]
    assert rows[0] == ["\N{GAME DIE} Reroll", "\N{SPARKLES} Variations", "\N{LEFT-POINTING MAGNIFYING GLASS} Upscale"]
    assert [label.split()[-1] for row in rows[1:] for label in row] == list(HAIR_COLOURS)
    assert [len(row) for row in rows] == [3, 5, 4]

    blue = answer(dc.click(first, button(first, "blue"), user_id=new_user()))
    assert picture(blue)[1] == discord_png(dc, {"seed": "42", "hair": "blue", "eyes": "red"})
    assert blue.embeds[0]["title"] == "Seed 42, blue hair, red eyes"
    labels = [label.split()[-1] for label in blue.labels[3:]]
    assert "blue" not in labels and labels[-1] == "original"
    back = answer(dc.click(blue, button(blue, "original"), user_id=new_user()))
    assert picture(back)[1] == picture(first)[1]

    # a grid's pick buttons keep its colour
    grid = answer(dc.slash("avatar", {"seed": "100", "count": 2, "hair": "pink"}, user_id=new_user()))
    picked = answer(dc.click(grid, button(grid, "2"), user_id=new_user()))
    meta = read_png_metadata(picture(picked)[1])
    assert meta["seed"] == "101" and meta["hair"] == "pink"

    # Telegram: the shipped hair colours in two rows of buttons under the face's own row
    user = new_user()
    tg.send_text("/avatar 42", user)
    face = tg_reply(tg, user)
    markup = face.json_param("reply_markup")["inline_keyboard"]
    assert [len(row) for row in markup] == [4, 5, 4]
    assert all(len(b["callback_data"].encode()) <= 64 for b in face.buttons)
    tg.press(face, button(face, "blue"), user)
    redrawn = tg_reply(tg, user, 1)
    assert redrawn.method == "sendPhoto" and "/avatar 42 style=default hair=blue" in redrawn.text
    assert redrawn.file[1] == telegram_png(tg, "/avatar 42 hair=blue")

    tg.send_text("/avatar 42 style=other", user)  # a style without colour directions: no colour row
    other = tg_reply(tg, user, 2)
    assert [len(row) for row in other.json_param("reply_markup")["inline_keyboard"]] == [4]


def test_button_ids_carry_colours_within_telegrams_64_bytes():
    from bot.actions import Action
    from gan.latents import MAX_SEED

    longest = Action("f", MAX_SEED - 1, "x" * 32, 64, 0.05, 16, hair="white", eyes="pink")
    for action in (longest, Action("r", 5, "default", eyes="red"), Action("u", 5, "default", hair="black")):
        assert len(action.encode().encode()) <= 64 and Action.decode(action.encode()) == action
    assert Action.decode("av1:f:5:0:0.7:1:default").truncation == 0.7  # ids from before colours still work
    for damaged in ("av1:fz-:5:0:1:1:default", "av1:f--:5:0:1:1:default", "av1:f5:5:0:1:1:default"):
        with pytest.raises(ValueError):
            Action.decode(damaged)
