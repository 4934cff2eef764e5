"""Telegram adapter: commands, bare text and inline buttons -> ``AvatarRequest`` -> service -> photo.

``/avatar [seed|name] [style=...] [count=...] [truncation=...] [variation=...]``, ``/morph A [B]``,
``/styles``, ``/start``, ``/help``; in a private chat a bare number or name is enough, and in groups
``/avatar@botname`` works. Updates are handled concurrently; ``AIORateLimiter`` keeps within
Telegram's flood limits.
"""

from __future__ import annotations

import asyncio
import logging

from telegram import (BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, ReplyParameters,
                      Update)
from telegram.constants import ChatAction
from telegram.ext import (AIORateLimiter, Application, ApplicationBuilder, CallbackQueryHandler,
                          CommandHandler, ContextTypes, MessageHandler, filters)

from bot.actions import Action, is_action
from bot.errors import APOLOGY, UserError
from bot.service import AvatarRequest, AvatarService, Command, Reply, looks_like_seed

log = logging.getLogger(__name__)

HELP = """Anime avatar faces from a GAN. The same seed always gives the same face, here and on Discord.

/avatar - a random face
/avatar 42 - the face of seed 42 (0 to 9223372036854775807)
/avatar Alice - a name's own face
/avatar 42 count=4 - a grid of neighbouring seeds
/avatar 42 style=default truncation=0.7 - pick a style (/styles); lower truncation gives more typical faces
/morph 42 Alice - an animated morph between two faces
In a private chat, just send a number or a name.

Buttons: Reroll a new face, Variations four nearby faces, Upscale a 512 px file, Morph a GIF."""

COMMANDS = [
    BotCommand("avatar", "Draw a face: /avatar [seed or name] [style=] [count=] [truncation=]"),
    BotCommand("morph", "Animated morph between two faces: /morph 42 Alice"),
    BotCommand("styles", "The styles you can draw in"),
    BotCommand("help", "How to use this bot"),
]
OPTIONS = ("style", "count", "truncation", "variation", "name", "seed")
CHAT_ACTION = {"photo": ChatAction.UPLOAD_PHOTO, "document": ChatAction.UPLOAD_DOCUMENT,
               "animation": ChatAction.UPLOAD_DOCUMENT}


def command_line(command: Command) -> str:
    """A reply's reproducing command in this adapter's syntax, e.g. ``/avatar 42 style=default``."""
    words = [f"/{command.name}"]
    for key, value in command.args:
        positional = key in ("from", "to") or (key in ("seed", "name") and (key == "seed") == looks_like_seed(value))
        words.append(value if positional else f"{key}={value}")
    return " ".join(words)


def parse_options(words: list[str]) -> dict[str, str]:
    """``["42", "style=x"]`` -> ``{"seed": "42", "style": "x"}``; free words are a seed or a name."""
    options: dict[str, str] = {}
    free = []
    for word in words:
        key, sep, value = word.partition("=")
        if sep:
            key = key.strip().lower()
            if key not in OPTIONS:
                raise UserError.bad_input(f"Unknown option {key!r}: use style=, count=, truncation= or variation=.")
            options[key] = value
        else:
            free.append(word)
    if free:
        text = " ".join(free)
        if "seed" in options or "name" in options:
            raise UserError.bad_input("Give a seed or a name, not both.")
        options["seed" if looks_like_seed(text) else "name"] = text
    return options


def _caption(reply: Reply) -> str:
    details = " · ".join(f"{k.lower()} {v}" for k, v in reply.fields)
    hint = f"\n{reply.hint}" if reply.hint else ""
    return f"{reply.title}\n{details}\n{command_line(reply.command)}{hint}"


def _keyboard(reply: Reply) -> InlineKeyboardMarkup | None:
    if not reply.actions:
        return None
    picks = [a for a in reply.actions if a.verb == "f"]
    others = [a for a in reply.actions if a.verb != "f"]
    rows = [[InlineKeyboardButton(a.label, callback_data=a.encode()) for a in row] for row in (picks, others) if row]
    return InlineKeyboardMarkup(rows)


class TelegramHandlers:
    """Small typed callbacks, one per command; registration happens in ``build_application``."""

    def __init__(self, service: AvatarService) -> None:
        self.service = service

    @staticmethod
    def _request(update: Update, **options) -> AvatarRequest:
        return AvatarRequest("telegram", str(update.effective_user.id), str(update.effective_chat.id), **options)

    async def help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await update.effective_message.reply_text(HELP)

    async def styles(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        infos = self.service.registry.infos("telegram", str(update.effective_chat.id))
        lines = [i.name + (f": {i.meta['description']}" if i.meta.get("description") else "") for i in infos]
        await update.effective_message.reply_text("\n".join(lines) or "No styles installed.")

    async def avatar(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._serve_words(update, context, list(context.args or []))

    async def text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A bare number or name in a private chat."""
        await self._serve_words(update, context, (update.effective_message.text or "").split())

    async def _serve_words(self, update: Update, context: ContextTypes.DEFAULT_TYPE, words: list[str]) -> None:
        try:
            options = parse_options(words)
        except UserError as exc:
            await update.effective_message.reply_text(str(exc))
            return
        await self.serve(update, context, self._request(update, **options))

    async def morph(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        words = [w for w in (context.args or []) if "=" not in w]
        try:
            options = parse_options([w for w in (context.args or []) if "=" in w])
        except UserError as exc:
            await update.effective_message.reply_text(str(exc))
            return
        if not 1 <= len(words) <= 2:
            await update.effective_message.reply_text("Use /morph A B with two seeds or names, e.g. /morph 42 Alice")
            return
        await self.serve(update, context, self._request(
            update, kind="morph", seed=words[0], target=words[1] if len(words) > 1 else None,
            style=options.get("style"), truncation=options.get("truncation", 1.0)))

    async def button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        try:
            action = Action.decode(query.data or "")
        except ValueError:
            await query.answer("That button no longer works; try /avatar.", show_alert=True)
            return
        request = AvatarRequest.from_action(action, "telegram", str(query.from_user.id),
                                            str(update.effective_chat.id))
        await self.serve(update, context, request)

    async def serve(self, update: Update, context: ContextTypes.DEFAULT_TYPE, request: AvatarRequest) -> None:
        """Admit (or refuse), show the chat action, draw, send; every failure is answered."""
        query = update.callback_query
        message = update.effective_message
        chat_id = update.effective_chat.id
        try:
            job = self.service.admit(request)
        except UserError as exc:
            if query is not None:
                await query.answer(str(exc), show_alert=True)
            else:
                await message.reply_text(str(exc))
            return
        async with job:
            try:
                if query is not None:
                    await query.answer()
                await context.bot.send_chat_action(chat_id, CHAT_ACTION[job.media])
                reply = await job.run()
                await self._send(context, chat_id, reply, None if query is not None else message.message_id)
            except UserError as exc:
                await context.bot.send_message(chat_id, str(exc))
            except Exception:
                log.exception("could not answer Telegram update %s (%s)", update.update_id, request.kind)
                try:
                    await context.bot.send_message(chat_id, APOLOGY)
                except Exception:  # noqa: BLE001 - already logged above
                    pass

    @staticmethod
    async def _send(context: ContextTypes.DEFAULT_TYPE, chat_id: int, reply: Reply, reply_to: int | None) -> None:
        kwargs = dict(chat_id=chat_id, caption=_caption(reply), reply_markup=_keyboard(reply),
                      reply_parameters=ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to else None)
        file = InputFile(reply.data, filename=reply.filename)
        if reply.media == "photo":
            await context.bot.send_photo(photo=file, **kwargs)
        elif reply.media == "animation":
            await context.bot.send_animation(animation=file, **kwargs)
        else:
            await context.bot.send_document(document=file, **kwargs)

    async def error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Errors no handler caught: logged once with the traceback; the user gets an apology."""
        log.error("Telegram update failed", exc_info=context.error)
        if isinstance(update, Update) and update.effective_chat is not None:
            try:
                await context.bot.send_message(update.effective_chat.id, APOLOGY)
            except Exception:  # noqa: BLE001 - already logged above
                pass


def build_application(settings, service: AvatarService) -> Application:
    """The python-telegram-bot application with every handler registered."""
    builder = (ApplicationBuilder().token(settings.telegram_token.get_secret_value())
               .rate_limiter(AIORateLimiter(max_retries=3)).concurrent_updates(True))
    if settings.telegram_api_base:
        builder = builder.base_url(settings.telegram_api_base)
    if settings.telegram_file_base:
        builder = builder.base_file_url(settings.telegram_file_base)
    app = builder.build()
    h = TelegramHandlers(service)
    app.add_handler(CommandHandler(["start", "help"], h.help))
    app.add_handler(CommandHandler("avatar", h.avatar))
    app.add_handler(CommandHandler("morph", h.morph))
    app.add_handler(CommandHandler("styles", h.styles))
    app.add_handler(CallbackQueryHandler(h.button, pattern=is_action))
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND & filters.ChatType.PRIVATE, h.text))
    app.add_error_handler(h.error)
    return app


class TelegramPlatform:
    """Runs the application inside the shared event loop (long polling)."""

    name = "telegram"

    def __init__(self, settings, service: AvatarService) -> None:
        self.app = build_application(settings, service)

    async def start(self) -> asyncio.Task | None:
        await self.app.initialize()
        await self.app.bot.set_my_commands(COMMANDS)
        await self.app.updater.start_polling(allowed_updates=[Update.MESSAGE, Update.CALLBACK_QUERY])
        await self.app.start()
        log.info("Telegram: polling as @%s", self.app.bot.username)
        return None

    async def stop_receiving(self) -> None:
        """Stop fetching updates; the ones already fetched are still answered."""
        if self.app.updater.running:
            await self.app.updater.stop()

    async def stop(self) -> None:
        if self.app.running:
            await self.app.stop()
        await self.app.shutdown()
