"""The Telegram adapter: a python-telegram-bot 22 Application speaking for one persona.

    adapter = TelegramAdapter(token, persona="mira")
    await adapter.start(service.handle)   # getMe, setMyCommands, then long polling
    ...
    await adapter.stop()                  # finishes in-flight updates, confirms the offset

Behaviour:

* Long polling by default (``getUpdates`` with ``allowed_updates`` message and
  edited_message, pending updates kept so nothing is lost across a restart: Telegram
  redelivers what was not confirmed and the store answers a message id only once). A
  webhook instead with ``webhook_url=...`` (needs ``python-telegram-bot[webhooks]``).
* Private chats: every text message is answered. Groups and supergroups: only a message
  that @mentions the bot, replies to one of its messages, or is a command (``/cmd@bot``,
  or a bare ``/cmd`` that is one of ours); the @mention is taken out of the text.
  Commands go to the persona manager as text.
* A photo (or an image sent as a document) whose caption is a command (``/art watercolor``,
  ``/portrait``; in groups one of ours or ``/cmd@bot``): the largest size is downloaded
  (getFile, then the file URL) into a temporary folder (``download_dir``), at most
  ``max_download_bytes`` (larger: :data:`TOO_BIG_TEXT`), and handed to the persona
  manager as an ``Attachment(kind="image", path=...)`` with the caption as the text; the
  file is deleted once the reply is delivered.
* Anything else but text (stickers, photos without a command, documents, locations,
  polls, voice...) and edits of earlier messages: a short neutral note in private chats
  (:data:`UNSUPPORTED_TEXT`, :data:`EDITED_TEXT`), silence in groups.
* A "typing" action is shown immediately and every ~4 s while the character works
  (upload_photo / record_voice / upload_video / upload_document while media upload).
* Replies are split at 4096 characters (UTF-16 units, as Telegram counts) at paragraph,
  sentence or word boundaries; in groups the first part replies to the person's message.
* Media: image -> sendPhoto, voice -> sendVoice (OGG/Opus; anything else goes as audio),
  audio -> sendAudio, video -> sendVideo. Captions over 1024 characters are sent as text
  after the media.
* Flood limits: AIORateLimiter throttles to Telegram's limits and, on 429, waits
  ``retry_after`` and retries (``max_retries`` times), so a reply is delayed, not dropped.
* Updates are processed concurrently (``max_concurrent_updates``), but one chat's updates
  strictly in the order they arrived (:class:`PerChatUpdateProcessor`).
* A handler error is logged (PTB error handler) and the person gets :data:`APOLOGY_TEXT`,
  never a stack trace; people in ``admin_ids`` also see the exception's type and message
  (in private chats only).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import mimetypes
import re
import tempfile
from collections.abc import Awaitable, Iterable, Sequence
from pathlib import Path
from typing import Any

from telegram import (
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    MessageEntity,
    ReplyParameters,
    Update,
)
from telegram.constants import ChatAction, ChatType
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    BaseUpdateProcessor,
    CallbackQueryHandler,
    ContextTypes,
    MessageReactionHandler,
    ExtBot,
    MessageHandler,
    filters,
)
from telegram.request import HTTPXRequest

from bots.adapter import UNSUPPORTED_TEXT, Adapter, Part, media_then_text
from persona.commands import platform_menu
from persona.types import Attachment, IncomingMessage, MediaFile, Reply

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.telegram.org"
MAX_MESSAGE = 4096  # Telegram's limit for a text message, in UTF-16 code units
MAX_CAPTION = 1024
FIRST_ACTION_WAIT = 1.0  # seconds the work waits for the first "typing" to be delivered

#: Answer (private chats only) to an edit of an earlier message.
EDITED_TEXT = "I can't see edits to earlier messages. Could you send it again as a new message?"
#: Answer to a photo over ``max_download_bytes`` ({mb}: the limit in MB).
TOO_BIG_TEXT = "That picture is too big for me to open. Could you send a smaller one (under {mb} MB)?"
#: Answer when a photo could not be downloaded from Telegram.
DOWNLOAD_FAILED_TEXT = "I couldn't get that picture from Telegram. Could you send it again?"
MAX_DOWNLOAD = 10 * 1024 * 1024  # bytes: the largest photo downloaded for /art and /portrait
#: What a person sees when handling their message failed.
APOLOGY_TEXT = "Sorry, something went wrong on my side. Could you try again in a moment?"

#: The command menu registered with setMyCommands on start.
COMMANDS: tuple[tuple[str, str], ...] = platform_menu()  # from persona/commands.py

# message_reaction_count: anonymous reaction counts on the channel posts (the bot is an admin there)
ALLOWED_UPDATES = ("message", "edited_message", "callback_query", "message_reaction_count")

_MEDIA_ACTIONS = {
    "image": ChatAction.UPLOAD_PHOTO,
    "voice": ChatAction.RECORD_VOICE,
    "audio": ChatAction.UPLOAD_VOICE,
    "video": ChatAction.UPLOAD_VIDEO,
    "video_note": ChatAction.UPLOAD_VIDEO_NOTE,
    "music": ChatAction.RECORD_VOICE,  # a song job at work: the character is singing
}


# -- splitting -------------------------------------------------------------------------------


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _prefix_within(text: str, limit: int) -> int:
    """The length (in str characters) of the longest prefix of ``text`` within ``limit`` UTF-16 units."""
    units = 0
    for i, ch in enumerate(text):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > limit:
            return i
    return len(text)


_SENTENCE_END = re.compile(r"[.!?…](?:[\"'”’)\]]*)\s+")


def split_message(text: str, limit: int = MAX_MESSAGE) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` UTF-16 units, preferring paragraph
    breaks, then line breaks, then sentence ends, then spaces; a hard cut only for a
    single word longer than the limit. Empty parts are dropped."""
    parts: list[str] = []
    rest = text.strip()
    while rest:
        if utf16_len(rest) <= limit:
            parts.append(rest)
            break
        window = rest[: _prefix_within(rest, limit)]
        cut = _best_cut(window)
        part, rest = window[:cut].rstrip(), rest[cut:].lstrip()
        if part:
            parts.append(part)
    return parts


def _best_cut(window: str) -> int:
    floor = len(window) // 3  # don't make tiny parts just to hit a nicer boundary
    for sep in ("\n\n", "\n"):
        i = window.rfind(sep)
        if i > floor:
            return i + len(sep)
    ends = [m.end() for m in _SENTENCE_END.finditer(window)]
    if ends and ends[-1] > floor:
        return ends[-1]
    i = max(window.rfind(" "), window.rfind("\t"))
    if i > floor:
        return i + 1
    return len(window)


# -- per-chat ordering -------------------------------------------------------------------


class PerChatUpdateProcessor(BaseUpdateProcessor):
    """Process updates concurrently, but those of one chat one at a time, in arrival order.

    Application creates one task per update in the order getUpdates returned them; each
    task reaches :meth:`do_process_update` in that order (the base class's semaphore is
    FIFO), where it queues behind the previous update of the same chat."""

    def __init__(self, max_concurrent_updates: int = 256):
        super().__init__(max_concurrent_updates)
        self._tails: dict[Any, asyncio.Future] = {}

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        self._tails.clear()

    @staticmethod
    def _key(update: object) -> Any:
        if isinstance(update, Update) and update.effective_chat is not None:
            return update.effective_chat.id
        return None

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        key = self._key(update)
        if key is None:
            await coroutine
            return
        previous = self._tails.get(key)
        mine = asyncio.get_running_loop().create_future()
        self._tails[key] = mine
        started = False
        try:
            if previous is not None:
                await previous
            started = True
            await coroutine
        finally:
            if not started and hasattr(coroutine, "close"):
                coroutine.close()  # cancelled while queued: don't leave it un-awaited
            mine.set_result(None)
            if self._tails.get(key) is mine:
                del self._tails[key]


class _ChatActionLimiter(AIORateLimiter):
    """AIORateLimiter that lets chat actions through unthrottled and unretried: they are
    cosmetic, and must not use up a group's 20-a-minute budget that replies need."""

    async def process_request(self, callback, args, kwargs, endpoint, data, rate_limit_args):
        if endpoint == "sendChatAction":
            return await callback(*args, **kwargs)
        return await super().process_request(callback, args, kwargs, endpoint, data, rate_limit_args)


class _TolerantBot(ExtBot):
    """An ExtBot whose getUpdates replaces an update it cannot parse (a newer or broken
    payload) by a bare ``{"update_id": N}``: the offset still moves past it and the rest of
    the batch is handled. Stock PTB lets the parse error end the polling loop for good,
    leaving the bot silently deaf."""

    async def _post(self, endpoint: str, data: Any = None, *args: Any, **kwargs: Any) -> Any:
        result = await super()._post(endpoint, data, *args, **kwargs)
        if endpoint == "getUpdates" and isinstance(result, list):
            result = [self._readable(raw) for raw in result]
        return result

    def _readable(self, raw: Any) -> Any:
        try:
            Update.de_json(copy.deepcopy(raw), self)
            return raw
        except Exception:  # noqa: BLE001 - any parse failure: skip this one update
            update_id = raw.get("update_id") if isinstance(raw, dict) else None
            log.exception("telegram: skipping update %s, which python-telegram-bot cannot read: %.500r", update_id, raw)
            if isinstance(update_id, int):
                return {"update_id": update_id}
            raise


# -- the typing indicator --------------------------------------------------------------------


class _ChatActionLoop:
    """Sends ``action`` at once and then every ``interval`` seconds until the block ends."""

    def __init__(self, adapter: TelegramAdapter, chat_id: str, action: str, interval: float):
        self.adapter = adapter
        self.chat_id = chat_id
        self.action = action
        self.interval = interval
        self._task: asyncio.Task | None = None

    async def __aenter__(self):
        first = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._repeat(first), name=f"telegram-action-{self.chat_id}")
        # Let the first action reach Telegram before the work starts, but never wait long for it.
        await asyncio.wait([first], timeout=FIRST_ACTION_WAIT)
        return self

    async def _repeat(self, first: asyncio.Future) -> None:
        try:
            await self.adapter._send_action(self.chat_id, self.action)
        finally:
            if not first.done():
                first.set_result(None)
        while True:
            await asyncio.sleep(self.interval)
            await self.adapter._send_action(self.chat_id, self.action)

    async def __aexit__(self, *exc):
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return False


# -- the adapter ------------------------------------------------------------------------------


class TelegramStartError(RuntimeError):
    """The bot could not start (a rejected token, an unreachable server); the text
    never carries the token."""


def redact_token(text: str, token: str) -> str:
    """``text`` with the bot token (and its secret half alone) replaced."""
    if token:
        text = text.replace(token, "<token>")
        secret = token.partition(":")[2]
        if len(secret) >= 8:
            text = text.replace(secret, "<token>")
    return text


class TelegramAdapter(Adapter):
    platform = "telegram"

    def __init__(
        self,
        token: str,
        persona: str | None = None,
        *,
        api_url: str = DEFAULT_API_URL,
        admin_ids: Iterable[int | str] = (),
        commands: Sequence[tuple[str, str]] = COMMANDS,
        poll_timeout: float = 30.0,
        poll_interval: float = 0.0,
        webhook_url: str | None = None,
        webhook_listen: str = "127.0.0.1",
        webhook_port: int = 8443,
        webhook_path: str = "telegram",
        webhook_secret: str | None = None,
        max_retries: int = 3,
        overall_rate: float = 30.0,
        max_concurrent_updates: int = 256,
        typing_interval: float = 4.0,
        request_timeout: float = 10.0,
        media_timeout: float = 60.0,
        download_dir: str | Path | None = None,
        max_download_bytes: int = MAX_DOWNLOAD,
    ):
        super().__init__(persona)
        if not token:
            raise ValueError("a Telegram bot token is required")
        if webhook_url and not webhook_secret:
            # Without it anyone who learns the URL can post updates as any user.
            raise ValueError(
                "Telegram webhook mode needs a secret: set VCHAR_TELEGRAM_WEBHOOK_SECRET "
                "(1-256 characters of A-Z, a-z, 0-9, _ and -); Telegram sends it with every update"
            )
        self.token = token
        self.api_url = api_url.rstrip("/")
        # Telegram asks bots to stay under about 30 messages a second overall; raise it for
        # a self-hosted Bot API server or paid broadcasts, 0 lifts the limit.
        self.overall_rate = overall_rate
        self.admin_ids = frozenset(str(a) for a in admin_ids)
        self.commands = tuple(commands)
        self.poll_timeout = poll_timeout
        self.poll_interval = poll_interval
        self.webhook_url = webhook_url
        self.webhook_listen = webhook_listen
        self.webhook_port = webhook_port
        self.webhook_path = webhook_path
        self.webhook_secret = webhook_secret
        self.max_retries = max_retries
        self.max_concurrent_updates = max_concurrent_updates
        self.typing_interval = typing_interval
        self.request_timeout = request_timeout
        self.media_timeout = media_timeout
        self.download_dir = Path(download_dir) if download_dir is not None else None  # None: the system temp folder
        self.max_download_bytes = max_download_bytes
        self.application: Application | None = None
        self.bot_id: int | None = None
        self.bot_username: str = ""

    # -- lifecycle ---------------------------------------------------------------------

    def build_application(self) -> Application:
        def request(**kw: Any) -> HTTPXRequest:
            return HTTPXRequest(connect_timeout=self.request_timeout, write_timeout=self.request_timeout,
                                media_write_timeout=self.media_timeout, **kw)

        # The same bot ApplicationBuilder().token().base_url().base_file_url().rate_limiter()
        # makes, but one that skips an update it cannot parse instead of dying on it.
        bot = _TolerantBot(
            token=self.token,
            base_url=f"{self.api_url}/bot",
            base_file_url=f"{self.api_url}/file/bot",
            request=request(connection_pool_size=256, read_timeout=self.request_timeout),
            get_updates_request=request(connection_pool_size=1, read_timeout=self.request_timeout),
            rate_limiter=_ChatActionLimiter(overall_max_rate=self.overall_rate, max_retries=self.max_retries),
        )
        app = ApplicationBuilder().bot(bot).concurrent_updates(PerChatUpdateProcessor(self.max_concurrent_updates)).build()
        app.add_handler(MessageHandler(filters.UpdateType.MESSAGES, self._on_message))
        app.add_handler(CallbackQueryHandler(self._on_button))
        app.add_handler(MessageReactionHandler(
            self._on_reactions, message_reaction_types=MessageReactionHandler.MESSAGE_REACTION_COUNT_UPDATED))
        app.add_error_handler(self._on_error)
        return app

    async def connect(self) -> None:
        app = self.build_application()
        self.application = app
        try:
            try:
                await app.initialize()  # getMe: checks the token, learns our id and @username
            except TelegramError as exc:
                # PTB's InvalidToken quotes the token: never let it reach a log or a terminal
                raise TelegramStartError(f"telegram: {redact_token(str(exc), self.token)}") from None
            self.bot_id = app.bot.id
            self.bot_username = app.bot.username or ""
            await self.register_commands()
            await app.start()
            await self._start_updates(app)
        except BaseException:
            await self.disconnect()
            raise
        log.info("telegram: @%s (%s) is listening (%s)", self.bot_username, self.bot_id,
                 "webhook" if self.webhook_url else "long polling")

    async def _start_updates(self, app: Application) -> None:
        if self.webhook_url:
            await app.updater.start_webhook(
                listen=self.webhook_listen,
                port=self.webhook_port,
                url_path=self.webhook_path,
                webhook_url=self.webhook_url,
                secret_token=self.webhook_secret,
                allowed_updates=list(ALLOWED_UPDATES),
                drop_pending_updates=False,
            )
        else:
            await app.updater.start_polling(
                poll_interval=self.poll_interval,
                timeout=int(self.poll_timeout),
                allowed_updates=list(ALLOWED_UPDATES),
                drop_pending_updates=False,
                error_callback=self._polling_error,
            )

    async def disconnect(self) -> None:
        """Stop fetching (confirming what was fetched), answer what is in flight, close."""
        app = self.application
        if app is None:
            return
        try:
            if app.updater is not None and app.updater.running:
                await app.updater.stop()
            if app.running:
                await app.stop()  # waits for the updates being handled, replies included
        finally:
            try:
                await app.shutdown()  # a no-op for an app that never initialized
            finally:
                self.application = None

    async def register_commands(self) -> None:
        assert self.application is not None
        try:
            await self.application.bot.set_my_commands([BotCommand(c, d) for c, d in self.commands])
        except TelegramError as exc:  # a missing menu must not keep the character offline
            log.warning("telegram: setMyCommands failed: %s", exc)

    def _polling_error(self, exc: TelegramError) -> None:
        log.warning("telegram: polling failed, retrying: %s", exc)

    @property
    def bot(self):
        if self.application is None:
            raise RuntimeError("TelegramAdapter is not started")
        return self.application.bot

    # -- incoming ------------------------------------------------------------------------

    def is_admin(self, user_id: int | str | None) -> bool:
        return user_id is not None and str(user_id) in self.admin_ids

    def _mentions_me(self, message: Message) -> bool:
        name = self.bot_username.lower()
        kinds = [MessageEntity.MENTION, MessageEntity.TEXT_MENTION]
        found = message.parse_entities(kinds) if message.text is not None else message.parse_caption_entities(kinds)
        for entity, value in found.items():
            if entity.type == MessageEntity.TEXT_MENTION and entity.user and entity.user.id == self.bot_id:
                return True
            if entity.type == MessageEntity.MENTION and name and value.lower() == f"@{name}":
                return True
        return False

    def _command_for_me(self, message: Message) -> bool:
        text = message.text if message.text is not None else (message.caption or "")
        m = re.match(r"/([A-Za-z0-9_]{1,32})(?:@([A-Za-z0-9_]+))?(?:\s|$)", text)
        if not m:
            return False
        if m.group(2):
            return m.group(2).lower() == self.bot_username.lower()
        return m.group(1).lower() in {c for c, _ in self.commands}

    def _replies_to_me(self, message: Message) -> bool:
        original = message.reply_to_message
        return bool(original and original.from_user and original.from_user.id == self.bot_id)

    def _strip_mention(self, text: str) -> str:
        if not self.bot_username:
            return text
        out = re.sub(rf"[,;:]?[ \t]*(?<![\w@])@{re.escape(self.bot_username)}\b", " ", text, flags=re.I)
        out = re.sub(r"[ \t]+([,.!?;:])", r"\1", out)  # "food, @bot?" -> "food?"
        out = re.sub(r"[ \t]{2,}", " ", out).strip()
        out = re.sub(r"^[,:;.!\s]+", "", out)  # "@bot, hi" -> "hi"
        return out or text.strip()

    def addressed(self, message: Message) -> bool:
        """Whether a message is for us: always in private; in groups when @mentioned,
        replied to, or commanded."""
        if message.chat.type == ChatType.PRIVATE:
            return True
        return (self._mentions_me(message) or self._replies_to_me(message) or self._command_for_me(message)
                or self._comments_on_my_post(message))

    def _comments_on_my_post(self, message: Message) -> bool:
        """A comment in a channel's discussion group: a reply to the copy of a channel post
        that Telegram forwards there. Which channel posted it is the publisher's business;
        this bot only sees the groups it was added to."""
        original = message.reply_to_message
        return bool(original is not None and original.is_automatic_forward and original.sender_chat is not None
                    and original.sender_chat.type == ChatType.CHANNEL)

    def _quote(self, message: Message) -> str | None:
        original = message.reply_to_message
        if original is None or not self._comments_on_my_post(message):
            return None
        return (original.text or original.caption or "")[:4000] or None

    def to_incoming(self, message: Message, attachments: tuple[Attachment, ...] = ()) -> IncomingMessage:
        chat, user = message.chat, message.from_user
        private = chat.type == ChatType.PRIVATE
        text = message.text if message.text is not None else (message.caption or "")
        if not private and not text.startswith("/"):
            text = self._strip_mention(text)
        sender_id = user.id if user else (message.sender_chat.id if message.sender_chat else chat.id)
        sender_name = user.first_name if user else (message.sender_chat.title if message.sender_chat else None)
        return IncomingMessage(
            platform=self.platform,
            chat_id=str(chat.id),
            user_id=str(sender_id),
            user_name=sender_name,
            text=text,
            message_id=str(message.message_id),
            persona=self.persona,
            chat_kind="private" if private else ("channel" if chat.type == ChatType.CHANNEL else "group"),
            chat_title=None if private else chat.title,
            reply_to_message_id=str(message.reply_to_message.message_id) if message.reply_to_message else None,
            quote=self._quote(message) if message.reply_to_message is not None else None,
            attachments=attachments,
            sent_at=message.date,
            raw=message,
        )

    async def _on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or message.chat.type == ChatType.CHANNEL:
            return
        if message.from_user is not None and message.from_user.is_bot:
            return  # never talk to bots (or to ourselves)
        private = message.chat.type == ChatType.PRIVATE
        if update.edited_message is not None:
            if private:
                await self.send_text(str(message.chat.id), EDITED_TEXT)
            return
        if message.text is None:
            image = _image_of(message)
            if image is not None and (message.caption or "").startswith("/") and self.addressed(message):
                await self._dispatch_with_image(message, *image)
                return
            if private and message.effective_attachment is not None:
                await self.send_text(str(message.chat.id), UNSUPPORTED_TEXT)
            return  # service messages (joins, pins...) and anything in groups: silence
        if not self.addressed(message):
            return
        await self.dispatch(self.to_incoming(message))

    # -- buttons (the operator's approvals) ----------------------------------------------

    async def send_choice(self, chat_id: str, text: str, choices: Sequence[tuple[str, str]]) -> str | None:
        """A message with a row of inline buttons (label, data); a press goes to ``on_choice``."""
        markup = InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=data) for label, data in choices]])
        sent = await self.bot.send_message(chat_id=_chat(chat_id), text=text[:MAX_MESSAGE], reply_markup=markup)
        return str(sent.message_id)

    async def _on_reactions(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        counted = update.message_reaction_count
        if counted is None or self.on_reactions is None:
            return
        counts: dict[str, int] = {}
        for r in counted.reactions:
            key = getattr(r.type, "emoji", None) or getattr(r.type, "custom_emoji_id", None) or str(r.type.type)
            counts[key] = counts.get(key, 0) + int(r.total_count)
        try:
            await self.on_reactions(self.platform, str(counted.chat.id), str(counted.message_id), counts,
                                    counted.chat.username)
        except Exception:  # noqa: BLE001 - counts are a nicety
            log.exception("telegram: storing reaction counts failed")

    async def _on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None or query.data is None:
            return
        toast, new_text = "That button does nothing any more.", None
        if self.on_choice is not None:
            try:
                toast, new_text = await self.on_choice(self.platform, str(query.from_user.id), query.data)
            except Exception:  # noqa: BLE001 - the press is answered either way
                log.exception("telegram: a button press (%s) failed", query.data)
                toast = "Sorry, that did not work. Try the command line: vchar posts."
        try:
            await query.answer(toast[:200])
            if new_text and query.message is not None:
                await query.edit_message_text(new_text[:MAX_MESSAGE])
        except TelegramError as exc:
            log.debug("telegram: answering a button press failed: %s", exc)

    async def _dispatch_with_image(self, message: Message, source: Any, mime: str) -> None:
        """Download the photo (``source``: a PhotoSize or an image Document) and hand the
        message on with it; the file is gone once the reply is delivered."""
        chat_id, mid = str(message.chat.id), str(message.message_id)
        unfetched = self.to_incoming(message, (Attachment(kind="image", mime=mime, size=source.file_size),))
        if not await self.admits(unfetched):
            # blocked, rate-limited or not allowed here: the handler answers (or stays
            # silent) without the photo ever being fetched
            await self.dispatch(unfetched)
            return
        limit = self.max_download_bytes
        too_big = TOO_BIG_TEXT.format(mb=max(1, limit // 2**20))
        if source.file_size and source.file_size > limit:
            await self.send_text(chat_id, too_big, reply_to=mid)
            return
        if self.download_dir is not None:
            self.download_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="vchar-telegram-", dir=self.download_dir) as tmp:
            try:
                file = await source.get_file()
                if file.file_size and file.file_size > limit:
                    await self.send_text(chat_id, too_big, reply_to=mid)
                    return
                suffix = Path(file.file_path or "").suffix or mimetypes.guess_extension(mime) or ".jpg"
                path = await file.download_to_drive(Path(tmp) / f"photo-{mid}{suffix.lower()}")
            except TelegramError as exc:
                log.warning("telegram: could not download the photo of message %s in %s: %s", mid, chat_id, exc)
                await self.send_text(chat_id, DOWNLOAD_FAILED_TEXT, reply_to=mid)
                return
            size = path.stat().st_size
            if size > limit:
                await self.send_text(chat_id, too_big, reply_to=mid)
                return
            name = getattr(source, "file_name", None) or path.name
            attachment = Attachment(kind="image", path=str(path), mime=mime, name=name, size=size)
            await self.dispatch(self.to_incoming(message, (attachment,)))

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        exc = context.error
        if isinstance(exc, Forbidden):
            log.warning("telegram: not allowed to write (%s) for update %s", exc, getattr(update, "update_id", "?"))
            return
        log.error("telegram: handling update %s failed", getattr(update, "update_id", update), exc_info=exc)
        if not isinstance(update, Update) or update.effective_message is None:
            return
        message = update.effective_message
        if message.chat.type != ChatType.PRIVATE and not self.addressed(message):
            return
        text = APOLOGY_TEXT
        private = message.chat.type == ChatType.PRIVATE
        if private and self.is_admin(message.from_user.id if message.from_user else None) and exc is not None:
            text += f"\n(admin: {type(exc).__name__}: {str(exc)[:300]})"
        try:
            await self.send_text(str(message.chat.id), text, reply_to=str(message.message_id))
        except Exception as again:  # noqa: BLE001 - nothing more we can do
            log.error("telegram: could not deliver the apology either: %s", again)

    # -- outgoing ------------------------------------------------------------------------

    def working(self, chat_id: str, action: str = ChatAction.TYPING):
        return _ChatActionLoop(self, chat_id, str(action), self.typing_interval)

    async def _send_action(self, chat_id: str, action: str) -> None:
        try:
            await self.bot.send_chat_action(chat_id=_chat(chat_id), action=action)
        except (TelegramError, RuntimeError) as exc:  # cosmetic: never fail a reply for it
            log.debug("telegram: chat action %s in %s failed: %s", action, chat_id, exc)

    @staticmethod
    def _is_group(chat_id: str) -> bool:
        return str(chat_id).startswith("-")

    def _reply_parameters(self, chat_id: str, reply_to: str | None) -> ReplyParameters | None:
        if reply_to is None or not self._is_group(chat_id):
            return None
        try:
            return ReplyParameters(message_id=int(reply_to), allow_sending_without_reply=True)
        except ValueError:
            return None

    async def send_text(self, chat_id: str, text: str, reply_to: str | None = None) -> None:
        reply_parameters = self._reply_parameters(chat_id, reply_to)
        for part in split_message(text):
            await self.bot.send_message(chat_id=_chat(chat_id), text=part, reply_parameters=reply_parameters)
            reply_parameters = None  # only the first part quotes the person

    # The outbox sends a reply part by part. Telegram has no idempotency key for sends:
    # between the Bot API's answer and the one UPDATE that records it, a crash would send
    # that part again on restart. That window is kept to the single UPDATE.

    def parts(self, reply: Reply) -> list[Part]:
        return media_then_text(reply, split_message(reply.text) if reply.text else [])

    async def send_part(self, reply: Reply, part: Part, nonce: str) -> str | None:
        if part.media is not None:
            return await self.send_media(reply, part.media)
        if part.text:
            params = self._reply_parameters(reply.chat_id, reply.reply_to_message_id) if part.quote else None
            sent = await self.bot.send_message(chat_id=_chat(reply.chat_id), text=part.text, reply_parameters=params)
            return str(sent.message_id)
        return None

    async def edit_text(self, chat_id: str, message_id: str, text: str) -> None:
        try:
            await self.bot.edit_message_text(text=text[:MAX_MESSAGE], chat_id=_chat(chat_id), message_id=int(message_id))
        except BadRequest as exc:
            if "not modified" not in str(exc).lower():
                log.debug("telegram: could not edit %s in %s: %s", message_id, chat_id, exc)

    async def show_activity(self, chat_id: str, kind: str) -> None:
        await self._send_action(chat_id, str(_MEDIA_ACTIONS.get(kind, ChatAction.TYPING)))

    def retry_delay(self, exc: BaseException) -> float | None:
        """Flood control waits as long as Telegram asks; network errors, timeouts and 5xx
        answers (PTB's NetworkError, but not BadRequest) are worth another try."""
        if isinstance(exc, RetryAfter):
            ra = exc.retry_after
            return float(ra.total_seconds() if hasattr(ra, "total_seconds") else ra)
        if isinstance(exc, NetworkError) and not isinstance(exc, BadRequest):
            return 0.0
        return super().retry_delay(exc)

    def outcome_unknown(self, exc: BaseException) -> bool:
        """PTB's TimedOut: the request may have reached Telegram (the Bot API has no
        idempotency key), so a post that timed out is not sent again blindly."""
        return isinstance(exc, TimedOut) or super().outcome_unknown(exc)

    async def send_media(self, reply: Reply, media: MediaFile) -> str | None:
        path = Path(media.path)
        caption = media.caption or None
        late_caption = None
        if caption and utf16_len(caption) > MAX_CAPTION:
            caption, late_caption = None, caption
        common: dict[str, Any] = {
            "chat_id": _chat(reply.chat_id),
            "caption": caption,
            "reply_parameters": self._reply_parameters(reply.chat_id, reply.reply_to_message_id),
        }
        duration = int(round(media.duration)) if media.duration else None
        kind = media.kind
        if kind == "voice" and not _is_ogg(media):
            log.warning("telegram: voice note %s is not OGG/Opus (%s): sending it as audio", path.name, media.mime)
            kind = "audio"
        thumb = Path(media.thumbnail).read_bytes() if media.thumbnail and Path(media.thumbnail).is_file() else None
        async with self.working(reply.chat_id, _MEDIA_ACTIONS.get(kind, ChatAction.UPLOAD_DOCUMENT)):
            data = path.read_bytes()
            if kind == "image":
                sent = await self.bot.send_photo(photo=data, filename=path.name, **common)
            elif kind == "voice":
                sent = await self.bot.send_voice(voice=data, filename=path.name, duration=duration, **common)
            elif kind == "audio":
                sent = await self.bot.send_audio(audio=data, filename=path.name, duration=duration, title=media.title,
                                                 performer=media.performer, thumbnail=thumb, **common)
            elif kind == "video":
                sent = await self.bot.send_video(video=data, filename=path.name, duration=duration, width=media.width,
                                                 height=media.height, thumbnail=thumb, supports_streaming=True,
                                                 **common)
            elif kind == "video_note":  # round, square, no caption: the caption follows as text
                if caption:
                    late_caption, caption = caption, None
                common.pop("caption", None)
                sent = await self.bot.send_video_note(video_note=data, filename=path.name, duration=duration,
                                                      length=media.width, thumbnail=thumb, **common)
            else:
                sent = await self.bot.send_document(document=data, filename=path.name, **common)
        if late_caption:
            await self.send_text(reply.chat_id, late_caption)
        return str(sent.message_id)


def _chat(chat_id: str) -> int | str:
    """Telegram chat ids are integers; @channelusernames stay strings."""
    try:
        return int(chat_id)
    except (TypeError, ValueError):
        return chat_id


def _image_of(message: Message) -> tuple[Any, str] | None:
    """The picture a message carries, as (what to download, its MIME type): the largest
    size of a photo, or a document whose MIME type is an image."""
    if message.photo:
        return max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0)), "image/jpeg"
    doc = message.document
    if doc is not None and (doc.mime_type or "").lower().startswith("image/"):
        return doc, doc.mime_type.lower()
    return None


def _is_ogg(media: MediaFile) -> bool:
    mime = (media.mime or "").lower()
    return mime.startswith(("audio/ogg", "audio/opus", "application/ogg")) or media.path.lower().endswith((".ogg", ".oga", ".opus"))


__all__ = [
    "APOLOGY_TEXT", "COMMANDS", "DOWNLOAD_FAILED_TEXT", "EDITED_TEXT", "TOO_BIG_TEXT", "UNSUPPORTED_TEXT", "PerChatUpdateProcessor",
    "TelegramAdapter", "split_message",
]
