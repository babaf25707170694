"""A real, local Telegram Bot API server for tests, written from the public Bot API docs.

    async with FakeTelegramServer(token="123:abc", username="mira_test_bot") as tg:
        app = ApplicationBuilder().token(tg.token).base_url(tg.base_url).base_file_url(tg.base_file_url).build()
        tg.push_message(111, "Zoe", "hello")
        calls = await tg.wait_for_sent(1, method="sendMessage")

Every call is ``POST /bot<TOKEN>/<method>`` (GET works too), with parameters as a query
string, an urlencoded or multipart form, or a JSON body, like the real server. Answers are
``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": N, "description": ...}``.

Served methods: getMe, deleteWebhook, setWebhook, getWebhookInfo, getUpdates (long polling
with ``offset``/``timeout``/``limit``/``allowed_updates``; a newer getUpdates ends an older
one with 409 Conflict), setMyCommands, getMyCommands, deleteMyCommands, sendMessage,
sendChatAction, sendPhoto, sendVoice, sendAudio, sendVideo, sendDocument, editMessageText (the bot's
own messages; "not modified" for the same text), getFile, close, logOut;
and file downloads, ``GET /file/bot<TOKEN>/<file_path>``, for files a test pushed with
bytes (``push_photo``, ``push_document(data=...)``).

Confirmation works as on Telegram: a getUpdates with ``offset`` confirms (drops) every
update below it; ``confirmed_offset`` shows the highest offset requested, ``deliveries``
counts how often each update_id was handed out. ``unconfirm()`` simulates a bot that
crashed before it confirmed what it had fetched.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

#: Methods that only read state; everything else the bot calls is recorded in ``sent``.
READ_METHODS = frozenset({"getMe", "getUpdates", "deleteWebhook", "getMyCommands", "getWebhookInfo", "getFile"})
CHAT_ACTIONS = frozenset({
    "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
    "upload_document", "choose_sticker", "find_location", "record_video_note", "upload_video_note",
})
MAX_TEXT = 4096
MAX_CAPTION = 1024
_COMMAND = re.compile(r"^[a-z0-9_]{1,32}$")


def utf16_len(text: str) -> int:
    """Telegram measures entity offsets (and message lengths) in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


@dataclass
class UploadedFile:
    field: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class Call:
    """One request the bot made: the method, its parameters (JSON values decoded), its files."""

    method: str
    fields: dict[str, Any]
    files: dict[str, UploadedFile]
    status: int = 200
    result: Any = None
    at: float = field(default_factory=time.monotonic)

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def chat_id(self) -> str | None:
        v = self.fields.get("chat_id")
        return None if v is None else str(v)

    @property
    def text(self) -> str | None:
        return self.fields.get("text")

    def file(self, param: str) -> UploadedFile | None:
        """The upload given for ``param`` (``photo``, ``voice``...), by field name or ``attach://``."""
        v = self.fields.get(param)
        if isinstance(v, str) and v.startswith("attach://"):
            return self.files.get(v[len("attach://") :])
        return self.files.get(param)

    @property
    def reply_to(self) -> int | None:
        rp = self.fields.get("reply_parameters")
        if isinstance(rp, dict) and "message_id" in rp:
            return int(rp["message_id"])
        if "reply_to_message_id" in self.fields:
            return int(self.fields["reply_to_message_id"])
        return None


class ApiError(Exception):
    def __init__(self, code: int, description: str, parameters: dict | None = None):
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters


class FakeTelegramServer:
    def __init__(
        self,
        token: str = "123456:TEST-token_abcdefghijklmnopqrstuvwxyz",
        *,
        bot_id: int | None = None,
        username: str = "mira_test_bot",
        first_name: str = "Mira",
        host: str = "127.0.0.1",
    ) -> None:
        self.token = token
        self.bot_id = bot_id if bot_id is not None else int(token.split(":")[0])
        self.username = username
        self.first_name = first_name
        self.host = host
        self.port: int | None = None
        self.calls: list[Call] = []
        self.updates: list[dict[str, Any]] = []
        self.deliveries: Counter[int] = Counter()
        self.confirmed_offset = 0
        self.commands: list[dict[str, str]] = []
        self.webhook_url = ""
        self._faults: dict[str, list[tuple[int, float | None, str | None]]] = {}
        self._holds: Counter[str] = Counter()  # method -> calls to take in and never answer
        self._released = asyncio.Event()
        self.held: list[Call] = []  # calls taken in and left unanswered (nothing was sent)
        self._update_ids = itertools.count(1000)
        self._message_ids: dict[int, itertools.count] = {}
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}  # (chat_id, message_id) -> Message
        self._file_ids = itertools.count(1)
        self.files: dict[str, tuple[str, bytes]] = {}  # file_id -> (file_path, bytes) the bot may download
        self.downloads: list[str] = []  # file_paths the bot downloaded
        self._changed = asyncio.Condition()
        self._poll_generation = 0
        self._runner: web.AppRunner | None = None
        # channels (Bot API: a chat of type "channel"; the bot posts where it is an admin)
        self.channels: dict[int, dict[str, Any]] = {}
        self._callbacks: set[str] = set()
        self.callback_answers: dict[str, str] = {}  # callback query id -> the toast the bot answered

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        """What TelegramAdapter takes as ``api_url`` (it appends /bot and /file/bot)."""
        if self.port is None:
            raise RuntimeError("FakeTelegramServer is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.api_url}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.api_url}/file/bot"

    @property
    def bot_user(self) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": self.first_name, "username": self.username}

    async def start(self) -> FakeTelegramServer:
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{file_path:.+}", self._download)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self._released.set()  # held calls end with the server
        async with self._changed:
            self._poll_generation += 1
            self._changed.notify_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegramServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- what the bot sent -------------------------------------------------------------

    @property
    def sent(self) -> list[Call]:
        """Successful calls that change something (sendMessage, sendChatAction, setMyCommands...)."""
        return [c for c in self.calls if c.ok and c.method not in READ_METHODS]

    def sent_to(self, chat_id: int | str, method: str | None = "sendMessage") -> list[Call]:
        return [c for c in self.sent if c.chat_id == str(chat_id) and (method is None or c.method == method)]

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def wait_for_sent(
        self, n: int, timeout: float = 10.0, *, method: str | None = "sendMessage", chat_id: int | str | None = None
    ) -> list[Call]:
        """Wait until at least ``n`` successful ``method`` calls (to ``chat_id``) were made; returns them."""

        def matching() -> list[Call]:
            return [
                c for c in self.sent
                if (method is None or c.method == method) and (chat_id is None or c.chat_id == str(chat_id))
            ]

        deadline = time.monotonic() + timeout
        while True:
            got = matching()
            if len(got) >= n:
                return got
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"expected {n} {method or 'calls'} to {chat_id if chat_id is not None else 'any chat'}, "
                    f"got {len(got)}: {[(c.method, c.chat_id, (c.text or '')[:60]) for c in got]}"
                )
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait(), min(left, 0.2))
                except asyncio.TimeoutError:
                    pass

    async def wait_for_delivery(self, update_id: int, timeout: float = 10.0) -> None:
        """Wait until getUpdates has handed out ``update_id``."""
        deadline = time.monotonic() + timeout
        while not self.deliveries[update_id]:
            if time.monotonic() > deadline:
                raise AssertionError(f"update {update_id} was never fetched")
            await asyncio.sleep(0.02)

    # -- programming failures ------------------------------------------------------------

    def fail_next(
        self, method: str, n: int = 1, status: int = 429, retry_after: float | None = 1, description: str | None = None
    ) -> None:
        """The next ``n`` calls of ``method`` fail with ``status`` (a 429 carries ``parameters.retry_after``)."""
        for _ in range(n):
            self._faults.setdefault(method, []).append((status, retry_after if status == 429 else None, description))

    def hold_next(self, method: str, n: int = 1) -> None:
        """The next ``n`` calls of ``method`` are read and never answered (nothing is sent):
        a request on the wire when the bot is killed."""
        self._holds[method] += n

    def unconfirm(self, offset: int = 0) -> None:
        """Forget confirmations down to ``offset``: as if the bot crashed before confirming."""
        self.confirmed_offset = offset

    def add_channel(self, chat_id: int, username: str | None = None, title: str = "A channel",
                    can_post: bool = True) -> None:
        """A channel the bot was added to (as an admin that may post, unless ``can_post`` is
        False: then sends are refused with 403 as Telegram does)."""
        self.channels[int(chat_id)] = {"id": int(chat_id), "type": "channel", "title": title,
                                       **({"username": username.lstrip("@")} if username else {}), "_post": can_post}

    def channel_posts(self, chat_id: int) -> list[Call]:
        return [c for c in self.calls if c.ok and isinstance(c.result, dict)
                and c.result.get("chat", {}).get("id") == int(chat_id)]

    # -- making updates --------------------------------------------------------------------

    def _next_message_id(self, chat_id: int) -> int:
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    def _chat(self, chat_id: int, chat_type: str, title: str | None, user: dict[str, Any]) -> dict[str, Any]:
        chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat["first_name"] = user["first_name"]
            if user.get("username"):
                chat["username"] = user["username"]
        else:
            chat["title"] = title or f"Group {chat_id}"
        return chat

    @staticmethod
    def _user(user: str | dict[str, Any], user_id: int | None = None) -> dict[str, Any]:
        if isinstance(user, dict):
            return {"is_bot": False, **user}
        uid = user_id if user_id is not None else 10_000 + sum(map(ord, user))
        return {"id": uid, "is_bot": False, "first_name": user, "username": user.lower(), "language_code": "en"}

    def _queue(self, kind: str, message: dict[str, Any]) -> dict[str, Any]:
        update = {"update_id": next(self._update_ids), kind: message}
        self.updates.append(update)
        self._notify()
        return update

    def _notify(self) -> None:
        async def go() -> None:
            async with self._changed:
                self._changed.notify_all()

        try:
            asyncio.get_running_loop().create_task(go())
        except RuntimeError:  # no loop running: nobody can be waiting
            pass

    def _base_message(
        self, chat_id: int, user: str | dict[str, Any], chat_type: str, chat_title: str | None,
        reply_to: int | None, user_id: int | None,
    ) -> dict[str, Any]:
        sender = self._user(user, user_id)
        msg: dict[str, Any] = {
            "message_id": self._next_message_id(chat_id),
            "from": sender,
            "chat": self._chat(chat_id, chat_type, chat_title, sender),
            "date": int(time.time()),
        }
        if reply_to is not None:
            original = self._messages.get((chat_id, reply_to))
            if original is None:
                raise KeyError(f"no message {reply_to} in chat {chat_id} to reply to")
            msg["reply_to_message"] = {k: v for k, v in original.items() if k != "reply_to_message"}
        return msg

    def push_message(
        self,
        chat_id: int,
        user: str | dict[str, Any],
        text: str,
        chat_type: str = "private",
        reply_to: int | None = None,
        entities: list[dict[str, Any]] | None = None,
        *,
        chat_title: str | None = None,
        user_id: int | None = None,
    ) -> dict[str, Any]:
        """Queue a text message from ``user`` (a first name, or a User dict); returns the Update.

        Entities for a leading ``/command`` and for ``@mentions`` are made as Telegram does,
        unless ``entities`` is given. ``reply_to`` is a message_id in the same chat (the
        bot's own replies count)."""
        msg = self._base_message(chat_id, user, chat_type, chat_title, reply_to, user_id)
        msg["text"] = text
        ents = entities if entities is not None else self.entities_for(text)
        if ents:
            msg["entities"] = ents
        self._messages[(chat_id, msg["message_id"])] = msg
        return self._queue("message", msg)

    @staticmethod
    def entities_for(text: str) -> list[dict[str, Any]]:
        ents = []
        for m in re.finditer(r"(?<![\w/])/[A-Za-z0-9_]{1,32}(@[A-Za-z0-9_]{3,32})?", text):
            if m.start() == 0:
                ents.append(("bot_command", m.start(), m.end()))
        for m in re.finditer(r"(?<![\w@])@[A-Za-z0-9_]{5,32}\b", text):
            if not any(kind == "bot_command" and s <= m.start() < e for kind, s, e in ents):
                ents.append(("mention", m.start(), m.end()))
        ents.sort(key=lambda t: t[1])
        return [
            {"type": kind, "offset": utf16_len(text[:s]), "length": utf16_len(text[s:e])} for kind, s, e in ents
        ]

    def _push_other(self, chat_id, user, chat_type, chat_title, reply_to, user_id, **content) -> dict[str, Any]:
        msg = self._base_message(chat_id, user, chat_type, chat_title, reply_to, user_id)
        msg.update(content)
        self._messages[(chat_id, msg["message_id"])] = msg
        return self._queue("message", msg)

    def _file(self, **extra: Any) -> dict[str, Any]:
        n = next(self._file_ids)
        return {"file_id": f"FILE{n:06d}", "file_unique_id": f"U{n:06d}", **extra}

    def push_callback(self, chat_id: int, user: str | dict[str, Any], message_id: int, data: str,
                      user_id: int | None = None) -> dict[str, Any]:
        """A press on an inline keyboard button of the bot's message ``message_id``."""
        msg = self._messages.get((chat_id, message_id))
        if msg is None:
            raise KeyError(f"no message {message_id} in chat {chat_id}")
        qid = str(next(self._update_ids) * 7)
        self._callbacks.add(qid)
        query = {"id": qid, "from": self._user(user, user_id), "message": msg, "chat_instance": str(chat_id),
                 "data": data}
        return self._queue("callback_query", query)

    def push_automatic_forward(self, group_id: int, channel_id: int, message_id: int,
                               group_title: str = "Comments") -> dict[str, Any]:
        """The copy of channel post ``message_id`` that Telegram forwards into the channel's
        linked discussion group, where people comment by replying to it."""
        post = self._messages[(int(channel_id), int(message_id))]
        channel = {k: v for k, v in self.channels[int(channel_id)].items() if not k.startswith("_")}
        msg: dict[str, Any] = {
            "message_id": self._next_message_id(group_id),
            "from": {"id": 777000, "is_bot": False, "first_name": "Telegram"},
            "sender_chat": channel,
            "chat": {"id": group_id, "type": "supergroup", "title": group_title},
            "date": int(time.time()),
            "is_automatic_forward": True,
            "forward_origin": {"type": "channel", "chat": channel, "message_id": int(message_id), "date": post["date"]},
            **{k: post[k] for k in ("text", "caption", "photo") if k in post},
        }
        self._messages[(group_id, msg["message_id"])] = msg
        return self._queue("message", msg)

    def push_reaction_count(self, chat_id: int, message_id: int, counts: dict[str, int]) -> dict[str, Any]:
        """Anonymous reactions on a channel post changed (Bot API ``message_reaction_count``)."""
        chat = {k: v for k, v in self.channels[int(chat_id)].items() if not k.startswith("_")}
        return self._queue("message_reaction_count", {
            "chat": chat, "message_id": int(message_id), "date": int(time.time()),
            "reactions": [{"type": {"type": "emoji", "emoji": e}, "total_count": n} for e, n in counts.items()]})

    def message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        return self._messages.get((chat_id, message_id))

    def push_sticker(self, chat_id: int, user: str | dict[str, Any], emoji: str = "😀", chat_type: str = "private",
                     *, chat_title: str | None = None, reply_to: int | None = None, user_id: int | None = None):
        sticker = self._file(type="regular", width=512, height=512, is_animated=False, is_video=False, emoji=emoji)
        return self._push_other(chat_id, user, chat_type, chat_title, reply_to, user_id, sticker=sticker)

    def push_location(self, chat_id: int, user: str | dict[str, Any], latitude: float = 54.35,
                      longitude: float = 18.65, chat_type: str = "private", *, chat_title: str | None = None,
                      reply_to: int | None = None, user_id: int | None = None):
        loc = {"latitude": latitude, "longitude": longitude}
        return self._push_other(chat_id, user, chat_type, chat_title, reply_to, user_id, location=loc)

    def push_document(self, chat_id: int, user: str | dict[str, Any], file_name: str = "notes.pdf",
                      mime_type: str = "application/pdf", caption: str | None = None, chat_type: str = "private",
                      *, chat_title: str | None = None, reply_to: int | None = None, user_id: int | None = None,
                      data: bytes | None = None):
        """A document; with ``data`` the bot can download it (getFile, then the file route)."""
        doc = self._file(file_name=file_name, mime_type=mime_type, file_size=len(data) if data is not None else 1234)
        if data is not None:
            self._register(doc, f"documents/{file_name}", data)
        content: dict[str, Any] = {"document": doc}
        content.update(self._caption_content(caption))
        return self._push_other(chat_id, user, chat_type, chat_title, reply_to, user_id, **content)

    def push_photo(self, chat_id: int, user: str | dict[str, Any], data: bytes, caption: str | None = None,
                   chat_type: str = "private", *, chat_title: str | None = None, reply_to: int | None = None,
                   user_id: int | None = None, width: int = 800, height: int = 600,
                   file_size: int | None = None) -> dict[str, Any]:
        """A photo (``data``: the JPEG bytes of its largest size) with an optional caption,
        sent as Telegram does: several PhotoSizes, smallest first, each downloadable.
        ``file_size`` overrides the size the largest one claims (to test size limits)."""
        thumb_data = data[: max(1, len(data) // 8)]  # the bytes of a thumbnail; never the one to use
        thumb = self._file(width=max(1, width // 10), height=max(1, height // 10), file_size=len(thumb_data))
        big = self._file(width=width, height=height, file_size=file_size if file_size is not None else len(data))
        self._register(thumb, f"photos/file_{thumb['file_id']}.jpg", thumb_data)
        self._register(big, f"photos/file_{big['file_id']}.jpg", data)
        content: dict[str, Any] = {"photo": [thumb, big]}
        content.update(self._caption_content(caption))
        return self._push_other(chat_id, user, chat_type, chat_title, reply_to, user_id, **content)

    def _register(self, file: dict[str, Any], file_path: str, data: bytes) -> None:
        self.files[file["file_id"]] = (file_path, data)

    def _caption_content(self, caption: str | None) -> dict[str, Any]:
        if caption is None:
            return {}
        out: dict[str, Any] = {"caption": caption}
        ents = self.entities_for(caption)
        if ents:
            out["caption_entities"] = ents
        return out

    def push_poll(self, chat_id: int, user: str | dict[str, Any], question: str = "Pizza or sushi?",
                  chat_type: str = "private", *, chat_title: str | None = None, user_id: int | None = None):
        poll = {
            "id": str(next(self._file_ids)), "question": question,
            "options": [{"persistent_id": "0", "text": "Pizza", "voter_count": 0},
                        {"persistent_id": "1", "text": "Sushi", "voter_count": 0}],
            "total_voter_count": 0, "is_closed": False, "is_anonymous": True, "type": "regular",
            "allows_multiple_answers": False, "allows_revoting": True, "members_only": False,
        }
        return self._push_other(chat_id, user, chat_type, chat_title, None, user_id, poll=poll)

    def push_raw(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Queue an update of ``kind`` with ``payload`` exactly as given (e.g. a malformed one)."""
        return self._queue(kind, payload)

    def push_edit(self, chat_id: int, message_id: int, text: str) -> dict[str, Any]:
        """Queue an ``edited_message`` update: message ``message_id`` now reads ``text``."""
        original = self._messages[(chat_id, message_id)]
        edited = {**original, "text": text, "edit_date": int(time.time())}
        ents = self.entities_for(text)
        if ents:
            edited["entities"] = ents
        else:
            edited.pop("entities", None)
        self._messages[(chat_id, message_id)] = edited
        return self._queue("edited_message", edited)

    # -- the API -----------------------------------------------------------------------------

    async def _params(self, request: web.Request) -> tuple[dict[str, Any], dict[str, UploadedFile]]:
        fields: dict[str, Any] = dict(request.query)
        files: dict[str, UploadedFile] = {}
        ctype = request.content_type
        if request.method == "POST" and request.can_read_body:
            if ctype == "application/json":
                body = await request.json()
                if isinstance(body, dict):
                    fields.update(body)
                return fields, files
            if ctype == "multipart/form-data":
                reader = await request.multipart()
                async for part in reader:
                    data = await part.read(decode=False)
                    if part.filename is not None:
                        files[part.name] = UploadedFile(part.name, part.filename, part.headers.get("Content-Type"), bytes(data))
                    else:
                        fields[part.name] = bytes(data).decode("utf-8")
            else:
                form = await request.post()
                fields.update({k: v for k, v in form.items() if isinstance(v, str)})
        for k, v in list(fields.items()):
            if isinstance(v, str) and v[:1] in "[{":
                try:
                    fields[k] = json.loads(v)
                except ValueError:
                    pass
        return fields, files

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            # Telegram: 404 for a token of the wrong shape, 401 for a well-formed wrong one.
            if ":" not in request.match_info["token"]:
                return _answer(404, {"ok": False, "error_code": 404, "description": "Not Found"})
            return _answer(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        fields, files = await self._params(request)
        call = Call(method, fields, files)
        if self._holds[method] > 0:
            self._holds[method] -= 1
            call.status = 0
            self.held.append(call)
            self._notify()
            await self._released.wait()
            return _answer(502, {"ok": False, "error_code": 502, "description": "Bad Gateway"})
        self.calls.append(call)
        try:
            faults = self._faults.get(method)
            if faults:
                status, retry_after, description = faults.pop(0)
                params = {"retry_after": int(retry_after)} if retry_after is not None else None
                if description is None:
                    description = (
                        f"Too Many Requests: retry after {int(retry_after)}" if status == 429 else f"Error {status}"
                    )
                raise ApiError(status, description, params)
            handler = getattr(self, f"_api_{method}", None)
            if handler is None:
                raise ApiError(404, "Not Found: method not found")
            call.result = await handler(fields, files)
        except ApiError as exc:
            call.status = exc.code
            body: dict[str, Any] = {"ok": False, "error_code": exc.code, "description": exc.description}
            if exc.parameters:
                body["parameters"] = exc.parameters
            self._notify()
            return _answer(exc.code, body)
        self._notify()
        return _answer(200, {"ok": True, "result": call.result})

    def _chat_id(self, fields: dict[str, Any]) -> int:
        if "chat_id" not in fields:
            raise ApiError(400, "Bad Request: chat_id is empty")
        raw = str(fields["chat_id"])
        if raw.startswith("@"):  # a public channel's username
            for cid, ch in self.channels.items():
                if ch.get("username", "").lower() == raw[1:].lower():
                    return cid
            raise ApiError(400, "Bad Request: chat not found")
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ApiError(400, "Bad Request: chat not found") from None

    async def _api_getMe(self, fields, files):
        return {**self.bot_user, "can_join_groups": True, "can_read_all_group_messages": False,
                "supports_inline_queries": False}

    async def _api_deleteWebhook(self, fields, files):
        self.webhook_url = ""
        if str(fields.get("drop_pending_updates", "")).lower() == "true":
            if self.updates:
                self.confirmed_offset = self.updates[-1]["update_id"] + 1
        return True

    async def _api_setWebhook(self, fields, files):
        self.webhook_url = str(fields.get("url", ""))
        return True

    async def _api_getWebhookInfo(self, fields, files):
        pending = sum(1 for u in self.updates if u["update_id"] >= self.confirmed_offset)
        return {"url": self.webhook_url, "has_custom_certificate": False, "pending_update_count": pending}

    async def _api_close(self, fields, files):
        return True

    async def _api_logOut(self, fields, files):
        return True

    async def _api_getUpdates(self, fields, files):
        if self.webhook_url:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first")
        offset = int(fields.get("offset") or 0)
        timeout = float(fields.get("timeout") or 0)
        limit = min(100, max(1, int(fields.get("limit") or 100)))
        allowed = fields.get("allowed_updates")
        if offset > 0:
            self.confirmed_offset = max(self.confirmed_offset, offset)
        async with self._changed:
            self._poll_generation += 1
            generation = self._poll_generation
            self._changed.notify_all()  # an older long poll is terminated by this one
        deadline = time.monotonic() + timeout

        def ready() -> list[dict[str, Any]]:
            out = []
            for u in self.updates:
                if u["update_id"] < self.confirmed_offset:
                    continue
                if allowed and not any(k in u for k in allowed):
                    continue
                out.append(u)
            return out[:limit]

        while True:
            got = ready()
            if got:
                for u in got:
                    self.deliveries[u["update_id"]] += 1
                return got
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait(), left)
                except asyncio.TimeoutError:
                    pass
            if generation != self._poll_generation and self._runner is not None:
                raise ApiError(409, "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running")
            if self._runner is None:
                return []

    async def _api_setMyCommands(self, fields, files):
        commands = fields.get("commands")
        if not isinstance(commands, list):
            raise ApiError(400, "Bad Request: can't parse commands JSON object")
        for c in commands:
            if not _COMMAND.match(str(c.get("command", ""))):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(str(c.get("description", ""))) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands = [{"command": c["command"], "description": c["description"]} for c in commands]
        return True

    async def _api_getMyCommands(self, fields, files):
        return list(self.commands)

    async def _api_deleteMyCommands(self, fields, files):
        self.commands = []
        return True

    async def _api_getFile(self, fields, files):
        file_id = str(fields.get("file_id") or "")
        if file_id not in self.files:
            raise ApiError(400, "Bad Request: invalid file_id")
        path, data = self.files[file_id]
        if len(data) > 20 * 1024 * 1024:
            raise ApiError(400, "Bad Request: file is too big")
        return {"file_id": file_id, "file_unique_id": "U" + file_id, "file_size": len(data), "file_path": path}

    async def _download(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=404, text="Not Found")
        path = request.match_info["file_path"]
        for known, data in self.files.values():
            if known == path:
                self.downloads.append(path)
                return web.Response(body=data, content_type="application/octet-stream")
        return web.Response(status=404, text="Not Found")

    async def _api_sendChatAction(self, fields, files):
        self._chat_id(fields)
        if fields.get("action") not in CHAT_ACTIONS:
            raise ApiError(400, "Bad Request: wrong parameter action in request")
        return True

    def _bot_message(self, fields: dict[str, Any], **content: Any) -> dict[str, Any]:
        chat_id = self._chat_id(fields)
        chat_type = "private" if chat_id > 0 else "supergroup"
        known = next((m["chat"] for (cid, _), m in self._messages.items() if cid == chat_id), None)
        channel = self.channels.get(chat_id)
        if channel is not None:
            if not channel["_post"]:
                raise ApiError(403, "Forbidden: bot is not a member of the channel chat")
            known = {k: v for k, v in channel.items() if not k.startswith("_")}
        elif chat_id < -1000000000000 and known is None and self.channels:
            raise ApiError(400, "Bad Request: chat not found")
        msg: dict[str, Any] = {
            "message_id": self._next_message_id(chat_id),
            "from": self.bot_user,
            "chat": known or {"id": chat_id, "type": chat_type, **({"first_name": "Someone"} if chat_id > 0 else {"title": "A group"})},
            "date": int(time.time()),
            **content,
        }
        reply_to = Call("", fields, {}).reply_to
        if reply_to is not None:
            original = self._messages.get((chat_id, reply_to))
            if original is not None:
                msg["reply_to_message"] = {k: v for k, v in original.items() if k != "reply_to_message"}
            else:
                rp = fields.get("reply_parameters")
                if not (isinstance(rp, dict) and rp.get("allow_sending_without_reply")):
                    raise ApiError(400, "Bad Request: message to be replied not found")
        if isinstance(fields.get("reply_markup"), dict):
            markup = fields["reply_markup"]
            rows = markup.get("inline_keyboard")
            if rows is not None:
                for row in rows:
                    for b in row:
                        data = b.get("callback_data")
                        if data is not None and not 1 <= len(data.encode()) <= 64:
                            raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
            msg["reply_markup"] = markup
        self._messages[(chat_id, msg["message_id"])] = msg
        return msg

    async def _api_sendMessage(self, fields, files):
        text = fields.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if utf16_len(text) > MAX_TEXT:
            raise ApiError(400, "Bad Request: message is too long")
        return self._bot_message(fields, text=text)

    async def _api_editMessageText(self, fields, files):
        chat_id = self._chat_id(fields)
        try:
            mid = int(fields.get("message_id"))
        except (TypeError, ValueError):
            raise ApiError(400, "Bad Request: message identifier is not specified") from None
        text = fields.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        msg = self._messages.get((chat_id, mid))
        if msg is None or msg.get("from", {}).get("id") != self.bot_id:
            raise ApiError(400, "Bad Request: message to edit not found")
        if msg.get("text") == text:
            raise ApiError(400, "Bad Request: message is not modified")
        msg["text"] = text
        msg["edit_date"] = int(time.time())
        if isinstance(fields.get("reply_markup"), dict):
            msg["reply_markup"] = fields["reply_markup"]
        else:
            msg.pop("reply_markup", None)  # an edit without a keyboard removes it
        return msg

    async def _api_answerCallbackQuery(self, fields, files):
        qid = fields.get("callback_query_id")
        if qid not in self._callbacks:
            raise ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        self.callback_answers[qid] = fields.get("text") or ""
        return True

    def _upload(self, fields, files, param: str) -> UploadedFile:
        caption = fields.get("caption")
        if isinstance(caption, str) and utf16_len(caption) > MAX_CAPTION:
            raise ApiError(400, "Bad Request: message caption is too long")
        up = Call("", fields, files).file(param)
        if up is None:
            if isinstance(fields.get(param), str) and fields[param]:
                return UploadedFile(param, None, None, b"")  # a file_id or URL: nothing uploaded
            raise ApiError(400, f"Bad Request: there is no {param} in the request")
        if not up.data:
            raise ApiError(400, "Bad Request: file must be non-empty")
        return up

    def _caption(self, fields) -> dict[str, Any]:
        caption = fields.get("caption")
        return {"caption": caption} if caption else {}

    async def _api_sendPhoto(self, fields, files):
        up = self._upload(fields, files, "photo")
        photo = [self._file(width=90, height=90, file_size=len(up.data) // 4 or 1),
                 self._file(width=512, height=512, file_size=len(up.data))]
        return self._bot_message(fields, photo=photo, **self._caption(fields))

    async def _api_sendVoice(self, fields, files):
        up = self._upload(fields, files, "voice")
        voice = self._file(duration=int(fields.get("duration") or 1), mime_type="audio/ogg", file_size=len(up.data))
        return self._bot_message(fields, voice=voice, **self._caption(fields))

    async def _api_sendAudio(self, fields, files):
        up = self._upload(fields, files, "audio")
        audio = self._file(duration=int(fields.get("duration") or 1), mime_type=up.content_type or "audio/mpeg",
                           file_size=len(up.data), file_name=up.filename or "audio")
        for name in ("title", "performer"):
            if fields.get(name):
                audio[name] = str(fields[name])
        thumb = self._thumbnail(fields, files)
        if thumb:
            audio["thumbnail"] = thumb
        return self._bot_message(fields, audio=audio, **self._caption(fields))

    def _thumbnail(self, fields, files) -> dict[str, Any] | None:
        """The Bot API takes a JPEG under 200 kB, at most 320 px a side; anything else is ignored."""
        thumb = Call("", fields, files).file("thumbnail")
        if thumb is None or not thumb.data:
            return None
        from PIL import Image

        try:
            with Image.open(io.BytesIO(thumb.data)) as im:
                if im.format == "JPEG" and max(im.size) <= 320 and len(thumb.data) < 200_000:
                    return self._file(width=im.size[0], height=im.size[1], file_size=len(thumb.data))
        except Exception:  # noqa: BLE001 - not a picture
            pass
        return None

    async def _api_sendVideo(self, fields, files):
        up = self._upload(fields, files, "video")
        video = self._file(width=int(fields.get("width") or 320), height=int(fields.get("height") or 240),
                           duration=int(fields.get("duration") or 1), mime_type="video/mp4", file_size=len(up.data))
        if fields.get("supports_streaming") in (True, "true", "True"):
            video["supports_streaming"] = True  # recorded for tests: the real API does not echo it
        thumb = self._thumbnail(fields, files)
        if thumb:
            video["thumbnail"] = thumb
        return self._bot_message(fields, video=video, **self._caption(fields))

    async def _api_sendVideoNote(self, fields, files):
        """A round video message: square, at most a minute; no caption."""
        up = self._upload(fields, files, "video_note")
        if fields.get("caption"):
            raise ApiError(400, "Bad Request: video notes can't have a caption")
        duration = int(fields.get("duration") or 1)
        if duration > 60:
            raise ApiError(400, "Bad Request: video note is too long")
        note = self._file(length=int(fields.get("length") or 240), duration=duration, file_size=len(up.data))
        thumb = self._thumbnail(fields, files)
        if thumb:
            note["thumbnail"] = thumb
        return self._bot_message(fields, video_note=note)

    async def _api_sendDocument(self, fields, files):
        up = self._upload(fields, files, "document")
        doc = self._file(file_name=up.filename or "file", mime_type=up.content_type or "application/octet-stream",
                         file_size=len(up.data))
        return self._bot_message(fields, document=doc, **self._caption(fields))


def _answer(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")
