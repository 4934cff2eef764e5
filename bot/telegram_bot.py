"""Telegram adapter: commands, bare text and inline buttons -> ``AvatarRequest`` -> service -> photo.

``/avatar [seed|name] [style=...] [count=...] [truncation=...] [variation=...] [hair=...] [eyes=...]``,
``/morph A [B]``, ``/styles``, ``/start``, ``/help``; in a private chat a bare number or name is enough, and in groups
``/avatar@botname`` works. Updates are handled concurrently; ``AIORateLimiter`` keeps within
Telegram's flood limits. Under a face, its hair colour buttons come in rows of five below the
other buttons (two rows for the nine colours of the default style).

Custom styles (``bot.styles``): an admin sends a zip as a document captioned ``/train <name> [steps]``
(or replies ``/train <name>`` to one); ``/style_status``, ``/style_cancel``, ``/style_delete <name>``,
``/style_default <name>``. In groups the chat's administrators and owner may (getChatMember); in a
private chat, the users in ``BOT_ADMIN_IDS``. A job's progress edits one message; sample grids come
as photos. A zip over the Bot API's 20 MB download limit is refused before any download. A group
upgraded to a supergroup gets a new chat id: its styles, default style and jobs move with it.

Texts that quote users or data are fitted to Telegram's limits (``bot.text``): 4096 characters a
message, 1024 a caption, 200 an alert.

Updates come by long polling, or with ``TELEGRAM_WEBHOOK_URL`` through python-telegram-bot's webhook
server (``Updater.start_webhook``, on this event loop), which registers the URL and its secret token
with Telegram at start and refuses any POST without that token.

Inline mode (``@bot alice`` in any chat, and the faces users send from it) is ``bot.inline``; with
``TELEGRAM_CACHE_CHAT_ID`` its faces' file ids are kept in the database (``bot.photo_cache``), opened at
start and closed at stop.

Replies speak the sender's language (their ``language_code``, ``bot.i18n``); the command menu is set
once per language (``setMyCommands`` with ``language_code``), English for everyone else.
"""

from __future__ import annotations

import asyncio
import logging
import re

from telegram import (BotCommand, ChatMember, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, Message,
                      ReplyParameters, Update)
from telegram.constants import CallbackQueryLimit, ChatAction, ChatType, MessageLimit
from telegram.error import BadRequest, TelegramError
from telegram.ext import (AIORateLimiter, Application, ApplicationBuilder, CallbackQueryHandler,
                          ChosenInlineResultHandler, CommandHandler, ContextTypes, InlineQueryHandler,
                          MessageHandler, filters)

from bot.actions import Action, is_action
from bot.errors import APOLOGY, UserError
from bot.i18n import DEFAULT, LANGUAGES, _, normalize_locale
from bot.inline import InlineFaces
from bot.photo_cache import PhotoCache
from bot.replies import COLOUR_ROW, Command, Reply
from bot.requests import BOTH, AvatarRequest, looks_like_seed, whole_number
from bot.service import AvatarService
from bot.styles import StyleDesk, is_gate_button, typed_style
from bot.text import clip, echo, fit

log = logging.getLogger(__name__)

HELP = _("""Anime avatar faces from a GAN. The same seed always gives the same face, here and on Discord.

/avatar - a random face
/avatar 42 - the face of seed 42 (0 to 9223372036854775807)
/avatar Alice - a name's own face
/avatar 42 count=4 - a grid of neighbouring seeds
/avatar 42 style=default truncation=0.7 - pick a style (/styles); lower truncation gives more typical faces
/avatar 42 hair=blue eyes=red - another hair and eye colour (in styles with colour controls)
/morph 42 Alice - an animated morph between two faces
In a private chat, just send a number or a name. In any chat, type this bot's @name and a name or a
number to pick a face to send there.

Admins train custom styles for this chat: send a .zip of pictures as a file with the caption
/train <name>, then /style_status, /style_cancel, /style_delete <name>, /style_default <name>.

Buttons: Reroll a new face, Variations four nearby faces, Upscale a 512 px file, Morph a GIF;
under a face, one per hair colour redraws it with that hair.""")

COMMANDS = [
    ("avatar", _("Draw a face: /avatar [seed or name] [style=] [count=] [truncation=] [hair=] [eyes=]")),
    ("morph", _("Animated morph between two faces: /morph 42 Alice")),
    ("styles", _("The styles you can draw in")),
    ("train", _("Admins: send a .zip of pictures with the caption /train <name>")),
    ("style_status", _("Admins: how the style training is going")),
    ("style_cancel", _("Admins: stop the style training")),
    ("style_delete", _("Admins: delete a custom style: /style_delete <name>")),
    ("style_default", _("Admins: the style /avatar uses here: /style_default <name>")),
    ("help", _("How to use this bot")),
]
TRAIN_CAPTION = re.compile(r"^/train(?:@(\w+))?(?:\s|$)", re.IGNORECASE)
TRAIN_USAGE = _("Send a .zip of pictures as a file with the caption /train <name> (or reply /train <name> to it).")
NO_LONGER_WORKS = _("That button no longer works; try /avatar.")
OPTIONS = ("style", "count", "truncation", "variation", "name", "seed", "hair", "eyes")
CHAT_ACTION = {"photo": ChatAction.UPLOAD_PHOTO, "document": ChatAction.UPLOAD_DOCUMENT,
               "animation": ChatAction.UPLOAD_DOCUMENT}
# Longer texts are refused by Telegram ("message is too long"), and the user would get only the apology.
TEXT_LIMIT = int(MessageLimit.MAX_TEXT_LENGTH)  # 4096
CAPTION_LIMIT = int(MessageLimit.CAPTION_LENGTH)  # 1024
ALERT_LIMIT = int(CallbackQueryLimit.ANSWER_CALLBACK_QUERY_TEXT_LENGTH)  # 200
# Bots download files of at most 20 MB through the Bot API (getFile): the cap on uploads here, whatever
# STYLE_MAX_UPLOAD_MB allows. In MB of 2**20 bytes, as the answers count them.
DOWNLOAD_LIMIT = 20 * 2**20


def bot_commands(locale: str = DEFAULT) -> list[BotCommand]:
    """The command menu in ``locale``."""
    return [BotCommand(name, description.render(locale)) for name, description in COMMANDS]


def _locale(update: object) -> str:
    """The language to answer the sender of ``update`` in."""
    user = update.effective_user if isinstance(update, Update) else None
    return normalize_locale(user.language_code if user is not None else None)


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
                raise UserError.bad_input(_("Unknown option {option}: use style=, count=, truncation=, variation=, "
                                            "hair= or eyes=.").format(option=repr(echo(key))))
            options[key] = value
        else:
            free.append(word)
    if free:
        text = " ".join(free)
        if "seed" in options or "name" in options:
            raise UserError.bad_input(BOTH)
        options["seed" if looks_like_seed(text) else "name"] = text
    return options


def _caption(reply: Reply) -> str:
    details = " · ".join(f"{k.lower()} {v}" for k, v in reply.fields)
    hint = f"\n{reply.hint}" if reply.hint else ""
    return clip(f"{reply.title}\n{details}\n{command_line(reply.command)}{hint}", CAPTION_LIMIT)


def _keyboard(reply: Reply) -> InlineKeyboardMarkup | None:
    if not reply.actions:
        return None
    picks = [a for a in reply.actions if a.verb == "f"]
    others = [a for a in reply.actions if a.verb != "f"]
    colours = [list(reply.colours[i:i + COLOUR_ROW]) for i in range(0, len(reply.colours), COLOUR_ROW)]
    rows = [[InlineKeyboardButton(a.label, callback_data=a.encode()) for a in row]
            for row in (picks, others, *colours) if row]
    return InlineKeyboardMarkup(rows)


class TelegramProgress:
    """A job's progress as one message edited with editMessageText; sample grids as photos (``ProgressChannel``)."""

    def __init__(self, bot) -> None:
        self.bot = bot

    def command_line(self, command: Command) -> str:
        return command_line(command)

    async def post(self, target: dict, text: str) -> dict:
        reply = (ReplyParameters(int(target["reply_to"]), allow_sending_without_reply=True)
                 if target.get("reply_to") else None)
        message = await self.bot.send_message(int(target["chat"]), fit(text, TEXT_LIMIT), reply_parameters=reply)
        return {**target, "message": message.message_id}

    async def edit(self, target: dict, text: str, picture: bytes | None = None) -> None:
        try:
            await self.bot.edit_message_text(fit(text, TEXT_LIMIT), chat_id=int(target["chat"]),
                                             message_id=int(target["message"]))
        except BadRequest as exc:
            if "not modified" not in str(exc).lower():
                raise
        if picture is not None:
            await self.bot.send_photo(int(target["chat"]), InputFile(picture, filename="samples.png"),
                                      caption=clip(text, CAPTION_LIMIT), reply_parameters=ReplyParameters(
                                          int(target["message"]), allow_sending_without_reply=True))

    async def announce(self, target: dict, text: str, picture: bytes | None = None,
                       buttons: list[tuple[str, str]] | None = None) -> None:
        markup = (InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=data) for label, data in buttons]])
                  if buttons else None)
        if picture is None:
            await self.bot.send_message(int(target["chat"]), fit(text, TEXT_LIMIT), reply_markup=markup)
        else:
            await self.bot.send_photo(int(target["chat"]), InputFile(picture, filename="samples.png"),
                                      caption=clip(text, CAPTION_LIMIT), reply_markup=markup)


class TelegramHandlers:
    """Small typed callbacks, one per command; registration happens in ``build_application``."""

    def __init__(self, service: AvatarService, desk: StyleDesk, admin_ids: list[int]) -> None:
        self.service = service
        self.desk = desk
        self.admin_ids = frozenset(admin_ids)

    @staticmethod
    def _request(update: Update, **options) -> AvatarRequest:
        options["style"] = typed_style(options.get("style"))  # text too long to name a style is quoted back cut
        return AvatarRequest("telegram", str(update.effective_user.id), str(update.effective_chat.id),
                             locale=_locale(update), **options)

    @staticmethod
    async def _reply(update: Update, text: str) -> None:
        """Reply with ``text`` fitted to Telegram's message limit."""
        await update.effective_message.reply_text(fit(text, TEXT_LIMIT, _locale(update)))

    async def help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await update.effective_message.reply_text(HELP.render(_locale(update)))

    async def styles(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await update.effective_message.reply_text(self.desk.list_text("telegram", str(update.effective_chat.id),
                                                                      limit=TEXT_LIMIT, locale=_locale(update)))

    # -- custom styles ----------------------------------------------------------------------------

    async def _refused(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> bool:
        """Reply and return True unless the sender may manage this chat's styles."""
        chat, user = update.effective_chat, update.effective_user
        if chat.type == ChatType.PRIVATE:
            if user.id in self.admin_ids:
                return False
            message = _("Sorry, only the bot's owners can train styles in a private chat. In a group, its admins "
                        "can.")
        else:
            member = await context.bot.get_chat_member(chat.id, user.id)
            if member.status in (ChatMember.ADMINISTRATOR, ChatMember.OWNER):
                return False
            message = _("Sorry, only this group's admins can manage its styles.")
        await update.effective_message.reply_text(message.render(_locale(update)))
        return True

    async def _answer(self, update: Update, coro) -> None:
        """Reply with the text ``coro`` returns, or its ``UserError``."""
        try:
            text = await coro
        except UserError as exc:
            text = exc.render(_locale(update))
        await self._reply(update, text)

    async def train_document(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A document captioned ``/train <name> [steps]``."""
        message = update.effective_message
        match = TRAIN_CAPTION.match(message.caption or "")
        if match.group(1) and match.group(1).lower() != (context.bot.username or "").lower():
            return  # addressed to another bot
        await self._train(update, context, message, (message.caption or "").split()[1:])

    async def train(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """``/train <name> [steps]`` in reply to a document."""
        message = update.effective_message
        document_message = message.reply_to_message
        if document_message is None or document_message.document is None:
            await message.reply_text(TRAIN_USAGE.render(_locale(update)))
            return
        await self._train(update, context, document_message, list(context.args or []))

    async def _train(self, update: Update, context: ContextTypes.DEFAULT_TYPE, document_message: Message,
                     words: list[str]) -> None:
        message = update.effective_message
        locale = _locale(update)
        steps = whole_number(words[1]) if len(words) == 2 else None
        if not 1 <= len(words) <= 2 or (len(words) == 2 and (steps is None or steps < 1)):
            await message.reply_text(TRAIN_USAGE.render(locale))
            return
        if await self._refused(update, context):
            return
        document = document_message.document
        chat_id = update.effective_chat.id
        try:
            self.desk.check_upload_size(document.file_size, DOWNLOAD_LIMIT, "Telegram")
            await context.bot.send_chat_action(chat_id, ChatAction.TYPING)
            upload = bytes(await (await document.get_file()).download_as_bytearray())
            text = await self.desk.train("telegram", str(chat_id), str(update.effective_user.id), words[0], upload,
                                         steps, {"chat": chat_id, "reply_to": message.message_id}, locale)
        except UserError as exc:
            text = exc.render(locale)
        except TelegramError as exc:
            log.warning("could not download document %s: %s", document.file_name, exc)
            text = _("I could not download that file from Telegram ({error}); please try again.").format(
                error=exc.message).render(locale)
        await self._reply(update, text)

    async def style_status(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if not await self._refused(update, context):
            await self._answer(update, self.desk.status_text("telegram", str(update.effective_chat.id),
                                                             _locale(update)))

    async def style_cancel(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if not await self._refused(update, context):
            await self._answer(update, self.desk.cancel("telegram", str(update.effective_chat.id),
                                                        str(update.effective_user.id), _locale(update)))

    async def style_delete(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._named(update, context, "/style_delete <name>", self.desk.delete)

    async def migrate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A group upgraded to a supergroup: Telegram tells the old chat (``migrate_to_chat_id``) and
        the new one (``migrate_from_chat_id``); whichever comes first moves the styles."""
        message = update.effective_message
        if message.migrate_to_chat_id:
            old, new = message.chat.id, message.migrate_to_chat_id
        else:
            old, new = message.migrate_from_chat_id, message.chat.id
        try:
            await self.desk.move_chat("telegram", str(old), str(new), {"chat": new, "locale": _locale(update)})
        except UserError as exc:  # the bot is starting or stopping: nothing moved
            log.warning("chat %s became %s, but its styles could not move now: %s", old, new, exc)

    async def style_default(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._named(update, context, "/style_default <name>", self.desk.set_default)

    async def _named(self, update: Update, context: ContextTypes.DEFAULT_TYPE, usage: str, action) -> None:
        if len(context.args or []) != 1:
            await update.effective_message.reply_text(_("Use {usage}.").format(usage=usage).render(_locale(update)))
        elif not await self._refused(update, context):
            await self._answer(update, action("telegram", str(update.effective_chat.id), context.args[0],
                                              _locale(update)))

    async def avatar(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._serve_words(update, context, list(context.args or []))

    async def text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A bare number or name in a private chat."""
        await self._serve_words(update, context, (update.effective_message.text or "").split())

    async def _serve_words(self, update: Update, context: ContextTypes.DEFAULT_TYPE, words: list[str]) -> None:
        try:
            options = parse_options(words)
        except UserError as exc:
            await self._reply(update, exc.render(_locale(update)))
            return
        await self.serve(update, context, self._request(update, **options))

    async def morph(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        words = [w for w in (context.args or []) if "=" not in w]
        try:
            options = parse_options([w for w in (context.args or []) if "=" in w])
        except UserError as exc:
            await self._reply(update, exc.render(_locale(update)))
            return
        if not 1 <= len(words) <= 2:
            await update.effective_message.reply_text(
                _("Use /morph A B with two seeds or names, e.g. /morph 42 Alice").render(_locale(update)))
            return
        await self.serve(update, context, self._request(
            update, kind="morph", seed=words[0], target=words[1] if len(words) > 1 else None,
            style=options.get("style"), truncation=options.get("truncation"), hair=options.get("hair"),
            eyes=options.get("eyes")))

    async def button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        try:
            action = Action.decode(query.data or "")
        except ValueError:
            await query.answer(NO_LONGER_WORKS.render(_locale(update)), show_alert=True)
            return
        request = AvatarRequest.from_action(action, "telegram", str(query.from_user.id),
                                            str(update.effective_chat.id), _locale(update))
        await self.serve(update, context, request)

    async def gate_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Publish and Discard under a style the quality gate held back: the chat's admins only."""
        query = update.callback_query
        await query.answer()
        if await self._refused(update, context):
            return
        chat, data = str(update.effective_chat.id), query.data or ""
        await self._answer(update, self.desk.gate_button("telegram", chat, data, _locale(update)))
        if self.desk.gate_settled("telegram", chat, data):
            try:
                await query.edit_message_reply_markup(reply_markup=None)
            except TelegramError as exc:
                log.warning("could not take the buttons off message %s: %s", query.message and query.message.id, exc)

    async def serve(self, update: Update, context: ContextTypes.DEFAULT_TYPE, request: AvatarRequest) -> None:
        """Admit (or refuse), show the chat action, draw, send; every failure is answered."""
        query = update.callback_query
        message = update.effective_message
        chat_id = update.effective_chat.id
        locale = request.locale
        try:
            job = self.service.admit(request)
        except UserError as exc:
            if query is not None:
                await query.answer(fit(exc.render(locale), ALERT_LIMIT, locale), show_alert=True)
            else:
                await self._reply(update, exc.render(locale))
            return
        async with job:
            try:
                if query is not None:
                    await query.answer()
                await context.bot.send_chat_action(chat_id, CHAT_ACTION[job.media])
                reply = await job.run()
                await self._send(context, chat_id, reply, None if query is not None else message.message_id)
                job.sent()
            except UserError as exc:
                await context.bot.send_message(chat_id, fit(exc.render(locale), TEXT_LIMIT, locale))
            except Exception:
                log.exception("could not answer Telegram update %s (%s)", update.update_id, request.kind)
                try:
                    await context.bot.send_message(chat_id, APOLOGY.render(locale))
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
                await context.bot.send_message(update.effective_chat.id, APOLOGY.render(_locale(update)))
            except Exception:  # noqa: BLE001 - already logged above
                pass


def build_application(settings, service: AvatarService, desk: StyleDesk,
                      photos: PhotoCache | None = None) -> Application:
    """The python-telegram-bot application with every handler registered (``photos``: inline mode's file
    id cache, None when ``TELEGRAM_CACHE_CHAT_ID`` is not set)."""
    builder = (ApplicationBuilder().token(settings.telegram_token.get_secret_value())
               .rate_limiter(AIORateLimiter(max_retries=3)).concurrent_updates(True))
    if settings.telegram_api_base:
        builder = builder.base_url(settings.telegram_api_base)
    if settings.telegram_file_base:
        builder = builder.base_file_url(settings.telegram_file_base)
    app = builder.build()
    h = TelegramHandlers(service, desk, settings.bot_admin_ids)
    app.add_handler(CommandHandler(["start", "help"], h.help))
    app.add_handler(CommandHandler("avatar", h.avatar))
    app.add_handler(CommandHandler("morph", h.morph))
    app.add_handler(CommandHandler("styles", h.styles))
    app.add_handler(MessageHandler(filters.Document.ALL & filters.CaptionRegex(TRAIN_CAPTION), h.train_document))
    app.add_handler(CommandHandler("train", h.train))
    app.add_handler(CommandHandler("style_status", h.style_status))
    app.add_handler(CommandHandler("style_cancel", h.style_cancel))
    app.add_handler(CommandHandler("style_delete", h.style_delete))
    app.add_handler(CommandHandler("style_default", h.style_default))
    app.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, h.migrate))
    app.add_handler(CallbackQueryHandler(h.button, pattern=is_action))
    app.add_handler(CallbackQueryHandler(h.gate_button, pattern=is_gate_button))
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND & filters.ChatType.PRIVATE, h.text))
    inline = InlineFaces(app.bot, service, photos, settings.telegram_cache_chat_id if photos else None,
                         _caption, command_line, parse_options)
    app.add_handler(InlineQueryHandler(inline.query))
    app.add_handler(ChosenInlineResultHandler(inline.chosen))
    app.add_error_handler(h.error)
    return app


class TelegramPlatform:
    """Runs the application inside the shared event loop (long polling, or a webhook server)."""

    name = "telegram"

    def __init__(self, settings, service: AvatarService, desk: StyleDesk) -> None:
        self.photos = PhotoCache(settings.database_path) if settings.telegram_cache_chat_id is not None else None
        self.app = build_application(settings, service, desk, self.photos)
        self.desk = desk
        self.settings = settings

    async def start(self) -> asyncio.Task | None:
        await self.app.initialize()
        self.desk.add_channel("telegram", TelegramProgress(self.app.bot))
        # English for every language without its own menu. Telegram keys menus by two-letter language
        # codes alone, so Chinese users all get the Simplified menu (replies follow their script).
        for language in (lang for lang in LANGUAGES if "_" not in lang):
            await self.app.bot.set_my_commands(bot_commands(language),
                                               language_code=None if language == DEFAULT else language)
        if self.photos is not None:
            await self.photos.open()
        allowed = [Update.MESSAGE, Update.CALLBACK_QUERY, Update.INLINE_QUERY, Update.CHOSEN_INLINE_RESULT]
        s = self.settings
        if s.telegram_webhook_url:
            await self.app.updater.start_webhook(
                listen=s.telegram_webhook_listen, port=s.telegram_webhook_port, url_path=s.webhook_path(),
                webhook_url=s.telegram_webhook_url, secret_token=s.telegram_webhook_secret.get_secret_value(),
                allowed_updates=allowed)
            log.info("Telegram: webhook %s -> %s:%d%s as @%s", s.telegram_webhook_url, s.telegram_webhook_listen,
                     s.telegram_webhook_port, s.webhook_path(), self.app.bot.username)
        else:  # start_polling deletes any webhook left by an earlier run
            await self.app.updater.start_polling(allowed_updates=allowed)
            log.info("Telegram: polling as @%s", self.app.bot.username)
        await self.app.start()
        return None

    @property
    def is_alive(self) -> bool:
        """Receiving updates (polling or the webhook server) and handling them (for the health check)."""
        return self.app.running and self.app.updater.running

    async def stop_receiving(self) -> None:
        """Stop fetching updates; the ones already fetched are still answered."""
        if self.app.updater.running:
            await self.app.updater.stop()

    async def stop(self) -> None:
        if self.app.running:
            await self.app.stop()
        await self.app.shutdown()
        if self.photos is not None:
            await self.photos.close()
