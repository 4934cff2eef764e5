"""A fake Discord: the REST routes and the gateway websocket that discord.py uses, on 127.0.0.1.

It checks the bot token, hands out READY, answers heartbeats, records command syncs, dispatches
INTERACTION_CREATE events that tests build (subcommands, attachment options resolved to files the
fake's CDN serves, the member's permissions), and records every interaction callback, webhook
message and channel message with its edits (JSON or multipart, with the attached files' bytes).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

API = "/api/v10"
EPHEMERAL = 1 << 6
MEMBER_PERMISSIONS = 2248473465835073  # an ordinary member: no Manage Server
MANAGE_GUILD = 1 << 5
_ids = itertools.count(1_300_000_000_000_000_000)


def snowflake() -> str:
    return str(next(_ids))


def json_response(data: Any, status: int = 200) -> web.Response:
    """JSON with exactly ``Content-Type: application/json``, as Discord sends (discord.py checks it)."""
    return web.Response(body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"})


def user_payload(user_id: int | str, name: str | None = None, bot: bool = False) -> dict:
    return {"id": str(user_id), "username": name or f"user{user_id}", "discriminator": "0",
            "global_name": name or f"User {user_id}", "avatar": None, "bot": bot, "public_flags": 0}


@dataclass
class SentMessage:
    """A message the bot created or edited through an interaction webhook."""

    payload: dict[str, Any]
    files: list[tuple[str, bytes]]  # (filename, bytes)
    message: dict[str, Any]  # what the fake answered (a Discord message object)
    at: float

    @property
    def content(self) -> str:
        return self.payload.get("content") or ""

    @property
    def embeds(self) -> list[dict]:
        return self.payload.get("embeds") or []

    @property
    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for row in self.payload.get("components") or [] for c in row.get("components", [])
                if "custom_id" in c]

    @property
    def labels(self) -> list[str]:
        return [c.get("label", "") for row in self.payload.get("components") or [] for c in row.get("components", [])]

    @property
    def ephemeral(self) -> bool:
        return bool((self.payload.get("flags") or 0) & EPHEMERAL)


@dataclass
class ChannelMessage:
    """A message the bot posted in a channel, and every version of it (the first, then each edit)."""

    id: str
    channel_id: str
    versions: list[SentMessage] = field(default_factory=list)

    @property
    def latest(self) -> SentMessage:
        return self.versions[-1]

    @property
    def content(self) -> str:
        return self.latest.content


@dataclass
class Interaction:
    """One interaction the fake dispatched, and everything the bot answered to it."""

    id: str
    token: str
    payload: dict[str, Any]
    dispatched_at: float
    callbacks: list[dict[str, Any]] = field(default_factory=list)  # {"type", "data", "at", "files"}
    originals: list[SentMessage] = field(default_factory=list)  # PATCH .../messages/@original
    followups: list[SentMessage] = field(default_factory=list)
    original_id: str = ""

    @property
    def acknowledged_after(self) -> float | None:
        """Seconds from dispatch to the first interaction callback."""
        return self.callbacks[0]["at"] - self.dispatched_at if self.callbacks else None

    @property
    def answer(self) -> SentMessage | dict | None:
        """The final answer: an immediate message (callback type 4/8), else the deferred reply."""
        if not self.callbacks:
            return None
        first = self.callbacks[0]
        if first["type"] in (4, 8):
            return first
        if self.originals and (self.originals[-1].files or self.originals[-1].content):
            return self.originals[-1]
        return self.followups[-1] if self.followups else None


class FakeDiscord:
    """Fake REST API + gateway. Test methods are thread-safe; the server runs on a ``LoopThread``."""

    def __init__(self, token: str, heartbeat_ms: int = 1000) -> None:
        self.token = token
        self.heartbeat_ms = heartbeat_ms
        self.app_id = "1200000000000000001"
        self.bot_user = user_payload(self.app_id, "AvatarBot", bot=True)
        self.lock = threading.Lock()
        self.commands: dict[str, list[dict]] = {}  # scope ("global" or guild id) -> synced commands
        self.interactions: dict[str, Interaction] = {}
        self.by_token: dict[str, Interaction] = {}
        self.identifies: list[dict] = []
        self.heartbeats: list[float] = []
        self.unauthorized: list[str] = []
        self.unknown_routes: list[str] = []
        self.hold_replies = False  # while set, message uploads wait for release()
        self.cdn: dict[str, bytes] = {}  # attachment path -> bytes, served under /cdn/
        self.downloads: list[str] = []  # attachment paths the bot fetched
        self.channel_messages: dict[str, ChannelMessage] = {}  # by message id, in posting order
        self._release: asyncio.Event | None = None
        self._sockets: list[web.WebSocketResponse] = []
        self._seq = 0
        self._runner: web.AppRunner | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.base = ""

    # -- server ------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._release = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        r = app.router
        r.add_get("/gateway", self._gateway)
        r.add_get(API + "/gateway", self._get_gateway)
        r.add_get(API + "/gateway/bot", self._get_gateway_bot)
        r.add_get(API + "/users/@me", self._me)
        r.add_get(API + "/oauth2/applications/@me", self._application)
        r.add_get(API + "/applications/@me", self._application)
        r.add_put(API + "/applications/{app}/commands", self._sync)
        r.add_put(API + "/applications/{app}/guilds/{guild}/commands", self._sync)
        r.add_get(API + "/applications/{app}/commands", self._get_commands)
        r.add_get(API + "/applications/{app}/guilds/{guild}/commands", self._get_commands)
        r.add_post(API + "/interactions/{id}/{token}/callback", self._callback)
        r.add_patch(API + "/webhooks/{app}/{token}/messages/@original", self._edit_original)
        r.add_delete(API + "/webhooks/{app}/{token}/messages/@original", self._delete_original)
        r.add_post(API + "/webhooks/{app}/{token}", self._followup)
        r.add_post(API + "/channels/{channel}/messages", self._channel_post)
        r.add_patch(API + "/channels/{channel}/messages/{message}", self._channel_edit)
        r.add_get("/cdn/{path:.*}", self._cdn)
        r.add_route("*", "/{tail:.*}", self._unknown)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_base(self) -> str:
        return self.base + API

    @property
    def gateway_url(self) -> str:
        return self.base.replace("http://", "ws://") + "/gateway"

    def _authorized(self, request: web.Request) -> bool:
        if request.headers.get("Authorization") == f"Bot {self.token}":
            return True
        with self.lock:
            self.unauthorized.append(f"{request.method} {request.path}")
        return False

    @staticmethod
    def _unauthorized() -> web.Response:
        return json_response({"message": "401: Unauthorized", "code": 0}, status=401)

    async def _unknown(self, request: web.Request) -> web.Response:
        with self.lock:
            self.unknown_routes.append(f"{request.method} {request.path}")
        return json_response({"message": "404: Not Found", "code": 0}, status=404)

    async def _get_gateway(self, request: web.Request) -> web.Response:
        return json_response({"url": self.gateway_url})

    async def _get_gateway_bot(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        return json_response({"url": self.gateway_url, "shards": 1, "session_start_limit": {
            "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}})

    async def _me(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        return json_response({**self.bot_user, "verified": True, "mfa_enabled": False, "flags": 0})

    async def _application(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        return json_response({
            "id": self.app_id, "name": "AvatarBot", "icon": None, "description": "", "rpc_origins": [],
            "bot_public": True, "bot_require_code_grant": False, "owner": user_payload(42, "owner"),
            "summary": "", "verify_key": "0" * 64, "team": None, "flags": 0, "bot": self.bot_user,
            "interactions_endpoint_url": None, "tags": []})

    async def _sync(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        body = await request.json()
        scope = request.match_info.get("guild", "global")
        synced = []
        for cmd in body:
            synced.append({"id": snowflake(), "application_id": self.app_id, "version": snowflake(),
                           "type": cmd.get("type", 1), "description": cmd.get("description", ""),
                           "default_member_permissions": cmd.get("default_member_permissions"),
                           "nsfw": cmd.get("nsfw", False), "options": cmd.get("options", []),
                           **({"guild_id": scope} if scope != "global" else {}),
                           **{k: v for k, v in cmd.items() if k not in ("options",)}})
        with self.lock:
            self.commands[scope] = synced
        return json_response(synced)

    async def _get_commands(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        with self.lock:
            return json_response(self.commands.get(request.match_info.get("guild", "global"), []))

    # -- gateway -----------------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": self.heartbeat_ms}, "s": None, "t": None})
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            op = data.get("op")
            if op == 1:
                with self.lock:
                    self.heartbeats.append(time.monotonic())
                await ws.send_json({"op": 11, "d": None, "s": None, "t": None})
            elif op == 2:
                d = data["d"]
                with self.lock:
                    self.identifies.append(d)
                if d.get("token") != self.token:
                    await ws.close(code=4004, message=b"Authentication failed.")
                    break
                self._sockets.append(ws)
                shard = d.get("shard") or [0, 1]
                await self._send(ws, "READY", {
                    "v": 10, "user": self.bot_user, "guilds": [], "session_id": "fake-session",
                    "resume_gateway_url": self.gateway_url, "shard": shard, "private_channels": [],
                    "relationships": [], "application": {"id": self.app_id, "flags": 0}})
            elif op == 6:  # resume: tell discord.py to identify afresh
                await ws.send_json({"op": 9, "d": False, "s": None, "t": None})
        if ws in self._sockets:
            self._sockets.remove(ws)
        return ws

    async def _send(self, ws: web.WebSocketResponse, event: str, data: dict) -> None:
        self._seq += 1
        await ws.send_json({"op": 0, "t": event, "s": self._seq, "d": data})

    @property
    def connected(self) -> bool:
        return bool(self._sockets)

    # -- interactions (called by tests, from any thread) -------------------------------------------

    def _command(self, name: str, guild_id: str | None) -> dict:
        with self.lock:
            scopes = [guild_id, "global"] if guild_id else ["global"]
            for scope in scopes:
                for cmd in self.commands.get(scope, []):
                    if cmd["name"] == name:
                        return cmd
        raise KeyError(f"command /{name} was not synced")

    def _base_payload(self, itype: int, user_id: int, guild_id: int | None, channel_id: int | None,
                      permissions: int = MEMBER_PERMISSIONS, locale: str = "en-US") -> dict:
        iid, token = snowflake(), f"itoken-{snowflake()}"
        channel_id = channel_id or (777 if guild_id else 9000 + int(user_id) % 1000)
        payload = {"id": iid, "application_id": self.app_id, "type": itype, "token": token, "version": 1,
                   "channel_id": str(channel_id), "locale": locale, "entitlements": [],
                   "attachment_size_limit": 10 * 1024 * 1024, "app_permissions": "2248473465835073",
                   "authorizing_integration_owners": {"0": str(guild_id)} if guild_id else {"1": str(user_id)}}
        user = user_payload(user_id)
        if guild_id:
            payload.update(guild_id=str(guild_id), guild_locale="en-US", context=0,
                           channel={"id": str(channel_id), "type": 0, "guild_id": str(guild_id), "name": "general",
                                    "position": 0, "permission_overwrites": [], "nsfw": False, "parent_id": None},
                           member={"user": user, "roles": [], "joined_at": "2024-01-01T00:00:00+00:00",
                                   "deaf": False, "mute": False, "flags": 0, "permissions": str(permissions),
                                   "nick": None, "avatar": None, "pending": False})
        else:
            payload.update(user=user, context=1,
                           channel={"id": str(channel_id), "type": 1, "recipients": [user], "last_message_id": None})
        return payload

    def _options(self, cmd: dict, options: dict[str, Any], focused: str | None = None) -> list[dict]:
        types = {o["name"]: o["type"] for o in cmd.get("options", [])}
        out = []
        for name, value in options.items():
            opt = {"name": name, "type": types.get(name, 3), "value": value}
            if name == focused:
                opt["focused"] = True
            out.append(opt)
        return out

    def attachment(self, filename: str, data: bytes, size: int | None = None) -> dict:
        """An uploaded file, served by the fake's CDN; pass it as an attachment option's value.
        ``size`` is what Discord reports (the real size unless given)."""
        ident = snowflake()
        path = f"attachments/{ident}/{filename}"
        self.cdn[path] = data
        return {"id": ident, "filename": filename, "size": len(data) if size is None else size,
                "url": f"{self.base}/cdn/{path}", "proxy_url": f"{self.base}/cdn/{path}",
                "content_type": "application/zip"}

    def slash(self, name: str, options: dict[str, Any] | None = None, user_id: int = 1001,
              guild_id: int | None = 555, channel_id: int | None = None,
              permissions: int = MEMBER_PERMISSIONS, locale: str = "en-US") -> Interaction:
        """Dispatch ``/name`` with ``options`` as ``user_id`` (in a server, or a DM when guild_id is None),
        whose Discord client is set to ``locale``.
        ``name`` may name a subcommand (``"style train"``); an option whose value comes from
        ``attachment()`` is sent as an attachment, resolved in the payload."""
        top, _, sub = name.partition(" ")
        cmd = self._command(top, str(guild_id) if guild_id else None)
        payload = self._base_payload(2, user_id, guild_id, channel_id, permissions, locale)
        options = dict(options or {})
        attachments = {k: v for k, v in options.items() if isinstance(v, dict) and "url" in v}
        options.update({k: v["id"] for k, v in attachments.items()})
        if sub:
            spec = next(o for o in cmd.get("options", []) if o["name"] == sub)
            opts = [{"name": sub, "type": 1, "options": self._options(spec, options)}]
        else:
            opts = self._options(cmd, options)
        payload["data"] = {"id": cmd["id"], "name": top, "type": 1, "options": opts}
        if attachments:
            payload["data"]["resolved"] = {"attachments": {a["id"]: a for a in attachments.values()}}
        if guild_id and "guild_id" in cmd:
            payload["data"]["guild_id"] = cmd["guild_id"]
        return self.dispatch(payload)

    def autocomplete(self, name: str, option: str, value: str, user_id: int = 1001,
                     guild_id: int | None = 555) -> Interaction:
        cmd = self._command(name, str(guild_id) if guild_id else None)
        payload = self._base_payload(4, user_id, guild_id, None)
        payload["data"] = {"id": cmd["id"], "name": name, "type": 1,
                           "options": self._options(cmd, {option: value}, focused=option)}
        return self.dispatch(payload)

    def click(self, message: SentMessage, custom_id: str, user_id: int = 1001,
              guild_id: int | None = 555, locale: str = "en-US", permissions: int = MEMBER_PERMISSIONS) -> Interaction:
        """Press the button ``custom_id`` under ``message`` (as a member with ``permissions``)."""
        assert custom_id in message.custom_ids, f"no button {custom_id!r} under that message"
        payload = self._base_payload(3, user_id, guild_id, int(message.message["channel_id"]), permissions,
                                     locale=locale)
        payload["data"] = {"custom_id": custom_id, "component_type": 2}
        payload["message"] = message.message
        return self.dispatch(payload)

    def dispatch(self, payload: dict) -> Interaction:
        """Send an INTERACTION_CREATE to the connected bot (thread-safe)."""
        record = Interaction(payload["id"], payload["token"], payload, 0.0)
        with self.lock:
            self.interactions[record.id] = record
            self.by_token[record.token] = record

        async def send() -> None:
            ws = self._sockets[0]
            record.dispatched_at = time.monotonic()
            await self._send(ws, "INTERACTION_CREATE", payload)

        asyncio.run_coroutine_threadsafe(send(), self.loop).result(10)
        return record

    def dispatch_many(self, payloads: list[dict]) -> list[Interaction]:
        """Send many INTERACTION_CREATEs back to back, as a burst."""
        records = [Interaction(p["id"], p["token"], p, 0.0) for p in payloads]
        with self.lock:
            for rec in records:
                self.interactions[rec.id] = rec
                self.by_token[rec.token] = rec

        async def send() -> None:
            ws = self._sockets[0]
            for rec in records:
                rec.dispatched_at = time.monotonic()
                await self._send(ws, "INTERACTION_CREATE", rec.payload)

        asyncio.run_coroutine_threadsafe(send(), self.loop).result(30)
        return records

    def slash_payload(self, name: str, options: dict[str, Any], user_id: int, guild_id: int | None = 555) -> dict:
        """The payload ``slash`` would dispatch, for ``dispatch_many``."""
        cmd = self._command(name, str(guild_id) if guild_id else None)
        payload = self._base_payload(2, user_id, guild_id, None)
        payload["data"] = {"id": cmd["id"], "name": name, "type": 1, "options": self._options(cmd, options)}
        return payload

    def hold(self) -> None:
        """Make picture uploads wait (the bot's requests stay in flight) until ``release()``."""
        self.hold_replies = True
        self.loop.call_soon_threadsafe(self._release.clear)

    def release(self) -> None:
        """Let held message uploads through."""
        self.hold_replies = False
        self.loop.call_soon_threadsafe(self._release.set)

    # -- interaction responses ---------------------------------------------------------------------

    @staticmethod
    async def _read_body(request: web.Request) -> tuple[dict, list[tuple[str, bytes]]]:
        if request.content_type.startswith("multipart/"):
            payload, files = {}, []
            reader = await request.multipart()
            async for part in reader:
                if part.name == "payload_json":
                    payload = json.loads(await part.text())
                else:
                    files.append((part.filename or part.name, bytes(await part.read())))
            return payload, files
        text = await request.text()
        return (json.loads(text) if text else {}), []

    def _message(self, record: Interaction, payload: dict, files: list[tuple[str, bytes]],
                 message_id: str | None = None) -> dict:
        return self._message_object(record.payload["channel_id"], record.payload.get("guild_id"),
                                    0 if record.payload["type"] != 2 else 20, payload, files, message_id)

    def _message_object(self, channel_id: str, guild_id: str | None, mtype: int, payload: dict,
                        files: list[tuple[str, bytes]], message_id: str | None = None) -> dict:
        attachments = [{"id": snowflake(), "filename": name, "size": len(data),
                        "url": f"{self.base}/attachments/{name}", "proxy_url": f"{self.base}/attachments/{name}",
                        "content_type": "image/png" if name.endswith(".png") else "image/gif"}
                       for name, data in files]
        return {"id": message_id or snowflake(), "channel_id": channel_id,
                "author": {**self.bot_user}, "content": payload.get("content") or "",
                "timestamp": "2024-01-01T00:00:00+00:00", "edited_timestamp": None, "tts": False,
                "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": attachments,
                "embeds": payload.get("embeds") or [], "pinned": False, "type": mtype,
                "flags": payload.get("flags") or 0, "components": payload.get("components") or [],
                "application_id": self.app_id, "webhook_id": self.app_id,
                **({"guild_id": guild_id} if guild_id else {})}

    async def _callback(self, request: web.Request) -> web.Response:
        record = self.interactions.get(request.match_info["id"])
        if record is None or record.token != request.match_info["token"]:
            return json_response({"message": "Unknown interaction", "code": 10062}, status=404)
        body, files = await self._read_body(request)
        with self.lock:
            if record.callbacks:
                return json_response({"message": "Interaction has already been acknowledged.",
                                          "code": 40060}, status=400)
            record.callbacks.append({"type": body.get("type"), "data": body.get("data") or {},
                                     "files": files, "at": time.monotonic()})
        ctype = body.get("type")
        data = body.get("data") or {}
        record.original_id = snowflake()
        if request.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        response: dict[str, Any] = {"interaction": {
            "id": record.id, "type": record.payload["type"], "response_message_id": record.original_id,
            "response_message_loading": ctype == 5, "response_message_ephemeral": bool((data.get("flags") or 0) & EPHEMERAL)}}
        if ctype in (4, 5, 7):
            response["resource"] = {"type": ctype, "message": self._message(record, data, files, record.original_id)}
        else:
            response["resource"] = {"type": ctype}
        return json_response(response)

    async def _webhook_message(self, request: web.Request, original: bool) -> web.Response:
        record = self.by_token.get(request.match_info["token"])
        if record is None or request.match_info["app"] != self.app_id:
            return json_response({"message": "Unknown Webhook", "code": 10015}, status=404)
        if original and not record.callbacks:
            return json_response({"message": "Unknown Message", "code": 10008}, status=404)
        payload, files = await self._read_body(request)
        if self.hold_replies and files:
            await self._release.wait()
        message = self._message(record, payload, files, record.original_id if original else None)
        sent = SentMessage(payload, files, message, time.monotonic())
        with self.lock:
            (record.originals if original else record.followups).append(sent)
        return json_response(message)

    async def _edit_original(self, request: web.Request) -> web.Response:
        return await self._webhook_message(request, original=True)

    async def _followup(self, request: web.Request) -> web.Response:
        return await self._webhook_message(request, original=False)

    async def _delete_original(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def _channel_post(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        channel = request.match_info["channel"]
        payload, files = await self._read_body(request)
        message = self._message_object(channel, None, 0, payload, files)
        with self.lock:
            self.channel_messages[message["id"]] = ChannelMessage(
                message["id"], channel, [SentMessage(payload, files, message, time.monotonic())])
        return json_response(message)

    async def _channel_edit(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        record = self.channel_messages.get(request.match_info["message"])
        if record is None or record.channel_id != request.match_info["channel"]:
            return json_response({"message": "Unknown Message", "code": 10008}, status=404)
        payload, files = await self._read_body(request)
        with self.lock:
            previous = record.latest.payload
            merged = {**previous, **payload}
            message = self._message_object(record.channel_id, None, 0, merged, files, record.id)
            record.versions.append(SentMessage(merged, files, message, time.monotonic()))
        return json_response(message)

    async def _cdn(self, request: web.Request) -> web.Response:
        data = self.cdn.get(request.match_info["path"])
        with self.lock:
            self.downloads.append(request.match_info["path"])
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="application/octet-stream")

    def posts(self, channel_id: int | str) -> list[ChannelMessage]:
        """The messages the bot posted in a channel, oldest first."""
        with self.lock:
            return [m for m in self.channel_messages.values() if m.channel_id == str(channel_id)]
