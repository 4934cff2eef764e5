"""Telegram inline mode end to end: ``avatarbot run`` in its own process, the real python-telegram-bot,
the fake Bot API delivering inline queries and chosen results and recording ``answerInlineQuery`` and the
storage-chat uploads; the bot's ``/metrics`` tells when it has taken a chosen result in."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.inline import NOT_SET_UP, SINGLE_FACES
from tests.fakes.harness import BotProcess, Servers, free_port
from tests.fakes.loop_thread import wait_until
from tests.fakes.styles import make_tiny_styles
from tests.fakes.telegram_server import Call, FakeTelegram

STORAGE = -1001234567890  # a private channel
READY_S = 600  # TensorFlow's start on a busy 2-core machine


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return make_tiny_styles(tmp_path_factory.mktemp("weights"), ("default",))


class InlineBot:
    """One bot with inline mode set up; the last test restarts it on the same folder and database."""

    def __init__(self, weights, workdir) -> None:
        self.weights, self.workdir = weights, workdir
        self.server = Servers()
        self.tg = self.server.telegram
        self.bot: BotProcess | None = None
        self.metrics = ""  # the first bot's metrics endpoint

    def start(self, **settings) -> BotProcess:
        self.bot = BotProcess(self.workdir, self.weights, None, self.tg, **settings)
        return self.bot.wait_ready(READY_S)


@pytest.fixture(scope="module")
def inline(weights, tmp_path_factory):
    state = InlineBot(weights, tmp_path_factory.mktemp("inline-bot"))
    try:
        port = free_port()
        state.start(telegram_cache_chat_id=STORAGE, metrics_port=port)
        state.metrics = f"http://127.0.0.1:{port}/metrics"
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


def file_ids(results: list[dict]) -> list[str]:
    return [r["photo_file_id"] for r in results]


def chosen(inline: InlineBot, result: str) -> float:
    """``avatarbot_inline_chosen_total{result}`` on the first bot's ``/metrics``."""
    with urllib.request.urlopen(inline.metrics, timeout=30) as response:
        text = response.read().decode()
    return next(s.value for family in text_string_to_metric_families(text) for s in family.samples
                if s.name == "avatarbot_inline_chosen_total" and s.labels == {"result": result})


def choose(inline: InlineBot, result: dict, user: int) -> None:
    """The user sends ``result`` from a strip; returns once the bot has taken it in."""
    before = chosen(inline, "known")
    inline.tg.choose_inline_result(result["id"], "", user)
    wait_until(lambda: chosen(inline, "known") == before + 1, 60, "the chosen result")


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


def test_the_last_eight_faces_a_user_sent_come_first_in_their_empty_query_only(inline):
    tg = inline.tg
    user, other = next(_users), next(_users)
    softer = photos(ask(tg, "grace truncation=0.5", user))  # never among the random faces: another truncation
    plain = photos(ask(tg, "alice", user)) + photos(ask(tg, "42", user))  # in the cache since the first tests
    assert all(len(r["id"].encode()) <= 64 for r in softer + plain)  # Telegram's limit on result ids
    for face in softer[:2] + plain[:7] + [softer[1]]:  # the ninth face pushes out the first; sent again, one moves up
        choose(inline, face, user)
    before = len(uploads(tg))

    empty = ask(tg, "", user)
    shown = photos(empty)
    recent = [softer[1], *reversed(plain[:7])]
    assert file_ids(shown[:8]) == file_ids(recent)  # newest first
    assert softer[0]["photo_file_id"] not in file_ids(shown)
    assert len(shown) > 8 and len(set(file_ids(shown))) == len(shown)  # then random faces, each face once
    assert shown[0]["title"].endswith("variation 1")
    assert "variation=1" in shown[0]["caption"] and "truncation=0.5" in shown[0]["caption"]
    assert int(empty.params["cache_time"]) == 0 and empty.params.get("is_personal") in (True, "true", "True")
    assert len(uploads(tg)) == before  # all from the cache

    others = file_ids(photos(ask(tg, "", other)))
    assert others[:8] != file_ids(recent) and not set(file_ids(softer)) & set(others)


def test_a_chosen_result_the_bot_does_not_know_is_ignored(inline):
    tg = inline.tg
    user = next(_users)
    index, seed, variation, row = photos(ask(tg, "alice"))[2]["id"].split("-")
    unknown = [f"{index}-{seed}-{variation}",  # ids before they named the cached face
               f"{index}-{int(seed) ^ 1}-{variation}-{row}",  # the row holds another face
               f"{index}-{seed}-{variation}-{10**19 - 1}",  # no such row, nor could there be
               "0-1-0-99999", "x" * 64, "💥" * 16]
    log_start = len(inline.bot.output)
    known, before = chosen(inline, "known"), chosen(inline, "unknown")
    for result_id in unknown:
        tg.choose_inline_result(result_id, "alice", user)
    wait_until(lambda: chosen(inline, "unknown") == before + len(unknown), 60, "the unknown results")
    assert chosen(inline, "known") == known  # nothing remembered
    assert photos(ask(tg, "", user))  # and the bot answers as before
    log = inline.bot.output[log_start:]
    assert log.count("names no cached face: ignored") == len(unknown)
    assert "Telegram update failed" not in log


def test_cache_survives_a_restart_and_without_a_cache_chat_inline_says_so(inline):
    tg = inline.tg
    first = photos(ask(tg, "alice"))  # in the cache since the first test
    user = next(_users)
    choose(inline, first[2], user)
    assert inline.bot.stop() == 0
    count = len(uploads(tg))

    inline.start()  # no TELEGRAM_CACHE_CHAT_ID
    answer = ask(tg, "alice")
    assert answer.json_param("results") == [] and answer.json_param("button")["text"] == str(NOT_SET_UP)
    assert inline.bot.stop() == 0

    inline.start(telegram_cache_chat_id=STORAGE)
    assert photos(ask(tg, "alice")) == first
    assert file_ids(photos(ask(tg, "", user)))[0] == first[2]["photo_file_id"]  # the user's recent faces too
    assert len(uploads(tg)) == count
