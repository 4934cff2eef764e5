"""The bot in English, Simplified Chinese and Japanese: complete catalogues, and each user answered in
their own language through the real discord.py and python-telegram-bot against the fake servers."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from bot.i18n import LANGUAGES, catalogue_path, normalize_locale
from gan.imaging import read_png_metadata
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.harness import DISCORD_TOKEN, TELEGRAM_TOKEN, BotProcess
from tests.fakes.loop_thread import LoopThread, wait_until
from tests.fakes.styles import make_tiny_styles
from tests.fakes.telegram_server import FakeTelegram

REPO = Path(__file__).resolve().parent.parent
TRANSLATED = [lang for lang in LANGUAGES if lang != "en"]
DISCORD_DESCRIPTION_LIMIT = 100  # Discord refuses longer command and option descriptions


# -- the catalogues ---------------------------------------------------------------------------------

def _messages() -> dict[str, tuple[str, ...]]:
    """Every translatable message in bot/, as babel extracts it: msgid -> its forms (singular, plural)."""
    found = {}
    for _file, _line, message, _comments, _context in extract_from_dir(str(REPO / "bot"), [("**.py", "python")]):
        forms = message if isinstance(message, tuple) else (message,)
        found[forms[0]] = forms
    return found


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_the_template_lists_every_message_of_the_code():
    with open(REPO / "bot" / "locale" / "avatarbot.pot", "rb") as pot:
        template = {m.id[0] if isinstance(m.id, tuple) else m.id for m in read_po(pot) if m.id}
    assert set(_messages()) == template, "run pybabel extract (README.md, Languages)"


@pytest.mark.parametrize("lang", TRANSLATED)
def test_every_message_has_a_translation_with_the_same_placeholders(lang):
    messages = _messages()
    assert len(messages) > 100  # the extractor really found the bot's texts
    with open(catalogue_path(lang), "rb") as po:
        catalogue = read_po(po, locale=lang)
    problems = []
    for msgid, forms in messages.items():
        entry = catalogue.get(forms if len(forms) > 1 else msgid)
        strings = () if entry is None else (entry.string if isinstance(entry.string, tuple) else (entry.string,))
        if entry is None or entry.fuzzy or not strings or not all(s.strip() for s in strings):
            problems.append(f"untranslated: {msgid!r}")
            continue
        for translation in strings:
            if _fields(translation) != _fields(msgid):
                problems.append(f"placeholders differ: {msgid!r} -> {translation!r}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("code, lang", [
    ("zh-CN", "zh"), ("zh-TW", "zh"), ("zh-hans", "zh"), ("zh", "zh"), ("ja", "ja"), ("ja-JP", "ja"),
    ("en-US", "en"), ("en", "en"), ("ko", "en"), ("pt-BR", "en"), ("", "en"), (None, "en"),
])
def test_platform_locales_map_to_a_catalogue(code, lang):
    assert normalize_locale(code) == lang


# -- both platforms, one bot ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bot(tmp_path_factory):
    """One bot on both platforms (users of this module have their own ids)."""
    weights = make_tiny_styles(tmp_path_factory.mktemp("weights"), ("default",))
    thread = LoopThread()
    dc, tg = FakeDiscord(DISCORD_TOKEN), FakeTelegram(TELEGRAM_TOKEN, "avatar_test_bot")
    thread.run(dc.start())
    thread.run(tg.start())
    process = BotProcess(tmp_path_factory.mktemp("i18n-bot"), weights, dc, tg)
    try:
        process.wait_ready()
        yield dc, tg
    finally:
        code = process.stop()
        thread.run(dc.stop())
        thread.run(tg.stop())
        thread.stop()
    assert code == 0, process.output[-3000:]


_users = iter(range(60_000, 10**9))


def tg_user(tg: FakeTelegram, language_code: str | None) -> int:
    user = next(_users)
    tg.set_language(user, language_code)
    return user


def tg_reply(tg: FakeTelegram, chat_id: int, before: int = 0):
    return wait_until(lambda: tg.sent(chat_id)[before:], 60, f"a reply in chat {chat_id}")[0]


def dc_answer(interaction):
    return wait_until(lambda: interaction.answer, 60, "the interaction's answer")


def test_telegram_answers_each_user_in_their_language(bot):
    dc, tg = bot
    ja = tg_user(tg, "ja")
    tg.send_text("/avatar 42", ja)
    photo = tg_reply(tg, ja)
    assert photo.method == "sendPhoto"
    assert photo.text.startswith("シード 42\n") and "スタイル default" in photo.text
    assert "/avatar 42 style=default" in photo.text  # the command stays as typed
    assert "\N{GAME DIE} 引き直す" in [b["text"] for b in photo.buttons]
    tg.send_text("/avatar 42 count=9", ja)
    assert tg_reply(tg, ja, 1).text == "count は 1〜4 の整数にしてください。"

    zh = tg_user(tg, "zh-hans")
    tg.send_text("/avatar abc=1", zh)
    assert tg_reply(tg, zh).text.startswith("未知选项 'abc'：请使用 style=")
    tg.send_text("/help", zh)
    assert tg_reply(tg, zh, 1).text.startswith("用 GAN 画动漫头像。")

    for code in ("ko", None):  # a language without a catalogue, or none at all: English
        other = tg_user(tg, code)
        tg.send_text("/avatar abc=1", other)
        assert tg_reply(tg, other).text.startswith("Unknown option 'abc': use style=")


def test_telegram_command_menus_per_language(bot):
    dc, tg = bot
    menus = {c.params.get("language_code"): c.json_param("commands") for c in tg.calls_to("setMyCommands")}
    assert set(menus) == {None, "zh", "ja"}
    described = {lang: {c["command"]: c["description"] for c in menu} for lang, menu in menus.items()}
    assert all(set(d) == set(described[None]) for d in described.values())  # the same commands everywhere
    assert described[None]["styles"] == "The styles you can draw in"
    assert described["zh"]["styles"] == "可以使用的风格"
    assert described["ja"]["styles"] == "描けるスタイル"


def test_discord_commands_carry_localized_descriptions(bot):
    dc, tg = bot
    synced = {c["name"]: c for c in dc.commands["global"]}
    avatar = synced["avatar"]
    assert avatar["description"] == "Draw an anime avatar face"
    assert avatar["description_localizations"]["ja"] == "アニメ風のアバターの顔を描く"
    assert avatar["description_localizations"]["zh-CN"] == "画一张动漫头像"
    assert avatar["description_localizations"]["zh-TW"] == "画一张动漫头像"  # Simplified for now
    described = [synced["style"]] + list(synced.values()) + [o for c in synced.values() for o in c.get("options", [])]
    for item in described + [o for c in described for o in c.get("options", [])]:
        localized = item.get("description_localizations") or {}
        assert {"zh-CN", "ja"} <= set(localized), item["name"]
        assert all(len(text) <= DISCORD_DESCRIPTION_LIMIT for text in localized.values()), localized
        assert not item.get("name_localizations")  # names stay as users type them


def test_discord_answers_in_the_interactions_locale(bot):
    dc, tg = bot
    refusal = dc_answer(dc.slash("avatar", {"count": 9}, user_id=next(_users), locale="ja"))
    assert refusal["data"]["content"] == "count は 1〜4 の整数にしてください。"

    ans = dc_answer(dc.slash("avatar", {"seed": "7"}, user_id=next(_users), locale="zh-TW"))
    embed = ans.embeds[0]
    assert embed["title"] == "种子 7"
    assert {"name": "风格", "value": "default", "inline": True} in embed["fields"]
    assert embed["footer"]["text"].startswith("权重 ")
    assert "\N{GAME DIE} 重抽" in ans.labels
    reroll = dc_answer(dc.click(ans, ans.custom_ids[0], user_id=next(_users), locale="ja"))
    assert reroll.embeds[0]["title"].startswith("シード ")


def test_a_cached_reply_speaks_each_users_language(bot):
    """The service caches a reply per face; the second asker, in another language, gets their own words."""
    dc, tg = bot
    ja, en = tg_user(tg, "ja"), tg_user(tg, "en")
    tg.send_text("/avatar 4242", ja)
    first = tg_reply(tg, ja)
    tg.send_text("/avatar 4242", en)
    second = tg_reply(tg, en)
    assert first.text.startswith("シード 4242\n")
    assert second.text.startswith("Seed 4242\n") and "seed 4242 · style default" in second.text
    assert first.file[1] == second.file[1]  # the same picture
    third = dc_answer(dc.slash("avatar", {"seed": "4242"}, user_id=next(_users), locale="ja"))
    assert third.embeds[0]["title"] == "シード 4242"
    assert read_png_metadata(third.files[0][1])["seed"] == "4242"


def test_style_training_messages_speak_the_admins_language(tmp_path):
    """Progress lines and refusals of custom-style training, as ``StyleDesk`` posts them in the chat."""
    from bot.progress import describe_job, progress_text
    from bot.styles import refusal_text
    from training.errors import JobError
    from training.jobs import QUEUED, RUNNING, Job, JobEvent

    job = Job(1, "discord:1", "ink", RUNNING, 500, 1500, "", None, 1, 0.0, 0.0, "discord:2", tmp_path, tmp_path)
    event = JobEvent("progress", job, 500, 1500, eta_seconds=240)
    assert progress_text(event) == "Training 'ink' [####--------] 33% - step 500/1500 - about 4 min left"
    assert progress_text(event, locale="ja") == "'ink' を学習中 [####--------] 33% - ステップ 500/1500 - 残り約 4 分"
    assert progress_text(event, locale="zh") == "正在训练 'ink' [####--------] 33% - 第 500/1500 步 - 约剩 4 分钟"
    queued = Job(2, "discord:1", "ink", QUEUED, 0, 1500, "", None, 0, 0.0, 0.0, "discord:2", tmp_path, tmp_path,
                 queue_position=3)
    assert describe_job(queued, "ja") == "スタイル 'ink' は学習待ちです（順番待ちの 3 番目）。"
    limit = JobError("daily_limit", "cooldown", count=3, limit=3, wait_s=5 * 3600 + 11 * 60 + 30)
    assert refusal_text(limit).endswith("you can train again in 5 h 12 min.")
    assert refusal_text(limit, "zh").endswith("5 小时 12 分钟 后可以再次训练。")
    busy = JobError("busy", "busy", name="ink", running=True)
    assert refusal_text(busy, "ja") == "スタイル 'ink' はすでにここで学習中です。終わるのを待つか、中止してください。"
