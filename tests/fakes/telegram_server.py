"""A fake Telegram Bot API on 127.0.0.1, for python-telegram-bot pointed at it with ``base_url``.

It checks the token in the URL, serves queued updates to long-polling ``getUpdates``, and records
every method call the bot makes, with uploaded files' bytes. Users can send documents (served by
``getFile`` and the file download URL), and ``getChatMember`` answers from the chats' admins.

Webhooks: ``setWebhook`` records the URL and secret token the bot registers (``deleteWebhook``
forgets them), and ``deliver`` POSTs an update to the bot's webhook listener as Telegram would, with
that secret token in the ``X-Telegram-Bot-Api-Secret-Token`` header.

Inline mode: ``inline_query`` and ``choose_inline_result`` queue those updates; ``answerInlineQuery``
calls are recorded (``answers``), and a ``sendPhoto`` answers with a photo whose ``file_id`` is new.

As Telegram does, ``getUpdates`` hands out only the update types its last ``allowed_updates`` named
(all while none was given): a bot that does not ask for a type never sees it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import aiohttp
from aiohttp import web

SEND_METHODS = ("sendMessage", "sendPhoto", "sendDocument", "sendAnimation")
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
SUPERGROUP_IDS = -1_000_000_000_000  # supergroup ids are -100 followed by ten or more digits; groups' are not


@dataclass
class Call:
    """One Bot API call the bot made."""

    method: str
    params: dict[str, Any]
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # field -> (filename, bytes)
    at: float = 0.0
    result: Any = None

    @property
    def chat_id(self) -> str:
        return str(self.params.get("chat_id", ""))

    @property
    def text(self) -> str:
        return str(self.params.get("text") or self.params.get("caption") or "")

    @property
    def buttons(self) -> list[dict]:
        markup = self.params.get("reply_markup")
        if isinstance(markup, str):
            markup = json.loads(markup)
        return [b for row in (markup or {}).get("inline_keyboard", []) for b in row]

    def json_param(self, name: str) -> Any:
        """A parameter sent as JSON text (``results``, ``button``), decoded; None when absent."""
        value = self.params.get(name)
        return json.loads(value) if isinstance(value, str) else value

    @property
    def file(self) -> tuple[str, bytes] | None:
        return next(iter(self.files.values()), None)


class FakeTelegram:
    """Fake Bot API. Test methods are thread-safe; the server runs on a ``LoopThread``."""

    def __init__(self, token: str, username: str = "avatar_test_bot") -> None:
        self.token = token
        self.username = username
        self.bot_id = int(token.split(":")[0])
        self.lock = threading.Lock()
        self.calls: list[Call] = []
        self.updates: list[dict] = []  # not yet confirmed by the bot
        self.all_updates: list[dict] = []
        self.delivered: dict[int, float] = {}  # update_id -> when getUpdates handed it out
        self.confirmed_below = 0  # the bot confirmed every update with a smaller id (getUpdates offset)
        self.unauthorized = 0
        self.hold_chats: set[str] = set()  # sends to these chats wait for release()
        self.files: dict[str, bytes] = {}  # file_id -> bytes users uploaded
        self.admins: dict[int, dict[int, str]] = {}  # chat id -> {user id: "administrator" | "creator"}
        self.webhook: dict[str, Any] | None = None  # what setWebhook registered: url, secret_token, ...
        self.languages: dict[int, str | None] = {}  # user id -> their app's language_code ("en" unless set)
        self.allowed_updates: list[str] = []  # what the bot's last getUpdates asked for ([]: every type)
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._new_update: asyncio.Event | None = None
        self._release: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._stopping = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.base = ""

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._new_update = asyncio.Event()
        self._release = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.*}", self._download)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        # A long poll left open by a bot that has gone returns now, not at its timeout: cleanup waits for it.
        self._stopping = True
        if self._new_update is not None:
            self._new_update.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_base(self) -> str:
        return self.base + "/bot"

    @property
    def file_base(self) -> str:
        return self.base + "/file/bot"

    # -- what tests do (thread-safe) ---------------------------------------------------------------

    def _push(self, update: dict) -> int:
        with self.lock:
            update["update_id"] = next(self._update_ids)
            self.updates.append(update)
            self.all_updates.append(update)
        self.loop.call_soon_threadsafe(self._new_update.set)
        return update["update_id"]

    @staticmethod
    def chat(chat_id: int) -> dict:
        if chat_id <= SUPERGROUP_IDS:
            return {"id": chat_id, "type": "supergroup", "title": f"Supergroup {chat_id}"}
        if chat_id < 0:
            return {"id": chat_id, "type": "group", "title": f"Group {chat_id}"}
        return {"id": chat_id, "type": "private", "first_name": f"User {chat_id}"}

    def user(self, user_id: int) -> dict:
        user = {"id": user_id, "is_bot": False, "first_name": f"User {user_id}"}
        language = self.languages.get(user_id, "en")
        return user if language is None else {**user, "language_code": language}

    def set_language(self, user_id: int, language_code: str | None) -> None:
        """The language ``user_id``'s Telegram app is set to (None: Telegram sends no language_code)."""
        with self.lock:
            self.languages[user_id] = language_code

    def message_update(self, text: str, user_id: int, chat_id: int | None = None) -> dict:
        chat_id = user_id if chat_id is None else chat_id
        message = {"message_id": next(self._message_ids), "date": int(time.time()), "chat": self.chat(chat_id),
                   "from": self.user(user_id), "text": text}
        if text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        return {"message": message}

    def send_text(self, text: str, user_id: int, chat_id: int | None = None) -> int:
        """A user writes ``text`` (a private chat with the user unless ``chat_id`` is given)."""
        return self._push(self.message_update(text, user_id, chat_id))

    def send_document(self, filename: str, data: bytes, user_id: int, chat_id: int | None = None,
                      caption: str | None = None, file_size: int | None = None) -> int:
        """A user sends a file (``file_size``: what Telegram reports, the real size unless given)."""
        chat_id = user_id if chat_id is None else chat_id
        file_id = f"doc-{next(self._message_ids)}"
        with self.lock:
            self.files[file_id] = data
        message = {"message_id": next(self._message_ids), "date": int(time.time()), "chat": self.chat(chat_id),
                   "from": self.user(user_id),
                   "document": {"file_id": file_id, "file_unique_id": f"u-{file_id}", "file_name": filename,
                                "mime_type": "application/zip",
                                "file_size": len(data) if file_size is None else file_size}}
        if caption:
            message["caption"] = caption
            if caption.startswith("/"):
                message["caption_entities"] = [{"type": "bot_command", "offset": 0,
                                                "length": len(caption.split()[0])}]
        self._push({"message": message})
        return message["message_id"]

    def reply_text(self, text: str, user_id: int, chat_id: int, reply_to_message_id: int) -> int:
        """A user replies ``text`` to an earlier user message (by its id)."""
        update = self.message_update(text, user_id, chat_id)
        with self.lock:
            original = next(u["message"] for u in self.all_updates
                            if "message" in u and u["message"]["message_id"] == reply_to_message_id)
        update["message"]["reply_to_message"] = original
        return self._push(update)

    def set_admin(self, chat_id: int, user_id: int, status: str = "administrator") -> None:
        """Make ``user_id`` an administrator (or the "creator") of a group chat."""
        with self.lock:
            self.admins.setdefault(chat_id, {})[user_id] = status

    def migrate_group(self, group_id: int, supergroup_id: int, user_id: int) -> None:
        """``user_id`` upgrades a group to a supergroup, which has a new id (``supergroup_id``, at most
        ``SUPERGROUP_IDS``), as Telegram tells a bot: a service message in the group with
        ``migrate_to_chat_id``, then one in the supergroup with ``migrate_from_chat_id``. The group's
        admins are the supergroup's."""
        assert supergroup_id <= SUPERGROUP_IDS < group_id < 0
        with self.lock:
            self.admins[supergroup_id] = dict(self.admins.get(group_id, {}))
        messages = [(group_id, {"migrate_to_chat_id": supergroup_id}),
                    (supergroup_id, {"migrate_from_chat_id": group_id})]
        self.send_many([{"message": {"message_id": next(self._message_ids), "date": int(time.time()),
                                     "chat": self.chat(chat), "from": self.user(user_id), **field}}
                        for chat, field in messages])

    def send_many(self, updates: list[dict]) -> list[int]:
        """Queue many updates at once (a burst)."""
        ids = []
        with self.lock:
            for update in updates:
                update["update_id"] = next(self._update_ids)
                self.updates.append(update)
                self.all_updates.append(update)
                ids.append(update["update_id"])
        self.loop.call_soon_threadsafe(self._new_update.set)
        return ids

    def inline_query_update(self, query: str, user_id: int) -> dict:
        """An inline query update: the user typed ``@bot <query>`` in some chat."""
        return {"inline_query": {"id": str(next(self._message_ids) + 2 * 10**6), "from": self.user(user_id),
                                 "query": query, "offset": "", "chat_type": "supergroup"}}

    def inline_query(self, query: str, user_id: int) -> int:
        """A user types ``@bot <query>``; ``answers`` shows what the bot answered."""
        return self._push(self.inline_query_update(query, user_id))

    def choose_inline_result(self, result_id: str, query: str, user_id: int) -> int:
        """A user taps an inline result (delivered when inline feedback is on in BotFather)."""
        return self._push({"chosen_inline_result": {"result_id": result_id, "from": self.user(user_id),
                                                    "query": query}})

    def answers(self, update_id: int) -> list[Call]:
        """The ``answerInlineQuery`` calls for the inline query of update ``update_id``."""
        with self.lock:
            query_id = next(u["inline_query"]["id"] for u in self.all_updates if u["update_id"] == update_id)
            return [c for c in self.calls if c.method == "answerInlineQuery"
                    and str(c.params.get("inline_query_id")) == query_id]

    def press(self, call: Call, data: str, user_id: int) -> int:
        """A user presses the inline button ``data`` under the message that ``call`` sent."""
        assert data in [b.get("callback_data") for b in call.buttons], f"no button {data!r} there"
        message = call.result
        return self._push({"callback_query": {"id": str(next(self._message_ids) + 10**6), "from": self.user(user_id),
                                              "message": message, "chat_instance": "ci", "data": data}})

    def sent(self, chat_id: int | str, methods: tuple[str, ...] = SEND_METHODS) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method in methods and c.chat_id == str(chat_id)]

    def calls_to(self, method: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method == method]

    def find(self, predicate: Callable[[Call], bool]) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if predicate(c)]

    def accepted_users(self) -> list[int]:
        """Senders of the message updates the bot confirmed having received."""
        with self.lock:
            return [u["message"]["from"]["id"] for u in self.all_updates
                    if u["update_id"] < self.confirmed_below and "message" in u]

    def deliver(self, update: dict, listener: str, secret: str | None = None) -> int:
        """POST ``update`` (e.g. from ``message_update``) to the bot's webhook listener, as Telegram would
        to the registered URL (a reverse proxy maps it to ``listener``, e.g. ``http://127.0.0.1:8443/tg``).
        The header carries the registered secret token unless ``secret`` is given ("" sends none).
        Returns the HTTP status the bot answered."""
        with self.lock:
            update["update_id"] = next(self._update_ids)
            self.all_updates.append(update)
            registered = (self.webhook or {}).get("secret_token")
        token = registered if secret is None else secret
        headers = {SECRET_HEADER: token} if token else {}

        async def post() -> int:
            async with aiohttp.ClientSession() as session:
                async with session.post(listener, json=update, headers=headers) as response:
                    return response.status

        return asyncio.run_coroutine_threadsafe(post(), self.loop).result(30)

    def hold(self, chat_id: int) -> None:
        """Make sends to ``chat_id`` wait until ``release()``."""
        self.hold_chats.add(str(chat_id))
        self.loop.call_soon_threadsafe(self._release.clear)

    def release(self) -> None:
        self.hold_chats.clear()
        self.loop.call_soon_threadsafe(self._release.set)

    # -- the Bot API -------------------------------------------------------------------------------

    async def _params(self, request: web.Request) -> tuple[dict, dict]:
        params: dict[str, Any] = dict(request.query)
        files: dict[str, tuple[str, bytes]] = {}
        if request.method != "POST":
            return params, files
        if request.content_type == "application/json":
            params.update(await request.json())
        elif request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if part.filename:
                    files[part.name] = (part.filename, bytes(await part.read()))
                else:
                    params[part.name] = await part.text()
        else:
            params.update(dict(await request.post()))
        return params, files

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            with self.lock:
                self.unauthorized += 1
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        params, files = await self._params(request)
        call = Call(method, params, files, time.monotonic())
        if method == "getUpdates":
            call.result = await self._get_updates(params)
        else:
            if method in SEND_METHODS and call.chat_id in self.hold_chats:
                await self._release.wait()
            call.result = self._answer(method, params, files)
        if call.result is None:
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found: method not found"},
                                     status=404)
        with self.lock:
            self.calls.append(call)
        return web.json_response({"ok": True, "result": call.result})

    async def _download(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        path = request.match_info["path"]
        file_id = path.removeprefix("documents/").removesuffix(".zip")
        with self.lock:
            data = self.files.get(file_id)
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="application/octet-stream")

    async def _get_updates(self, params: dict) -> list[dict]:
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        deadline = time.monotonic() + timeout
        allowed = params.get("allowed_updates")
        with self.lock:
            self.confirmed_below = max(self.confirmed_below, offset)
            if allowed is not None:  # "if not specified, the previous setting will be used"
                self.allowed_updates = json.loads(allowed) if isinstance(allowed, str) else list(allowed)
        while True:
            with self.lock:
                self.updates = [u for u in self.updates if u["update_id"] >= offset and (
                    not self.allowed_updates or any(kind in u for kind in self.allowed_updates))]
                ready = self.updates[: int(params.get("limit") or 100)]
                now = time.monotonic()
                for u in ready:
                    self.delivered.setdefault(u["update_id"], now)
                if ready or now >= deadline or self._stopping:
                    return ready
                self._new_update.clear()
            try:
                await asyncio.wait_for(self._new_update.wait(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                pass

    def _answer(self, method: str, params: dict, files: dict) -> Any:
        if method == "getMe":
            return {"id": self.bot_id, "is_bot": True, "first_name": "Avatar Bot", "username": self.username,
                    "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}
        if method == "setWebhook":
            with self.lock:
                self.webhook = dict(params)
            return True
        if method == "deleteWebhook":
            with self.lock:
                self.webhook = None
            return True
        if method in ("setMyCommands", "sendChatAction", "answerCallbackQuery", "answerInlineQuery", "close",
                      "logOut", "deleteMessage"):
            return True
        if method == "getMyCommands":
            calls = self.calls_to("setMyCommands")
            return json.loads(calls[-1].params["commands"]) if calls else []
        if method == "getChatMember":
            user_id = int(params.get("user_id", 1))
            with self.lock:
                status = self.admins.get(int(params.get("chat_id", 0)), {}).get(user_id, "member")
            member = {"status": status, "user": self.user(user_id)}
            if status == "creator":
                member["is_anonymous"] = False
            elif status == "administrator":
                member.update({k: True for k in (
                    "can_be_edited", "can_manage_chat", "can_delete_messages", "can_manage_video_chats",
                    "can_restrict_members", "can_promote_members", "can_change_info", "can_invite_users",
                    "can_post_stories", "can_edit_stories", "can_delete_stories")}, is_anonymous=False)
            return member
        if method == "getFile":
            file_id = str(params.get("file_id"))
            with self.lock:
                data = self.files.get(file_id)
            if data is None:
                return None
            return {"file_id": file_id, "file_unique_id": f"u-{file_id}", "file_size": len(data),
                    "file_path": f"documents/{file_id}.zip"}
        if method in SEND_METHODS or method.startswith("editMessage"):
            chat_id = int(params.get("chat_id") or 0)
            message = {"message_id": next(self._message_ids), "date": int(time.time()), "chat": self.chat(chat_id),
                       "from": {"id": self.bot_id, "is_bot": True, "first_name": "Avatar Bot",
                                "username": self.username}}
            if params.get("text"):
                message["text"] = params["text"]
            if params.get("caption"):
                message["caption"] = params["caption"]
            if params.get("reply_markup"):
                markup = params["reply_markup"]
                message["reply_markup"] = json.loads(markup) if isinstance(markup, str) else markup
            for name, (filename, data) in files.items():
                ident = {"file_id": f"file-{message['message_id']}", "file_unique_id": f"u{message['message_id']}",
                         "file_size": len(data)}
                if name == "photo":
                    message["photo"] = [{**ident, "width": 256, "height": 256}]
                elif name == "animation":
                    message["animation"] = {**ident, "width": 256, "height": 256, "duration": 2,
                                            "file_name": filename}
                else:
                    message["document"] = {**ident, "file_name": filename}
            return message
        return None
