"""Telegram inline mode: ``@bot alice`` in any chat shows a strip of faces; the user taps one to send it.

The strip for a name is its face and its ``VARIATIONS`` variations (``/avatar alice variation=N``); for a
number, the seed's face, its variations, and the face of the number read as a name (``name=42``). The
options ``/avatar`` takes (``style=``, ``truncation=``) work too; ``count=`` and ``variation=`` do not
(each result is one face), nor ``hair=`` and ``eyes=`` (the file id cache keeps faces as drawn). Each
result carries the caption and reproducing command of the ``/avatar`` reply for the same face
(``bot.replies.face_reply``), without buttons: a button under a message sent through the bot has no
chat to draw in.

Telegram shows inline results by photo URL or by file id; this bot has no web server for URLs, so
each face is uploaded once to a storage chat (``TELEGRAM_CACHE_CHAT_ID``) and its file id kept in the
database (``bot.photo_cache``); later queries for that face, also after a restart, are answered from
it without drawing or uploading. Without ``TELEGRAM_CACHE_CHAT_ID`` every query is answered with no
results and a "not set up" line, rather than left unanswered: a user who finds ``@bot`` on then sees why
nothing comes, and the operator sees what to set.

An empty query shows up to ``RANDOM_FACES`` random faces from that cache (drawn as the default style
draws them): instant, nothing drawn or uploaded, and still a surprise each time, where fresh random
seeds would add an upload to the storage chat per keystroke-free query and the user's last faces would
show nothing new. Only while the cache has none does it draw ``RANDOM_DRAWN`` random seeds, which fill it.

Recent faces: with inline feedback on (``/setinlinefeedback`` in BotFather), Telegram tells the bot
which result a user sent (a ``chosen_inline_result`` update, ``chosen``). Each result id names its
cached face, ``<index>-<seed>-<variation>-<row>`` with the face's row in ``bot.photo_cache`` (at most 45
ASCII characters: Telegram allows 64 bytes), and the bot keeps each user's last ``RECENT_FACES``
distinct faces in the database. Their empty query shows those first, newest first, from the cache
(in whatever style and truncation they were drawn, while the style still draws them so), then the
random faces, each face once; ``RANDOM_DRAWN`` seeds are drawn only when there is neither. Like every
empty query's, that answer is personal and not kept by Telegram (``cache_time`` 0), so no one else
sees it. A chosen id the bot does not know (another format, a row that is gone or now holds another
face) is ignored with a debug line.

Limits: a user typing "a", "al", "ali" gets one strip, for the last query: each query waits
``DEBOUNCE_S`` and is dropped unanswered if the same user sent another meanwhile (Telegram lets an
unanswered query expire). A strip that has faces to draw counts as one request against the user's
cooldown and the chat limit of a per-user "inline" chat, like ``/avatar count=4`` draws four faces for
one request: its first face is admitted normally and the rest with ``cooldown=False``. A strip served
wholly from the cache draws nothing and costs nothing. Drawing goes through the service (its batching
and queue) like every other request; the event loop never waits on it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from dataclasses import replace
from typing import Callable

from telegram import Bot, InlineQuery, InlineQueryResultCachedPhoto, InlineQueryResultsButton, InputFile, Update
from telegram.constants import InlineQueryLimit
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from bot.errors import UserError
from bot.i18n import DEFAULT, _, normalize_locale
from bot.photo_cache import CachedPhoto, FaceKey, PhotoCache
from bot.replies import Command, Reply, face_reply
from bot.requests import VARIATIONS, AvatarRequest, Plan
from bot.service import AvatarService, Job
from bot.text import clip
from gan.latents import MAX_SEED

log = logging.getLogger(__name__)

DEBOUNCE_S = 0.7  # a quiet time longer than the gap between keystrokes, short enough not to feel slow
CACHE_TIME_S = 300  # a name's strip is the same for everyone until the default style changes
RANDOM_FACES = 8
RANDOM_DRAWN = 3
RECENT_FACES = 8  # a user's last faces sent from the strip, shown first on their empty query
RESULT_ID = re.compile(r"\d{1,2}-(\d{1,19})-(\d{1,2})-(\d{1,19})", re.ASCII)  # index-seed-variation-row
MAX_RESULTS = int(InlineQueryLimit.RESULTS)  # 50
BUTTON_TEXT_LIMIT = 64  # the button is one short line above the results
START_PARAMETER = "inline"  # the button opens a private chat with the bot on /start inline: the help
NOT_SET_UP = _("Inline mode is not set up on this bot.")
UPLOAD_FAILED = _("I could not prepare these faces; try again later.")
NO_FACE = _("Type a name or a number after the bot's name.")
SINGLE_FACES = _("Inline results are single faces: no count= or variation=.")
NO_COLOURS = _("Inline faces keep their colours: use /avatar 42 hair=blue")  # within BUTTON_TEXT_LIMIT


def _button(text: str) -> InlineQueryResultsButton:
    return InlineQueryResultsButton(clip(text, BUTTON_TEXT_LIMIT), start_parameter=START_PARAMETER)


class InlineFaces:
    """The inline query handler. ``photos`` and ``storage_chat`` are None when inline mode is not set up."""

    def __init__(self, bot: Bot, service: AvatarService, photos: PhotoCache | None, storage_chat: int | None,
                 caption: Callable[[Reply], str], command_line: Callable[[Command], str],
                 parse_options: Callable[[list[str]], dict[str, str]]) -> None:
        self.bot = bot
        self.service = service
        self.photos = photos
        self.storage_chat = storage_chat
        self.caption = caption
        self.command_line = command_line
        self.parse_options = parse_options
        self._latest: dict[int, str] = {}  # user id -> the id of their newest query

    async def query(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Wait for the user to stop typing, then answer their newest query (older ones are dropped)."""
        query = update.inline_query
        user = query.from_user.id
        self._latest[user] = query.id
        try:
            await asyncio.sleep(DEBOUNCE_S)
            if self._latest.get(user) != query.id:
                log.debug("inline query %s dropped: user %s typed on", query.id, user)
                return
            await self._answer(query)
        finally:
            if self._latest.get(user) == query.id:
                del self._latest[user]

    async def chosen(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A user sent a face from the strip: it becomes their newest recent face."""
        result = update.chosen_inline_result
        photo = await self._photo_of(result.result_id)
        if photo is None:
            log.debug("inline result %r sent by user %s names no cached face: ignored", result.result_id,
                      result.from_user.id)
        else:
            await self.photos.remember(result.from_user.id, photo.key, RECENT_FACES)
        self.service.metrics.inline_chosen(photo is not None)

    async def _photo_of(self, result_id: str) -> CachedPhoto | None:
        """The cached face a result id names, or None (not this bot's format, or its row is gone or now
        holds another face)."""
        match = RESULT_ID.fullmatch(result_id)
        if self.photos is None or match is None:
            return None
        seed, variation, row = (int(group) for group in match.groups())
        photo = await self.photos.find(row)
        if photo is None or (photo.key.seed, photo.key.variation) != (seed, variation):
            return None
        return photo

    async def _answer(self, query: InlineQuery) -> None:
        locale = normalize_locale(query.from_user.language_code)
        if self.photos is None or self.storage_chat is None:
            # Telegram may show a shared answer to anyone typing the same query: shared only in English.
            await self._send(query, [], CACHE_TIME_S, locale != DEFAULT, _button(NOT_SET_UP.render(locale)))
            return
        try:
            results, cacheable = await self._results(query, locale)
        except UserError as exc:
            await self._send(query, [], 0, True, _button(exc.render(locale)))
            return
        except TelegramError as exc:
            log.warning("could not upload faces to the storage chat %s: %s", self.storage_chat, exc)
            await self._send(query, [], 0, True, _button(UPLOAD_FAILED.render(locale)))
            return
        # Captions are in the user's language: results Telegram shows to everyone would show them to all.
        shared = cacheable and locale == DEFAULT
        await self._send(query, results[:MAX_RESULTS], CACHE_TIME_S if cacheable else 0, not shared, None)

    @staticmethod
    async def _send(query: InlineQuery, results: list, cache_time: int, is_personal: bool,
                    button: InlineQueryResultsButton | None) -> None:
        try:
            await query.answer(results, cache_time=cache_time, is_personal=is_personal, button=button)
        except TelegramError as exc:  # e.g. "query is too old": the user has moved on
            log.info("inline query %s not answered: %s", query.id, exc)

    def _request(self, user: str, options: dict[str, str], **face: object) -> AvatarRequest:
        return AvatarRequest("telegram", user, f"inline:{user}", style=options.get("style"),
                             truncation=options.get("truncation"), **face)

    async def _results(self, query: InlineQuery, locale: str) -> tuple[list[InlineQueryResultCachedPhoto], bool]:
        """The results for a query, and whether Telegram may show them to everyone for ``CACHE_TIME_S``."""
        user = str(query.from_user.id)
        text = query.query.strip()
        if not text:
            return await self._recent_and_random(query.from_user.id, locale), False
        options = self.parse_options(text.split())
        if "count" in options or "variation" in options:
            raise UserError.bad_input(SINGLE_FACES)
        if "hair" in options or "eyes" in options:
            raise UserError.bad_input(NO_COLOURS)
        if "seed" not in options and "name" not in options:
            raise UserError.bad_input(NO_FACE)
        face = {"seed": options["seed"]} if "seed" in options else {"name": options["name"]}
        requests = [self._request(user, options, variation=i, **face) for i in range(VARIATIONS + 1)]
        if "seed" in options:
            requests.append(self._request(user, options, name=options["seed"]))
        return await self._faces(user, requests, locale), True

    async def _recent_and_random(self, user_id: int, locale: str) -> list[InlineQueryResultCachedPhoto]:
        """The user's recent faces, then random ones (each face once)."""
        user = str(user_id)
        recent = await self._recent(user_id)
        faces = recent + await self._random(user, {FaceKey.of(plan) for plan, _photo in recent})
        if faces:
            return [self._result(i, plan, photo, locale) for i, (plan, photo) in enumerate(faces)]
        seeds = [secrets.randbelow(MAX_SEED) for _i in range(RANDOM_DRAWN)]
        return await self._faces(user, [self._request(user, {}, seed=seed) for seed in seeds], locale)

    async def _recent(self, user_id: int) -> list[tuple[Plan, CachedPhoto]]:
        """The faces the user last sent that the cache holds and their style still draws so, newest first."""
        faces = []
        for photo in await self.photos.recent(user_id, RECENT_FACES):
            key = photo.key
            try:
                plan = self.service.plan(self._request(str(user_id), {"style": key.style}, seed=key.seed,
                                                       variation=key.variation))
            except UserError:  # the style is gone
                continue
            plan = replace(plan, truncation=key.truncation)  # as it was drawn, also where the default changed
            if FaceKey.of(plan) == key:  # else retrained, or another size or upscaler now: not what /avatar draws
                faces.append((plan, photo))
        return faces

    async def _random(self, user: str, shown: set[FaceKey]) -> list[tuple[Plan, CachedPhoto]]:
        """Up to ``RANDOM_FACES`` random cached faces of the default style, none of those ``shown``."""
        like = self.service.plan(self._request(user, {}, seed=0))
        cached = await self.photos.sample(FaceKey.of(like), RANDOM_FACES + len(shown))
        fresh = [photo for photo in cached if photo.key not in shown][:RANDOM_FACES]
        return [(replace(like, seed=photo.key.seed, variation=photo.key.variation), photo) for photo in fresh]

    async def _faces(self, user: str, requests: list[AvatarRequest],
                     locale: str) -> list[InlineQueryResultCachedPhoto]:
        """The faces of ``requests`` in order: from the cache, or drawn (as one request) and uploaded."""
        plans = [self.service.plan(request) for request in requests]  # every option checked first
        photos = [await self.photos.get(FaceKey.of(plan)) for plan in plans]
        missing = [i for i, photo in enumerate(photos) if photo is None]
        jobs: list[Job] = []
        try:
            for i in missing:
                jobs.append(self.service.admit(requests[i], cooldown=not jobs))
        except UserError:
            for job in jobs:
                job.release()
            raise
        uploads = await asyncio.gather(*(self._upload(job) for job in jobs), return_exceptions=True)
        for i, job, uploaded in zip(missing, jobs, uploads):
            if isinstance(uploaded, BaseException):
                raise uploaded
            plans[i], photos[i] = job.plan, uploaded
        return [self._result(i, plan, photo, locale) for i, (plan, photo) in enumerate(zip(plans, photos))]

    async def _upload(self, job: Job) -> CachedPhoto:
        """Draw one face, post it to the storage chat and remember its file id."""
        async with job:
            reply = await job.run()
            message = await self.bot.send_photo(
                self.storage_chat, InputFile(reply.data, filename=reply.filename),
                caption=self.caption(face_reply(job.plan).localized(DEFAULT)), disable_notification=True)
            photo = await self.photos.put(FaceKey.of(job.plan), message.photo[-1].file_id)
            job.sent()
            return photo

    def _result(self, index: int, plan: Plan, photo: CachedPhoto, locale: str) -> InlineQueryResultCachedPhoto:
        reply = face_reply(plan).localized(locale)
        key = photo.key  # the index keeps ids unique in one answer; the rest names the face (RESULT_ID)
        return InlineQueryResultCachedPhoto(f"{index}-{key.seed}-{key.variation}-{photo.row}", photo.file_id,
                                            title=reply.title,
                                            description=self.command_line(reply.command),
                                            caption=self.caption(reply))
