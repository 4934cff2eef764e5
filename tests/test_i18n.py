"""The bot in English, Simplified and Traditional Chinese and Japanese: complete catalogues, and each user answered in
their own language through the real discord.py and python-telegram-bot against the fake servers."""

from __future__ import annotations

import io
import string
import zipfile
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from PIL import Image

from bot.i18n import LANGUAGES, catalogue_path, normalize_locale
from gan.colours import EYE_COLOURS, HAIR_COLOURS
from gan.imaging import read_png_metadata
from tests.fakes.harness import running_bot
from tests.fakes.loop_thread import wait_until
from tests.fakes.styles import make_tiny_styles
from tests.fakes.telegram_server import FakeTelegram

REPO = Path(__file__).resolve().parent.parent
TRANSLATED = [lang for lang in LANGUAGES if lang != "en"]
DISCORD_DESCRIPTION_LIMIT = 100  # Discord refuses longer command and option descriptions
DISCORD_CHOICE_NAME_LIMIT = 100  # ... and longer choice names (and empty ones)


# -- the catalogues ---------------------------------------------------------------------------------

def _messages() -> dict[str, tuple[str, ...]]:
    """Every translatable message in bot/ and training/ (``N_``), as babel extracts it: msgid -> its
    forms (singular, plural)."""
    found = {}
    for package in ("bot", "training"):
        for _file, _line, message, _comments, _context in extract_from_dir(str(REPO / package),
                                                                           [("**.py", "python")]):
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
    ("zh-CN", "zh"), ("zh-hans", "zh"), ("zh", "zh"), ("zh-Hans-HK", "zh"), ("zh-TW", "zh_Hant"),
    ("zh-HK", "zh_Hant"), ("zh-hant", "zh_Hant"), ("zh_Hant", "zh_Hant"), ("ja", "ja"), ("ja-JP", "ja"),
    ("en-US", "en"), ("en", "en"), ("ko", "en"), ("pt-BR", "en"), ("", "en"), (None, "en"),
])
def test_platform_locales_map_to_a_catalogue(code, lang):
    assert normalize_locale(code) == lang


def test_the_traditional_catalogue_is_the_simplified_one_converted():
    """Nobody edits zh_Hant by hand: it must be what ``python -m bot.hant`` makes of today's zh."""
    from bot.hant import TARGET, build

    assert catalogue_path(TARGET).read_bytes() == build(), "run python -m bot.hant (README.md, Languages)"


# -- both platforms, one bot ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bot(tmp_path_factory):
    """One bot on both platforms (users of this module have their own ids)."""
    weights = make_tiny_styles(tmp_path_factory.mktemp("weights"), ("default",))
    with running_bot(tmp_path_factory.mktemp("i18n-bot"), weights) as (_, dc, tg):
        yield dc, tg


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
    hant = tg_user(tg, "zh-hant")
    tg.send_text("/help", hant)
    assert tg_reply(tg, hant).text.startswith("用 GAN 畫動漫頭像。")

    for code in ("ko", None):  # a language without a catalogue, or none at all: English
        other = tg_user(tg, code)
        tg.send_text("/avatar abc=1", other)
        assert tg_reply(tg, other).text.startswith("Unknown option 'abc': use style=")


def test_a_built_in_styles_description_is_listed_in_the_users_language_where_its_author_wrote_one(bot):
    dc, tg = bot
    listed = {}
    for code in ("ja", "zh", "en"):
        user = tg_user(tg, code)
        tg.send_text("/styles", user)
        listed[code] = tg_reply(tg, user).text
    assert "テスト用の小さなスタイル default" in listed["ja"]
    assert "tiny test style default" in listed["zh"]  # none in Chinese: the style.json's own line
    assert "tiny test style default" in listed["en"]


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
    assert avatar["description_localizations"]["zh-TW"] == "畫一張動漫頭像"
    described = [synced["style"]] + list(synced.values()) + [o for c in synced.values() for o in c.get("options", [])]
    for item in described + [o for c in described for o in c.get("options", [])]:
        localized = item.get("description_localizations") or {}
        assert {"zh-CN", "ja"} <= set(localized), item["name"]
        assert all(len(text) <= DISCORD_DESCRIPTION_LIMIT for text in localized.values()), localized
        assert not item.get("name_localizations")  # names stay as users type them


def test_discord_colour_choices_show_translated_names_and_give_english_values(bot):
    """A Chinese or Japanese client lists /avatar's hair and eye colours in its language; the value
    Discord sends back (and so the reproducing command and the PNG metadata) is the English word."""
    dc, tg = bot
    avatar = next(c for c in dc.commands["global"] if c["name"] == "avatar")
    options = {o["name"]: o for o in avatar["options"]}
    hair = {c["value"]: c for c in options["hair"]["choices"]}
    eyes = {c["value"]: c for c in options["eyes"]["choices"]}
    assert list(hair) == list(HAIR_COLOURS) and list(eyes) == list(EYE_COLOURS)
    assert hair["blue"]["name"] == "blue"
    assert hair["blue"]["name_localizations"]["zh-CN"] == "蓝色"
    assert hair["blue"]["name_localizations"]["ja"] == "青"
    assert hair["blonde"]["name_localizations"]["ja"] == "金髪"
    assert eyes["brown"]["name_localizations"]["zh-CN"] == "棕色"
    assert eyes["red"]["name_localizations"]["ja"] == "赤"
    for choices in (hair, eyes):
        for code in ("zh-CN", "ja"):
            names = [c["name_localizations"][code] for c in choices.values()]
            assert all(1 <= len(n) <= DISCORD_CHOICE_NAME_LIMIT for n in names), names
            assert len(set(names)) == len(names), names  # each colour told apart in every language


def test_discord_answers_in_the_interactions_locale(bot):
    dc, tg = bot
    refusal = dc_answer(dc.slash("avatar", {"count": 9}, user_id=next(_users), locale="ja"))
    assert refusal["data"]["content"] == "count は 1〜4 の整数にしてください。"

    ans = dc_answer(dc.slash("avatar", {"seed": "7"}, user_id=next(_users), locale="zh-CN"))
    embed = ans.embeds[0]
    assert embed["title"] == "种子 7"
    assert {"name": "风格", "value": "default", "inline": True} in embed["fields"]
    assert embed["footer"]["text"].startswith("权重 ")
    assert "\N{GAME DIE} 重抽" in ans.labels
    traditional = dc_answer(dc.slash("avatar", {"seed": "7"}, user_id=next(_users), locale="zh-TW")).embeds[0]
    assert traditional["title"] == "種子 7" and traditional["footer"]["text"].startswith("權重 ")
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


def test_why_an_upload_was_refused_or_a_job_failed_is_translated(tmp_path):
    """Reasons worded by the training side (an upload refused, pictures skipped, a job that failed)
    reach the chat in the admin's language, figures and nested reasons included."""
    from bot.progress import describe_job
    from bot.styles import refusal_text, upload_summary
    from training.errors import JobError, Message
    from training.jobs import FAILED, SUCCEEDED, Job
    from training.prepare import Limits, PrepareError, ingest_zip_bytes

    def refused(data: bytes, **limits) -> JobError:
        with pytest.raises(PrepareError) as caught:
            ingest_zip_bytes(data, tmp_path / f"out-{len(list(tmp_path.iterdir()))}", limits=Limits(**limits))
        return JobError("bad_upload", problem=caught.value.message)

    not_zip = refused(b"these are not pictures")
    assert refusal_text(not_zip) == "Upload refused: not a zip file."
    assert refusal_text(not_zip, "zh") == "上传被拒绝：不是 zip 文件。"
    assert refusal_text(not_zip, "ja") == "アップロードを受け付けられません：zip ファイルではありません。"
    tiny = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(tiny, format="PNG")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("a.txt", b"text")
        zf.writestr("b.png", tiny.getvalue())
        zf.writestr("c.txt", b"more text")
    skipped = refused(buffer.getvalue())
    assert refusal_text(skipped) == ("Upload refused: no usable images (skipped: 2 not a JPEG, PNG or WEBP picture "
                                     "and 1 too small).")
    assert refusal_text(skipped, "ja") == ("アップロードを受け付けられません：使える画像がありません（スキップ: "
                                           "JPEG・PNG・WEBP の画像ではありません 2 枚、小さすぎる 1 枚）。")
    big = refused(b"x" * 2048, max_upload_bytes=1024)
    assert refusal_text(big, "zh") == "上传被拒绝：压缩包大于 1.0 KB。"

    failed = Job(3, "telegram:1", "ink", FAILED, 40, 1500, "training took too long and was stopped", None, 1, 0.0,
                 0.0, "telegram:2", tmp_path, tmp_path, reason=Message("training took too long and was stopped"))
    assert describe_job(failed) == "Training of style 'ink' failed: training took too long and was stopped"
    assert describe_job(failed, "zh") == "风格 'ink' 训练失败：训练用时过长，已停止"
    done = Job(4, "telegram:1", "ink", SUCCEEDED, 1500, 1500, "", None, 1, 0.0, 0.0, "telegram:2", tmp_path,
               tmp_path, report={"kept": 38, "skipped": {"duplicate": 2, "too small": 1}})
    assert upload_summary(done) == "kept 38 images; skipped: 2 duplicate and 1 too small"
    assert upload_summary(done, "zh") == "保留了 38 张图片；跳过: 重复 2 张和太小 1 张"


def test_colour_words_in_titles_and_buttons_are_translated_but_the_command_keeps_english():
    from bot.replies import _colour_buttons, face_reply
    from bot.requests import Plan

    plan = Plan("avatar", "default", 42, 1.0, 256, hair="blue", eyes="red")
    reply = face_reply(plan)
    assert reply.title.render("en") == "Seed 42, blue hair, red eyes"
    assert reply.title.render("zh") == "种子 42，蓝色头发，红色眼睛"
    assert reply.title.render("ja") == "シード 42、青の髪、赤の目"
    assert ("hair", "blue") in reply.command.args and ("eyes", "red") in reply.command.args

    class Colours:  # a style drawing two hair colours
        @staticmethod
        def colours(kind: str) -> tuple[str, ...]:
            return ("black", "blue")

    buttons = _colour_buttons(plan, Colours(), {"style": "default", "eyes": "red"})
    assert [b.label_in("ja") for b in buttons][0] == "\N{MEDIUM BLACK CIRCLE} 黒"
    assert [(b.hair, b.eyes) for b in buttons] == [("black", "red"), (None, "red")]  # and the original
    assert buttons[0].label_in("en") == "\N{MEDIUM BLACK CIRCLE} black"
