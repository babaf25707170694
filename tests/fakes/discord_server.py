"""A fake Discord for tests: the REST API and the gateway websocket on 127.0.0.1.

Written from Discord's public API documentation (API v10) so that a real, unmodified
``discord.Client`` can run against it::

    async with FakeDiscordServer() as srv:
        discord.http.Route.BASE = srv.api_url
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(srv.gateway_url)
        ...  # start the client with srv.token
        mid = srv.push_message(None, "Zoe", "hello", guild=False)
        [reply] = await srv.wait_for_sent(1)
        assert reply.channel_id == srv.dm_channel_id("Zoe")

What it serves
--------------
REST (under ``/api/v10``, every JSON answer with exactly ``Content-Type: application/json``):
``GET /users/@me``, ``GET /oauth2/applications/@me``, ``GET /gateway``, ``GET /gateway/bot``,
``POST /channels/{id}/messages`` (JSON, or multipart ``payload_json`` + ``files[n]``; a
``nonce`` with ``enforce_nonce`` seen before in the channel answers the message it made),
``PATCH /channels/{id}/messages/{id}`` (the bot's own; ``edits``), ``POST /channels/{id}/typing`` (204), ``POST /channels/{id}/attachments`` (an upload slot
whose ``upload_url`` points back here, ``PUT`` the bytes there),
``PUT /applications/{app}/commands`` and ``PUT /applications/{app}/guilds/{guild}/commands``
(bulk overwrite), ``POST /interactions/{id}/{token}/callback``, ``POST /webhooks/{app}/{token}``
(follow-ups), ``PATCH``/``DELETE /webhooks/{app}/{token}/messages/@original``. Attachments
it stored are served back from ``GET /cdn/...``, and so are files a test attaches to a
person's message (``person_attachment``).

Gateway (``ws://127.0.0.1:PORT/gateway``, plain-text JSON frames): HELLO (op 10), heartbeat
ACK (op 11), IDENTIFY (op 2) -> READY (unavailable guild stubs) then GUILD_CREATE,
RESUME (op 6) -> the events missed since the client's sequence number, then RESUMED;
an unknown session gets INVALID_SESSION (op 9). Events dispatched while no client is
connected are kept and replayed on resume, as Discord does.

Test API
--------
``push_message``, ``push_interaction``, ``redeliver`` (the same MESSAGE_CREATE again),
``drop_gateway`` (abrupt close, close code, op 7 reconnect or op 9 invalid session),
``fail_next`` (429 with ``Via`` and ``X-RateLimit-*`` headers, or any status),
``sent`` / ``wait_for_sent``, ``typing``, ``commands``, ``interaction_callbacks``,
``requests``, ``identifies`` / ``resumes`` / ``wait_for``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

DISCORD_EPOCH_MS = 1420070400000
API_PREFIX = "/api/v10"

MESSAGE_FLAG_VOICE = 8192
CHANNEL_GUILD_TEXT = 0
CHANNEL_GUILD_ANNOUNCEMENT = 5
CHANNEL_DM = 1

# Gateway opcodes.
OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_RESUME = 0, 1, 2, 6
OP_RECONNECT, OP_INVALID_SESSION, OP_HELLO, OP_HEARTBEAT_ACK = 7, 9, 10, 11


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer whose Content-Type is exactly ``application/json`` (discord.py checks)."""
    return web.Response(
        status=status, body=json.dumps(data).encode(), headers={"Content-Type": "application/json", **(headers or {})}
    )


def _error(status: int, message: str, code: int = 0, errors: dict | None = None) -> web.Response:
    body: dict[str, Any] = {"message": message, "code": code}
    if errors:
        body["errors"] = errors
    return _json(body, status)


@dataclass
class FakeFile:
    """A file the bot uploaded: a multipart part, or the bytes PUT to an upload slot."""

    filename: str
    content_type: str | None
    data: bytes


@dataclass
class SentMessage:
    """A message the bot created (in a channel, or as an interaction response)."""

    id: str
    channel_id: str
    content: str
    flags: int
    attachments: list[dict[str, Any]]
    files: list[FakeFile]
    payload: dict[str, Any]
    message_reference: dict[str, Any] | None = None
    via: str = "channel"  # "channel" | "followup" | "original"
    interaction_token: str | None = None
    multipart: bool = False

    @property
    def is_voice_message(self) -> bool:
        return bool(self.flags & MESSAGE_FLAG_VOICE)


@dataclass
class RecordedRequest:
    method: str
    path: str  # below the API prefix for API calls
    status: int
    at: float
    headers: dict[str, str]


@dataclass
class FakeInteraction:
    id: str
    token: str
    name: str
    channel_id: str
    user_id: str
    payload: dict[str, Any]


@dataclass
class _Fault:
    pattern: re.Pattern[str]
    method: str | None
    remaining: int
    status: int
    retry_after: float
    is_global: bool
    after: bool = False  # the request is carried out, then its answer is lost


@dataclass(eq=False)
class _Conn:
    ws: web.WebSocketResponse
    request: web.Request
    session: _Session | None = None
    outbox: asyncio.Queue = field(default_factory=asyncio.Queue)  # frames, sent in order by one writer


@dataclass(eq=False)
class _Session:
    id: str
    seq: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)
    conn: _Conn | None = None


class FakeDiscordServer:
    def __init__(
        self,
        *,
        token: str | None = None,
        bot_name: str = "Mira",
        guild_name: str = "Lantern Club",
        host: str = "127.0.0.1",
        heartbeat_interval_ms: int = 41250,
    ):
        self.host = host
        self.port: int | None = None
        self.token = token or f"fake.{secrets.token_urlsafe(16)}"
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self._ids = itertools.count(1)
        self.bot_user = self._user_payload(bot_name, bot=True)
        self.application_id = self.new_id()
        self.guild_id = self.new_id()
        self.guild_name = guild_name
        self.channel_id = self.new_id()  # the guild's text channel, "#general"
        self.users: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, dict[str, Any]] = {
            self.channel_id: {
                "id": self.channel_id, "type": CHANNEL_GUILD_TEXT, "guild_id": self.guild_id, "name": "general",
                "position": 0, "permission_overwrites": [], "nsfw": False, "parent_id": None, "topic": None,
                "last_message_id": None, "rate_limit_per_user": 0,
            }
        }
        self.messages: dict[str, dict[str, Any]] = {}  # every message payload, pushed or sent
        # What the bot did.
        self.sent: list[SentMessage] = []
        self._nonces: dict[tuple[str, str], str] = {}  # (channel, nonce) -> message id
        self.edits: list[tuple[str, str]] = []  # (message id, new content) of PATCHed messages
        self.crossposts: list[str] = []  # message ids published to an announcement channel's followers
        self.webhooks: dict[str, dict[str, Any]] = {}  # webhook id -> {token, channel_id, name}
        self.nonce_repeats = 0  # creates answered with an earlier message because of their nonce
        self.typing: list[str] = []  # channel ids, one per POST /typing
        self.commands: dict[str, list[dict[str, Any]]] = {}  # "global" or guild id -> last bulk overwrite
        self.command_puts: list[tuple[str, list[dict[str, Any]]]] = []
        self.interactions: dict[str, FakeInteraction] = {}
        self.interaction_callbacks: list[dict[str, Any]] = []
        self.deleted_originals: list[str] = []
        self.uploads: dict[str, bytes] = {}  # upload_filename -> bytes
        self.requests: list[RecordedRequest] = []
        # Gateway state.
        self.identifies: list[dict[str, Any]] = []
        self.resumes: list[dict[str, Any]] = []
        self.heartbeats = 0
        self._sessions: dict[str, _Session] = {}
        self._session: _Session | None = None
        self._conns: set[_Conn] = set()
        self._faults: list[_Fault] = []
        self._pending_slots: dict[str, str] = {}  # upload key -> upload_filename
        self._runner: web.AppRunner | None = None

    # -- addresses ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/gateway"

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> FakeDiscordServer:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        r = app.router
        p = API_PREFIX
        r.add_get(p + "/users/@me", self._users_me)
        r.add_get(p + "/oauth2/applications/@me", self._application_me)
        r.add_get(p + "/gateway", self._gateway_info)
        r.add_get(p + "/gateway/bot", self._gateway_bot)
        r.add_post(p + "/channels/{channel_id}/messages", self._create_message)
        r.add_patch(p + "/channels/{channel_id}/messages/{message_id}", self._edit_message)
        r.add_post(p + "/channels/{channel_id}/messages/{message_id}/crosspost", self._crosspost)
        r.add_post(p + "/channels/{channel_id}/typing", self._typing)
        r.add_post(p + "/channels/{channel_id}/attachments", self._attachment_slots)
        r.add_put(p + "/applications/{app_id}/commands", self._put_commands)
        r.add_put(p + "/applications/{app_id}/guilds/{guild_id}/commands", self._put_commands)
        r.add_post(p + "/interactions/{interaction_id}/{token}/callback", self._interaction_callback)
        r.add_post(p + "/webhooks/{app_id}/{token}", self._followup)
        r.add_patch(p + "/webhooks/{app_id}/{token}/messages/@original", self._edit_original)
        r.add_delete(p + "/webhooks/{app_id}/{token}/messages/@original", self._delete_original)
        r.add_put("/upload/{key}", self._upload)
        r.add_get("/cdn/{tail:.*}", self._cdn)
        self.cdn_downloads: list[str] = []  # keys of the files the bot fetched from /cdn
        r.add_get("/gateway", self._gateway_ws)
        self._cdn_files: dict[str, FakeFile] = {}
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def close(self) -> None:
        for conn in list(self._conns):
            if not conn.ws.closed:
                await conn.ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscordServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- ids and payloads ---------------------------------------------------------------

    def new_id(self) -> str:
        """A snowflake: creation time in the high bits, so discord.py's date maths work."""
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return str((ms << 22) | (next(self._ids) & 0x3FFFFF))

    def _user_payload(self, name: str, *, bot: bool = False) -> dict[str, Any]:
        return {
            "id": self.new_id(), "username": name.lower().replace(" ", "_"), "global_name": name,
            "discriminator": "0", "avatar": None, "bot": bot, "public_flags": 0, "flags": 0,
        }

    def user(self, author: str | dict[str, Any]) -> dict[str, Any]:
        """A person by display name (made on first use), or a user payload as given."""
        if isinstance(author, dict):
            self.users.setdefault(author["global_name"] or author["username"], author)
            return author
        if author not in self.users:
            self.users[author] = self._user_payload(author)
        return self.users[author]

    def dm_channel_id(self, author: str | dict[str, Any]) -> str:
        """The id of the DM channel between the bot and this person (made on first use)."""
        user = self.user(author)
        for ch in self.channels.values():
            if ch["type"] == CHANNEL_DM and ch["recipients"][0]["id"] == user["id"]:
                return ch["id"]
        cid = self.new_id()
        self.channels[cid] = {"id": cid, "type": CHANNEL_DM, "recipients": [user], "last_message_id": None}
        return cid

    def _member(self, user: dict[str, Any] | None = None) -> dict[str, Any]:
        m = {"roles": [], "joined_at": _now_iso(), "deaf": False, "mute": False, "flags": 0, "nick": None}
        if user is not None:
            m["user"] = user
        return m

    def guild_payload(self) -> dict[str, Any]:
        return {
            "id": self.guild_id, "name": self.guild_name, "icon": None, "owner_id": self.bot_user["id"],
            "unavailable": False, "member_count": 2, "large": False, "joined_at": _now_iso(),
            "features": [], "emojis": [], "stickers": [], "threads": [], "stage_instances": [],
            "guild_scheduled_events": [], "soundboard_sounds": [], "voice_states": [], "presences": [],
            "roles": [{
                "id": self.guild_id, "name": "@everyone", "permissions": "1071698660929", "position": 0,
                "color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0,
            }],
            "channels": [c for c in self.channels.values() if c.get("guild_id") == self.guild_id],
            "members": [self._member(self.bot_user)],
            "preferred_locale": "en-US", "premium_tier": 0, "verification_level": 0,
            "default_message_notifications": 0, "explicit_content_filter": 0, "mfa_level": 0, "nsfw_level": 0,
        }

    def _application_payload(self) -> dict[str, Any]:
        return {
            "id": self.application_id, "name": self.bot_user["global_name"], "icon": None, "description": "",
            "bot_public": True, "bot_require_code_grant": False, "verify_key": secrets.token_hex(32),
            "owner": self._user_payload("Owner"), "flags": 0, "team": None, "summary": "",
            "interactions_endpoint_url": None, "redirect_uris": [], "tags": [],
            "bot": self.bot_user,
        }

    def _message_payload(
        self,
        *,
        channel_id: str,
        author: dict[str, Any],
        content: str,
        guild: bool,
        mentions: list[dict[str, Any]] | None = None,
        reply_to: str | None = None,
        attachments: list[dict[str, Any]] | None = None,
        flags: int = 0,
        message_id: str | None = None,
        webhook_id: str | None = None,
        stickers: list[str] | None = None,
    ) -> dict[str, Any]:
        m: dict[str, Any] = {
            "id": message_id or self.new_id(), "channel_id": channel_id, "author": author, "content": content,
            "timestamp": _now_iso(), "edited_timestamp": None, "tts": False, "mention_everyone": False,
            "mentions": mentions or [], "mention_roles": [], "attachments": attachments or [], "embeds": [],
            "pinned": False, "type": 0, "flags": flags, "components": [],
        }
        if stickers:  # sticker_items: partial stickers (id, name, format_type 1 = PNG)
            m["sticker_items"] = [{"id": self.new_id(), "name": name, "format_type": 1} for name in stickers]
        if guild:
            m["guild_id"] = self.guild_id
            if webhook_id is None:
                m["member"] = self._member()
        else:
            m["channel_type"] = CHANNEL_DM
        if webhook_id is not None:
            m["webhook_id"] = webhook_id
            m["application_id"] = self.application_id
        if reply_to is not None:
            m["type"] = 19  # REPLY
            ref: dict[str, Any] = {"type": 0, "message_id": reply_to, "channel_id": channel_id}
            if guild:
                ref["guild_id"] = self.guild_id
            m["message_reference"] = ref
            m["referenced_message"] = self.messages.get(reply_to)
        self.messages[m["id"]] = m
        return m

    # -- test API: events -----------------------------------------------------------------

    def push_message(
        self,
        channel_id: str | None,
        author: str | dict[str, Any],
        content: str,
        *,
        guild: bool = True,
        mentions_bot: bool = False,
        reply_to: str | None = None,
        message_id: str | None = None,
        attachments: list[dict[str, Any]] | None = None,
        stickers: list[str] | None = None,
        flags: int = 0,
    ) -> str:
        """A person posts a message; returns its id. ``channel_id`` None means the guild's
        text channel (``guild=True``) or the author's DM channel (``guild=False``).
        ``mentions_bot`` puts ``<@bot>`` in front of the text (unless already there) and
        the bot in ``mentions``; ``reply_to`` makes it a reply (``message_reference`` and
        ``referenced_message``); ``stickers`` adds ``sticker_items`` by name; ``flags``
        8192 marks a voice message."""
        user = self.user(author)
        if channel_id is None:
            channel_id = self.channel_id if guild else self.dm_channel_id(user)
        mentions: list[dict[str, Any]] = []
        by_id = {u["id"]: u for u in self.users.values()}
        for uid in dict.fromkeys(re.findall(r"<@!?(\d+)>", content)):  # people mentioned in the text
            if uid in by_id:
                mentions.append({**by_id[uid], **({"member": self._member()} if guild else {})})
        if mentions_bot:
            tag = f"<@{self.bot_user['id']}>"
            if tag not in content:
                content = f"{tag} {content}"
            bot = dict(self.bot_user)
            if guild:
                bot["member"] = self._member()
            mentions.append(bot)
        data = self._message_payload(
            channel_id=channel_id, author=user, content=content, guild=guild, mentions=mentions,
            reply_to=reply_to, message_id=message_id, attachments=attachments, stickers=stickers, flags=flags,
        )
        self.dispatch("MESSAGE_CREATE", data)
        return data["id"]

    def person_attachment(self, filename: str, data: bytes, content_type: str | None = "image/jpeg",
                          *, size: int | None = None, width: int | None = None, height: int | None = None) -> dict[str, Any]:
        """An attachment payload for ``push_message(attachments=[...])`` whose ``url`` this
        server serves (``size`` may claim another size, to test limits). Needs a started server."""
        aid = self.new_id()
        key = f"attachments/{aid}/{filename}"
        self._cdn_files[key] = FakeFile(filename, content_type, data)
        a: dict[str, Any] = {
            "id": aid, "filename": filename, "size": size if size is not None else len(data),
            "url": f"{self.base_url}/cdn/{key}", "proxy_url": f"{self.base_url}/cdn/{key}",
        }
        if content_type is not None:
            a["content_type"] = content_type
        if width is not None and height is not None:
            a["width"], a["height"] = width, height
        return a

    def redeliver(self, message_id: str) -> None:
        """Dispatch the same MESSAGE_CREATE again (a duplicate delivery)."""
        self.dispatch("MESSAGE_CREATE", self.messages[message_id])

    def push_interaction(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        user: str | dict[str, Any] = "Zoe",
        guild: bool = True,
        channel_id: str | None = None,
    ) -> FakeInteraction:
        """Someone runs slash command ``/name`` with string ``options``."""
        u = self.user(user)
        if channel_id is None:
            channel_id = self.channel_id if guild else self.dm_channel_id(u)
        registered = next(
            (c for scope in self.commands.values() for c in scope if c["name"] == name), {"id": self.new_id()}
        )
        iid, token = self.new_id(), "itok_" + secrets.token_urlsafe(24)
        data: dict[str, Any] = {
            "id": iid, "application_id": self.application_id, "type": 2, "token": token, "version": 1,
            "data": {
                "id": registered["id"], "name": name, "type": 1,
                "options": [{"name": k, "type": 3, "value": v} for k, v in (options or {}).items()],
            },
            "channel_id": channel_id, "channel": dict(self.channels[channel_id]), "locale": "en-US",
            "app_permissions": "1071698660929", "entitlements": [],
            "authorizing_integration_owners": {"0": self.guild_id} if guild else {"1": u["id"]},
            "attachment_size_limit": 10 * 1024 * 1024, "context": 0 if guild else 1,
        }
        if guild:
            data["guild_id"] = self.guild_id
            data["guild_locale"] = "en-US"
            data["member"] = {**self._member(u), "permissions": "1071698660929"}
        else:
            data["user"] = u
        inter = FakeInteraction(iid, token, name, channel_id, u["id"], data)
        self.interactions[token] = inter
        self.dispatch("INTERACTION_CREATE", data)
        return inter

    def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a gateway event, or keep it for a RESUME if no client is connected."""
        s = self._session
        if s is None:
            raise RuntimeError("no client has identified yet")
        s.seq += 1
        payload = {"op": OP_DISPATCH, "t": event, "s": s.seq, "d": data}
        s.log.append(payload)
        if s.conn is not None and not s.conn.ws.closed:
            s.conn.outbox.put_nowait(payload)

    async def drop_gateway(self, how: str = "abort", code: int = 4000) -> None:
        """Break the client's gateway connection.

        ``abort``: the TCP connection just goes away (the client sees close code 1006);
        ``close``: a close frame with ``code`` (4000 "unknown error" is resumable);
        ``reconnect``: op 7, Discord asking the client to reconnect and resume;
        ``invalid``: op 9 ``d: false``, the session is gone and the client must IDENTIFY.
        Events dispatched from now until the client resumes are replayed on RESUME."""
        s = self._session
        if s is None or s.conn is None:
            raise RuntimeError("no gateway connection to drop")
        conn, s.conn = s.conn, None
        if how == "abort":
            transport = conn.request.transport
            if transport is not None:
                transport.abort()
        elif how == "close":
            await conn.ws.close(code=code)
        elif how == "reconnect":
            conn.outbox.put_nowait({"op": OP_RECONNECT, "d": None, "s": None, "t": None})
        elif how == "invalid":
            self._sessions.pop(s.id, None)
            self._session = None
            conn.outbox.put_nowait({"op": OP_INVALID_SESSION, "d": False, "s": None, "t": None})
        else:
            raise ValueError(f"unknown way to drop the gateway: {how!r}")

    @property
    def connected(self) -> bool:
        s = self._session
        return s is not None and s.conn is not None and not s.conn.ws.closed

    # -- test API: faults and waiting -------------------------------------------------------

    def fail_next(
        self,
        path_pattern: str,
        n: int = 1,
        retry_after: float = 0.5,
        *,
        status: int = 429,
        method: str | None = None,
        is_global: bool = False,
        after: bool = False,
    ) -> None:
        """The next ``n`` API requests whose path (below ``/api/v10``) matches the regex
        ``path_pattern`` fail: 429 by default, with ``retry_after`` in the JSON body and
        ``Via``/``Retry-After``/``X-RateLimit-*`` headers as Discord sends them.
        ``after``: the request is carried out first and only its answer is replaced by the
        failure, as when a gateway times out on a message Discord did create."""
        self._faults.append(_Fault(re.compile(path_pattern), method, n, status, retry_after, is_global, after))

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            await asyncio.sleep(0.01)

    async def wait_for_sent(self, n: int, timeout: float = 20.0) -> list[SentMessage]:
        """Wait until the bot has created at least ``n`` messages; returns them all."""
        try:
            await self.wait_for(lambda: len(self.sent) >= n, timeout, f"{n} sent messages")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; got {len(self.sent)}: {[m.content[:60] for m in self.sent]}") from None
        return list(self.sent)

    def requests_to(self, pattern: str, method: str | None = None) -> list[RecordedRequest]:
        rx = re.compile(pattern)
        return [r for r in self.requests if rx.search(r.path) and (method is None or r.method == method)]

    # -- REST -----------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler):
        path = request.path
        api = path.startswith(API_PREFIX)
        rel = path[len(API_PREFIX):] if api else path
        response: web.StreamResponse
        if api and (fault := self._take_fault(request.method, rel)) is not None:
            if fault.after:
                await handler(request)
            response = self._fault_response(fault)
        elif api and not self._authorized(request, rel):
            response = _error(401, "401: Unauthorized")
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = _error(exc.status, exc.reason)
        if api:
            if 200 <= response.status < 300 and "X-RateLimit-Limit" not in response.headers:
                response.headers.update({
                    "X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "49", "X-RateLimit-Reset-After": "1.000",
                    "X-RateLimit-Reset": f"{time.time() + 1:.3f}", "X-RateLimit-Bucket": _bucket(rel),
                })
            self.requests.append(RecordedRequest(request.method, rel, response.status, time.monotonic(), dict(request.headers)))
        return response

    def _authorized(self, request: web.Request, rel: str) -> bool:
        if rel.startswith(("/webhooks/", "/interactions/")):
            return True  # authorised by the interaction token in the path
        return request.headers.get("Authorization") == f"Bot {self.token}"

    def _take_fault(self, method: str, rel: str) -> _Fault | None:
        for f in self._faults:
            if f.remaining > 0 and f.pattern.search(rel) and (f.method is None or f.method == method):
                f.remaining -= 1
                return f
        return None

    def _fault_response(self, f: _Fault) -> web.Response:
        if f.status != 429:
            return _error(f.status, f"{f.status}: fake failure")
        headers = {
            "Via": "1.1 google", "Retry-After": str(math.ceil(f.retry_after)),
            "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{time.time() + f.retry_after:.3f}", "X-RateLimit-Reset-After": f"{f.retry_after:.3f}",
            "X-RateLimit-Bucket": "fakebucket", "X-RateLimit-Scope": "global" if f.is_global else "user",
        }
        if f.is_global:
            headers["X-RateLimit-Global"] = "true"
        return _json({"message": "You are being rate limited.", "retry_after": f.retry_after, "global": f.is_global},
                     429, headers)

    async def _users_me(self, request: web.Request) -> web.Response:
        return _json({**self.bot_user, "verified": True, "mfa_enabled": False, "locale": "en-US"})

    async def _application_me(self, request: web.Request) -> web.Response:
        return _json(self._application_payload())

    async def _gateway_info(self, request: web.Request) -> web.Response:
        return _json({"url": self.gateway_url})

    async def _gateway_bot(self, request: web.Request) -> web.Response:
        return _json({
            "url": self.gateway_url, "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 86400000, "max_concurrency": 1},
        })

    async def _typing(self, request: web.Request) -> web.Response:
        cid = request.match_info["channel_id"]
        if cid not in self.channels:
            return _error(404, "Unknown Channel", 10003)
        self.typing.append(cid)
        return web.Response(status=204)

    async def _read_message_body(self, request: web.Request) -> tuple[dict[str, Any], list[FakeFile], bool]:
        """The JSON payload and the files of a message create (JSON or multipart)."""
        if request.content_type.startswith("multipart/"):
            payload: dict[str, Any] = {}
            files: dict[int, FakeFile] = {}
            reader = await request.multipart()
            async for part in reader:
                data = await part.read(decode=False)
                if part.name == "payload_json":
                    payload = json.loads(data)
                elif part.name and (m := re.fullmatch(r"files\[(\d+)\]", part.name)):
                    files[int(m.group(1))] = FakeFile(part.filename or "", part.headers.get("Content-Type"), bytes(data))
                else:
                    raise web.HTTPBadRequest(reason=f"unexpected multipart field {part.name!r}")
            # attachments[].id refers to files[n]
            ordered = []
            for att in payload.get("attachments", []):
                idx = int(att["id"])
                if idx not in files:
                    raise web.HTTPBadRequest(reason=f"attachment {idx} has no files[{idx}] part")
                ordered.append(files.pop(idx))
            ordered.extend(files[k] for k in sorted(files))
            return payload, ordered, True
        try:
            return await request.json(), [], False
        except json.JSONDecodeError:
            raise web.HTTPBadRequest(reason="body is not JSON") from None

    def _store_message(
        self, channel_id: str, payload: dict[str, Any], files: list[FakeFile], multipart: bool, *,
        via: str = "channel", token: str | None = None, guild: bool | None = None,
    ) -> web.Response:
        content = payload.get("content") or ""
        flags = int(payload.get("flags") or 0)
        atts_in = list(payload.get("attachments") or [])
        errors: dict[str, Any] = {}
        if len(content) > 2000:
            errors["content"] = {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]}
        # Attachments uploaded to a slot beforehand carry uploaded_filename.
        if not multipart:
            for att in atts_in:
                up = att.get("uploaded_filename")
                if up is None or up not in self.uploads:
                    errors["attachments"] = {"_errors": [{"code": "ATTACHMENT_NOT_FOUND", "message": "Unknown upload"}]}
                    break
                files.append(FakeFile(att.get("filename", "file"), "audio/ogg" if flags & MESSAGE_FLAG_VOICE else None,
                                      self.uploads[up]))
        if flags & MESSAGE_FLAG_VOICE:
            ok = (not content and len(atts_in) == 1 and "duration_secs" in atts_in[0] and "waveform" in atts_in[0])
            if not ok:
                why = "Voice messages need one attachment with duration_secs and waveform, and no content"
                errors["flags"] = {"_errors": [{"code": "VOICE_MESSAGE_INVALID", "message": why}]}
        if not content and not files and not payload.get("embeds") and not payload.get("sticker_ids"):
            return _error(400, "Cannot send an empty message", 50006)
        if errors:
            return _error(400, "Invalid Form Body", 50035, errors)
        nonce = payload.get("nonce")
        if nonce is not None and payload.get("enforce_nonce"):
            # the same nonce from the same author within minutes: the message made the first time
            earlier = self._nonces.get((channel_id, str(nonce)))
            if earlier is not None:
                self.nonce_repeats += 1
                return _json(self.messages[earlier])
        mid = self.new_id()
        att_out = []
        for i, f in enumerate(files):
            meta = atts_in[i] if i < len(atts_in) else {}
            aid = self.new_id()
            key = f"{channel_id}/{aid}/{f.filename}"
            self._cdn_files[key] = f
            a = {
                "id": aid, "filename": f.filename, "size": len(f.data), "content_type": f.content_type,
                "url": f"{self.base_url}/cdn/{key}", "proxy_url": f"{self.base_url}/cdn/{key}",
            }
            for k in ("duration_secs", "waveform", "description"):
                if k in meta:
                    a[k] = meta[k]
            att_out.append(a)
        if guild is None:
            guild = self.channels.get(channel_id, {}).get("type") == CHANNEL_GUILD_TEXT
        ref = payload.get("message_reference")
        if ref is not None:  # snowflakes are strings in Discord's API; discord.py sends ints here
            ref = {k: str(v) if k.endswith("_id") and v is not None else v for k, v in ref.items()}
        msg = self._message_payload(
            channel_id=channel_id, author=self.bot_user, content=content, guild=guild, attachments=att_out,
            flags=flags, message_id=mid, reply_to=(ref or {}).get("message_id"),
            webhook_id=self.application_id if via != "channel" else None,
        )
        if nonce is not None and payload.get("enforce_nonce"):
            self._nonces[(channel_id, str(nonce))] = mid
        self.sent.append(SentMessage(
            id=mid, channel_id=channel_id, content=content, flags=flags, attachments=atts_in, files=files,
            payload=payload, message_reference=ref, via=via, interaction_token=token, multipart=multipart,
        ))
        return _json(msg)

    async def _create_message(self, request: web.Request) -> web.Response:
        cid = request.match_info["channel_id"]
        if cid not in self.channels:
            return _error(404, "Unknown Channel", 10003)
        payload, files, multipart = await self._read_message_body(request)
        return self._store_message(cid, payload, files, multipart)

    def add_channel(self, name: str, *, announcement: bool = False) -> str:
        """Another channel of the guild (before the bot connects): a text channel, or an
        announcement channel whose messages the bot may crosspost to following servers."""
        cid = self.new_id()
        self.channels[cid] = {"id": cid, "type": CHANNEL_GUILD_ANNOUNCEMENT if announcement else CHANNEL_GUILD_TEXT,
                              "guild_id": self.guild_id, "name": name, "position": len(self.channels),
                              "permission_overwrites": [], "nsfw": False, "parent_id": None, "topic": None,
                              "last_message_id": None, "rate_limit_per_user": 0}
        return cid

    def add_webhook(self, channel_id: str, name: str = "Captain Hook") -> str:
        """A channel webhook (Discord: Integrations > Webhooks); returns its URL, which posts
        under any name and avatar the sender gives."""
        wid = self.new_id()
        token = secrets.token_urlsafe(51)[:68]
        self.webhooks[wid] = {"id": wid, "token": token, "channel_id": channel_id, "name": name}
        return f"https://discord.com/api/webhooks/{wid}/{token}"

    def channel_messages(self, channel_id: str) -> list[SentMessage]:
        return [m for m in self.sent if m.channel_id == channel_id]

    async def _crosspost(self, request: web.Request) -> web.Response:
        """Publish a message of an announcement channel (Discord: POST .../crosspost)."""
        cid, mid = request.match_info["channel_id"], request.match_info["message_id"]
        ch = self.channels.get(cid)
        msg = self.messages.get(mid)
        if ch is None:
            return _error(404, "Unknown Channel", 10003)
        if msg is None or msg["channel_id"] != cid:
            return _error(404, "Unknown Message", 10008)
        if ch["type"] != CHANNEL_GUILD_ANNOUNCEMENT:
            return _error(400, "Cannot execute action on this channel type", 50024)
        if mid in self.crossposts:
            return _error(400, "This message has already been crossposted.", 40033)
        self.crossposts.append(mid)
        msg["flags"] = int(msg.get("flags") or 0) | 1  # CROSSPOSTED
        return _json(msg)

    async def _edit_message(self, request: web.Request) -> web.Response:
        """PATCH a message the bot sent: its content changes; ``edits`` records (id, content)."""
        mid = request.match_info["message_id"]
        msg = self.messages.get(mid)
        if msg is None or msg["channel_id"] != request.match_info["channel_id"]:
            return _error(404, "Unknown Message", 10008)
        if msg["author"]["id"] != self.bot_user["id"]:
            return _error(403, "Cannot edit a message authored by another user", 50005)
        payload = await request.json()
        if "content" in payload:
            msg["content"] = payload["content"] or ""
            msg["edited_timestamp"] = _now_iso()
            self.edits.append((mid, msg["content"]))
        return _json(msg)

    async def _attachment_slots(self, request: web.Request) -> web.Response:
        cid = request.match_info["channel_id"]
        if cid not in self.channels:
            return _error(404, "Unknown Channel", 10003)
        body = await request.json()
        out = []
        for f in body.get("files", []):
            key = uuid.uuid4().hex
            upload_filename = f"{key}/{f['filename']}"
            self._pending_slots[key] = upload_filename
            out.append({"id": f.get("id", 0), "upload_url": f"{self.base_url}/upload/{key}",
                        "upload_filename": upload_filename})
        return _json({"attachments": out})

    async def _upload(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        name = self._pending_slots.pop(key, None)
        if name is None:
            return web.Response(status=404, text="no such upload slot")
        self.uploads[name] = await request.read()
        return web.Response(status=200)

    async def _cdn(self, request: web.Request) -> web.Response:
        f = self._cdn_files.get(request.match_info["tail"])
        if f is None:
            return web.Response(status=404)
        self.cdn_downloads.append(request.match_info["tail"])
        return web.Response(body=f.data, headers={"Content-Type": f.content_type or "application/octet-stream"})

    async def _put_commands(self, request: web.Request) -> web.Response:
        if request.match_info["app_id"] != self.application_id:
            return _error(403, "Missing Access", 50001)
        scope = request.match_info.get("guild_id") or "global"
        body = await request.json()
        if not isinstance(body, list):
            return _error(400, "Invalid Form Body", 50035)
        existing = {c["name"]: c["id"] for c in self.commands.get(scope, [])}
        out = []
        for c in body:
            if not re.fullmatch(r"[-_\w]{1,32}", c.get("name", "")) or not (1 <= len(c.get("description", "")) <= 100):
                return _error(400, "Invalid Form Body", 50035, {"name": c.get("name")})
            item = {
                "type": 1, "nsfw": False, "default_member_permissions": None, "dm_permission": True, "options": [],
                **c, "id": existing.get(c["name"]) or self.new_id(), "application_id": self.application_id,
                "version": self.new_id(),
            }
            if scope != "global":
                item["guild_id"] = scope
            out.append(item)
        self.commands[scope] = out
        self.command_puts.append((scope, out))
        return _json(out)

    async def _interaction_callback(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        inter = self.interactions.get(token)
        if inter is None or inter.id != request.match_info["interaction_id"]:
            return _error(404, "Unknown interaction", 10062)
        if any(c["token"] == token for c in self.interaction_callbacks):
            return _error(400, "Interaction has already been acknowledged.", 40060)
        if request.content_type.startswith("multipart/"):
            payload, files, _ = await self._read_message_body(request)
        else:
            payload, files = await request.json(), []
        rtype = payload.get("type")
        self.interaction_callbacks.append({"token": token, "type": rtype, "data": payload.get("data"), "files": files})
        if rtype == 4:  # CHANNEL_MESSAGE_WITH_SOURCE: the original response is a message
            self._store_message(inter.channel_id, payload.get("data") or {}, files, bool(files), via="original", token=token)
        loading = rtype == 5
        return _json({
            "interaction": {"id": inter.id, "type": 2, "response_message_loading": loading,
                            "response_message_ephemeral": bool((payload.get("data") or {}).get("flags", 0) & 64)},
            "resource": {"type": rtype},
        })

    async def _followup(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        hook = self.webhooks.get(request.match_info["app_id"])
        if hook is not None:  # executing a channel webhook
            if hook["token"] != token:
                return _error(401, "Invalid Webhook Token", 50027)
            payload, files, multipart = await self._read_message_body(request)
            resp = self._store_message(hook["channel_id"], payload, files, multipart, via="webhook", token=token)
            self.sent[-1].payload.setdefault("username", hook["name"])
            if request.query.get("wait") not in ("true", "True", "1"):
                return web.Response(status=204)
            return resp
        inter = self.interactions.get(token)
        if inter is None or request.match_info["app_id"] != self.application_id:
            return _error(404, "Unknown Webhook", 10015)
        if not any(c["token"] == token for c in self.interaction_callbacks):
            return _error(400, "The interaction has not been acknowledged", 40060)
        payload, files, multipart = await self._read_message_body(request)
        return self._store_message(inter.channel_id, payload, files, multipart, via="followup", token=token)

    async def _edit_original(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        inter = self.interactions.get(token)
        if inter is None:
            return _error(404, "Unknown Webhook", 10015)
        payload, files, multipart = await self._read_message_body(request)
        return self._store_message(inter.channel_id, payload, files, multipart, via="original", token=token)

    async def _delete_original(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        if token not in self.interactions:
            return _error(404, "Unknown Webhook", 10015)
        self.deleted_originals.append(token)
        return web.Response(status=204)

    # -- gateway --------------------------------------------------------------------------

    async def _gateway_ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=4 * 1024 * 1024)
        await ws.prepare(request)
        conn = _Conn(ws, request)
        self._conns.add(conn)
        writer = asyncio.create_task(self._writer(conn))
        try:
            self._send(conn, {"op": OP_HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}, "s": None, "t": None})
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._on_gateway(conn, json.loads(msg.data))
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            writer.cancel()
            self._conns.discard(conn)
            s = conn.session
            if s is not None and s.conn is conn:
                s.conn = None
        return ws

    def _send(self, conn: _Conn, payload: dict[str, Any]) -> None:
        conn.outbox.put_nowait(payload)

    async def _writer(self, conn: _Conn) -> None:
        while True:
            payload = await conn.outbox.get()
            try:
                if conn.ws.closed:
                    return
                await conn.ws.send_str(json.dumps(payload))
            except (ConnectionError, RuntimeError):
                return  # the client went away; a resume replays what it missed from the log

    async def _on_gateway(self, conn: _Conn, p: dict[str, Any]) -> None:
        op, d = p.get("op"), p.get("d")
        if op == OP_HEARTBEAT:
            self.heartbeats += 1
            self._send(conn, {"op": OP_HEARTBEAT_ACK, "d": None, "s": None, "t": None})
        elif op == OP_IDENTIFY:
            if d.get("token") != self.token:
                await conn.ws.close(code=4004)  # authentication failed
                return
            self.identifies.append(d)
            s = _Session(id=uuid.uuid4().hex, conn=conn)
            self._sessions[s.id] = s
            self._session = s
            conn.session = s
            self.dispatch("READY", {
                "v": 10, "user": self.bot_user, "guilds": [{"id": self.guild_id, "unavailable": True}],
                "session_id": s.id, "resume_gateway_url": self.gateway_url, "session_type": "normal",
                "application": {"id": self.application_id, "flags": 0}, "private_channels": [],
                "relationships": [], "user_settings": {}, "geo_ordered_rtc_regions": [],
            })
            self.dispatch("GUILD_CREATE", self.guild_payload())
        elif op == OP_RESUME:
            s = self._sessions.get(d.get("session_id"))
            if s is None or d.get("token") != self.token:
                self._send(conn, {"op": OP_INVALID_SESSION, "d": False, "s": None, "t": None})
                return
            self.resumes.append(d)
            seq = d.get("seq") or 0
            s.conn = conn
            conn.session = s
            self._session = s
            for event in s.log:
                if event["s"] > seq:
                    self._send(conn, event)
            s.seq += 1
            resumed = {"op": OP_DISPATCH, "t": "RESUMED", "s": s.seq, "d": {}}
            s.log.append(resumed)
            self._send(conn, resumed)
        # op 3 (presence), 4 (voice state), 8 (request members): accepted and ignored


def _bucket(rel: str) -> str:
    """A stable bucket hash per route with ids collapsed, like Discord's."""
    return "b" + format(abs(hash(re.sub(r"\d{5,}", "{id}", rel))) % (1 << 40), "x")
