"""Telegram inline mode end to end: ``avatarbot run`` in its own process, the real python-telegram-bot,
the fake Bot API delivering inline queries and recording ``answerInlineQuery`` and the storage-chat uploads."""

from __future__ import annotations

import pytest

from bot.inline import NOT_SET_UP, SINGLE_FACES
from tests.fakes.harness import TELEGRAM_TOKEN, BotProcess
from tests.fakes.loop_thread import LoopThread, wait_until
from tests.fakes.styles import make_tiny_styles
from tests.fakes.telegram_server import Call, FakeTelegram

STORAGE = -1001234567890  # a private channel
TG_BOT = "avatar_test_bot"
READY_S = 600  # TensorFlow's start on a busy 2-core machine


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return make_tiny_styles(tmp_path_factory.mktemp("weights"), ("default",))


class Server:
    def __init__(self) -> None:
        self.thread = LoopThread()
        self.telegram = FakeTelegram(TELEGRAM_TOKEN, TG_BOT)
        self.thread.run(self.telegram.start())

    def close(self) -> None:
        self.thread.run(self.telegram.stop())
        self.thread.stop()


class InlineBot:
    """One bot with inline mode set up; the last test restarts it on the same folder and database."""

    def __init__(self, weights, workdir) -> None:
        self.weights, self.workdir = weights, workdir
        self.server = Server()
        self.tg = self.server.telegram
        self.bot: BotProcess | None = None

    def start(self, **settings) -> BotProcess:
        self.bot = BotProcess(self.workdir, self.weights, None, self.tg, **settings)
        return self.bot.wait_ready(READY_S)


@pytest.fixture(scope="module")
def inline(weights, tmp_path_factory):
    state = InlineBot(weights, tmp_path_factory.mktemp("inline-bot"))
    try:
        state.start(telegram_cache_chat_id=STORAGE)
        yield state
    finally:
        code = state.bot.stop() if state.bot is not None else 0
        state.server.close()
    assert code == 0, state.bot.output[-3000:]


@pytest.fixture
def inline_bot(inline):
    return inline.tg


_users = iter(range(70_000, 10**9))


def ask(tg: FakeTelegram, query: str, user: int | None = None) -> Call:
    """Type ``@bot <query>`` and wait for the one answer."""
    update = tg.inline_query(query, next(_users) if user is None else user)
    return wait_until(lambda: tg.answers(update), 120, f"the answer to {query[:20]!r}")[0]


def uploads(tg: FakeTelegram) -> list[Call]:
    return tg.sent(STORAGE, ("sendPhoto",))


def photos(answer: Call) -> list[dict]:
    results = answer.json_param("results")
    assert all(r["type"] == "photo" for r in results), results
    return results


def uploaded_ids(tg: FakeTelegram) -> dict[str, bytes]:
    return {c.result["photo"][-1]["file_id"]: c.file[1] for c in uploads(tg)}


def test_a_name_gives_its_face_and_variations_as_sent_by_avatar(inline_bot):
    tg = inline_bot
    answer = ask(tg, "alice")
    results = photos(answer)
    assert [r["title"] for r in results] == ["alice"] + [f"alice, variation {i}" for i in range(1, 5)]
    assert answer.params.get("is_personal") in (False, "false", "False")
    assert int(answer.params["cache_time"]) > 0
    ids = uploaded_ids(tg)
    assert sorted(r["photo_file_id"] for r in results) == sorted(ids)  # each face uploaded once

    # The tapped picture says what /avatar says for the same face, and is the same picture.
    user = next(_users)
    tg.send_text("/avatar alice variation=2", user)
    reply = wait_until(lambda: tg.sent(user, ("sendPhoto",)), 60, "the /avatar reply")[0]
    assert results[2]["caption"] == reply.params["caption"]
    assert "/avatar alice variation=2" in results[2]["caption"]
    assert ids[results[2]["photo_file_id"]] == reply.file[1]


def test_a_number_also_gives_the_face_of_the_number_as_a_name(inline_bot):
    results = photos(ask(inline_bot, "42"))
    assert [r["title"] for r in results] == ["Seed 42"] + [f"Seed 42, variation {i}" for i in range(1, 5)] + ["42"]
    assert "/avatar 42 style=default" in results[0]["caption"]
    assert "/avatar name=42 style=default" in results[-1]["caption"]
    assert len({r["photo_file_id"] for r in results}) == len({r["id"] for r in results}) == 6


def test_a_query_asked_again_is_answered_from_the_cache(inline_bot):
    tg = inline_bot
    first = photos(ask(tg, "Dana"))
    before = len(uploads(tg))
    again = photos(ask(tg, "Dana"))
    assert again == first
    assert len(uploads(tg)) == before


def test_a_burst_of_typing_gets_one_answer_for_the_last_query(inline_bot):
    tg = inline_bot
    user = next(_users)
    before = len(uploads(tg))
    ids = tg.send_many([tg.inline_query_update(q, user) for q in ("c", "ca", "car", "caro", "carol")])
    last = wait_until(lambda: tg.answers(ids[-1]), 60, "the answer to the last query")[0]
    assert [r["title"] for r in photos(last)][0] == "carol"
    assert [tg.answers(i) for i in ids[:-1]] == [[]] * 4
    assert len(uploads(tg)) - before == 5  # only carol's faces were drawn


@pytest.mark.parametrize("query, says", [
    ("x" * 300, "too long"),  # Telegram sends at most 256 characters; longer is still handled
    ("alice colour=blue", "Unknown option"),
    ("count=4 alice", str(SINGLE_FACES)),
    ("style=nosuchstyle", "name or a number"),
])
def test_bad_queries_get_one_line_and_draw_nothing(inline_bot, query, says):
    tg = inline_bot
    before = len(uploads(tg))
    answer = ask(tg, query)
    assert answer.json_param("results") == []
    assert says in answer.json_param("button")["text"]
    assert len(uploads(tg)) == before


def test_odd_text_and_an_empty_query(inline_bot):
    tg = inline_bot
    results = photos(ask(tg, "  Zoë 🌸 <b>&amp;  "))
    assert results[0]["title"] == "Zoë 🌸 <b>&amp;"
    ask(tg, "erin")  # at least one strip is in the cache
    before = len(uploads(tg))
    empty = ask(tg, "")
    shown = photos(empty)
    assert shown and set(r["photo_file_id"] for r in shown) <= set(uploaded_ids(tg))
    assert empty.params.get("is_personal") in (True, "true", "True")
    assert len(uploads(tg)) == before  # random faces come from the cache


def test_cache_survives_a_restart_and_without_a_cache_chat_inline_says_so(inline):
    tg = inline.tg
    first = photos(ask(tg, "frank"))
    assert inline.bot.stop() == 0
    count = len(uploads(tg))

    inline.start()  # no TELEGRAM_CACHE_CHAT_ID
    answer = ask(tg, "frank")
    assert answer.json_param("results") == [] and answer.json_param("button")["text"] == str(NOT_SET_UP)
    assert inline.bot.stop() == 0

    inline.start(telegram_cache_chat_id=STORAGE)
    assert photos(ask(tg, "frank")) == first
    assert len(uploads(tg)) == count
