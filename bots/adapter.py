"""The adapter interface every platform implements (Telegram, Discord, the terminal).

An adapter turns platform events into :class:`IncomingMessage` and hands them to a
handler (the service), then delivers the :class:`Reply` it gets back. Only
``send_text`` is required; media fall back to text by default.

Delivery goes through the outbox when the adapter was started with one: the reply is
claimed, sent part by part (each media file, each text chunk), and every part the
platform confirms is recorded with its message id. Transient failures (a 5xx, a reset, a
timeout, a rate limit) are retried with backoff and never turn into an apology; when they
persist the reply goes back to the outbox, whose sweeper sends it later.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from persona.types import IncomingMessage, MediaFile, Reply

if TYPE_CHECKING:
    from persona.outbox import Outbox

log = logging.getLogger(__name__)

Handler = Callable[[IncomingMessage], Awaitable[Reply | None]]
# Asked before anything a message carries is downloaded: would this message be handled at
# all (allowed chat, person not blocked, rate limit not spent)? PersonaManager.admits.
Admit = Callable[[IncomingMessage], Awaitable[bool]]

# What a person hears in a private chat when they send something the character cannot read
# (a sticker, a file, a voice message, a photo without a command).
UNSUPPORTED_TEXT = "I can only read text messages for now."


@dataclass(frozen=True, slots=True)
class Part:
    """One message on the wire: a media file, a chunk of text, or (for adapters that show
    a reply as one thing, like the terminal) the whole reply."""

    media: MediaFile | None = None
    text: str | None = None
    quote: bool = False  # the first part quotes the person's message where the platform does
    whole: bool = False


def media_then_text(reply: Reply, chunks: list[str]) -> list[Part]:
    """The usual parts of a reply: each media file, then each text chunk; the first part
    quotes the person's message."""
    parts = [Part(media=m, quote=i == 0) for i, m in enumerate(reply.media)]
    return parts + [Part(text=chunk, quote=not parts and i == 0) for i, chunk in enumerate(chunks)]


class SendFailed(Exception):
    """A reply part could not be sent; ``transient`` says whether trying later may work."""

    def __init__(self, message: str, *, transient: bool):
        super().__init__(message)
        self.transient = transient


class Adapter(abc.ABC):
    platform: str = "abstract"

    def __init__(self, persona: str | None = None):
        self.persona = persona
        self._handler: Handler | None = None
        self._admit: Admit | None = None
        self._outbox: Outbox | None = None
        # transient send failures: tries per part, and the first backoff (doubling)
        self.send_attempts = 4
        self.send_backoff = 0.5
        self.retry_later_after = 30.0  # s before the outbox sweeper tries a reply again
        # A button press (platform, user id, the button's data) -> (a short answer, the
        # message's new text or None). Set by the service: the operator's post approvals.
        self.on_choice: Callable[[str, str, str], Awaitable[tuple[str, str | None]]] | None = None
        # Reaction counts on a message (platform, chat id, message id, {emoji: count}, the
        # chat's @username or None): the service stores them on the post it belongs to.
        self.on_reactions: Callable[..., Awaitable[None]] | None = None

    async def start(self, handler: Handler, admit: Admit | None = None, outbox: Outbox | None = None) -> None:
        """Connect and begin delivering messages to ``handler``; returns once started.
        ``admit`` (optional) is asked before a message's photo is downloaded; with an
        ``outbox`` every stored reply is claimed and recorded as it is delivered."""
        self._handler = handler
        self._admit = admit
        self._outbox = outbox
        await self.connect()

    async def admits(self, msg: IncomingMessage) -> bool:
        """Whether ``msg`` is worth downloading for. A failing check admits: the handler
        makes the real decision afterwards, this only saves a download."""
        if self._admit is None:
            return True
        try:
            return bool(await self._admit(msg))
        except Exception:  # noqa: BLE001
            log.exception("%s: the admission check failed; handling the message anyway", self.platform)
            return True

    async def stop(self) -> None:
        await self.disconnect()

    async def connect(self) -> None:  # noqa: B027 - optional hook
        """Open the connection to the platform."""

    async def disconnect(self) -> None:  # noqa: B027 - optional hook
        """Close it; pending replies are delivered first where the platform allows."""

    async def dispatch(self, msg: IncomingMessage) -> Reply | None:
        """Hand a message to the handler and deliver whatever reply comes back."""
        if self._handler is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        async with self.working(msg.chat_id):
            reply = await self._handler(msg)
        if reply is not None:
            await self.deliver(reply)
        return reply

    # -- delivery -----------------------------------------------------------------------------

    def parts(self, reply: Reply) -> list[Part]:
        """What goes on the wire for a reply, in order. By default the whole reply is one
        part (``send``); platforms that send media and text chunks separately split it."""
        return [Part(whole=True)]

    async def send_part(self, reply: Reply, part: Part, nonce: str) -> str | None:
        """Send one part; returns the platform's message id when it gives one. ``nonce``
        is the same for every attempt at this part (Discord uses it to create it once)."""
        if part.whole:
            await self.send(reply)
        elif part.media is not None:
            await self.send_media(reply, part.media)
        elif part.text:
            await self.send_text(reply.chat_id, part.text, reply_to=reply.reply_to_message_id if part.quote else None)
        return None

    def retry_delay(self, exc: BaseException) -> float | None:
        """Seconds to wait before sending again after ``exc``, or None when it is not
        transient (the platform refused: trying again would not help)."""
        if isinstance(exc, (ConnectionError, TimeoutError, asyncio.TimeoutError)):
            return 0.0
        return None

    async def deliver(self, reply: Reply) -> bool:
        """Send a reply through the outbox (or straight, without one). Returns False when
        it was not sent now: someone else holds it, or it went back to the outbox after
        transient failures. A refusal marks it failed and raises."""
        outbox, rid = self._outbox, reply.message_db_id
        if outbox is None or rid is None:
            await self.send(reply)
            return True
        done = await outbox.claim(rid)
        if done is None:
            log.debug("%s: reply %s is delivered or being sent elsewhere", self.platform, rid)
            return False
        parts = self.parts(reply) or [Part(text="")]
        for i, part in enumerate(parts):
            if i < done:
                continue  # confirmed before a crash: never sent twice
            try:
                pid = await self._send_with_retries(reply, part, f"vc{rid}p{i}")
            except SendFailed as exc:
                if exc.transient:
                    log.warning("%s: reply %s not delivered yet (%s); the outbox tries again in %.0f s",
                                self.platform, rid, exc, self.retry_later_after)
                    await outbox.retry_later(rid, str(exc), self.retry_later_after)
                    return False
                await outbox.failed(rid, str(exc))
                raise
            await outbox.part_delivered(rid, i + 1, pid, last=i == len(parts) - 1)
        return True

    async def send_choice(self, chat_id: str, text: str, choices) -> str | None:
        """A message with buttons (label, data). Platforms without buttons get the text
        and the choices' labels; the operator answers on the command line."""
        await self.send_text(chat_id, text + "\n" + " / ".join(label for label, _ in choices))
        return None

    def outcome_unknown(self, exc: BaseException) -> bool:
        """Whether a send that raised ``exc`` may still have reached the platform (a
        timeout after the request left): such a post is not sent again blindly."""
        return isinstance(exc, (TimeoutError, asyncio.TimeoutError))

    async def edit_text(self, chat_id: str, message_id: str, text: str) -> None:  # noqa: B027 - optional
        """Change a message the character sent (progress on its acknowledgement)."""

    async def show_activity(self, chat_id: str, kind: str) -> None:  # noqa: B027 - optional
        """Show what the character is busy with ("image", "voice"...) for a few seconds."""

    async def claim(self, reply: Reply) -> bool:
        """For replies sent some other way (a Discord interaction's follow-ups): take the
        reply from the outbox first; False when it is not ours to send."""
        if self._outbox is None or reply.message_db_id is None:
            return True
        return await self._outbox.claim(reply.message_db_id) is not None

    async def delivered(self, reply: Reply, platform_message_id: str | None) -> None:
        """...and record it delivered once the platform confirmed it."""
        if self._outbox is not None and reply.message_db_id is not None:
            await self._outbox.part_delivered(reply.message_db_id, 1, platform_message_id, last=True)

    async def _send_with_retries(self, reply: Reply, part: Part, nonce: str) -> str | None:
        delay = self.send_backoff
        for attempt in range(1, self.send_attempts + 1):
            if part.text == "" and part.media is None and not part.whole:
                return None  # nothing to say (a reply that is only a record)
            try:
                return await self.send_part(reply, part, nonce)
            except Exception as exc:  # noqa: BLE001 - classified below
                wait = self.retry_delay(exc)
                what = f"{type(exc).__name__}: {exc}"[:500]
                if wait is None:
                    raise SendFailed(what, transient=False) from exc
                if attempt == self.send_attempts:
                    raise SendFailed(what, transient=True) from exc
                log.info("%s: sending failed (%s); try %d of %d in %.1f s", self.platform, what, attempt + 1,
                         self.send_attempts, max(wait, delay))
                await asyncio.sleep(max(wait, delay))
                delay *= 2
        return None

    def working(self, chat_id: str):
        """A context manager shown while the character works (a typing indicator)."""
        return _NullContext()

    async def send(self, reply: Reply) -> None:
        """Deliver a reply: its media the platform can show, then its text."""
        for media in reply.media:
            await self.send_media(reply, media)
        if reply.text:
            await self.send_text(reply.chat_id, reply.text, reply_to=reply.reply_to_message_id)

    @abc.abstractmethod
    async def send_text(self, chat_id: str, text: str, reply_to: str | None = None) -> None: ...

    async def send_media(self, reply: Reply, media: MediaFile) -> None:
        """Platforms override this per kind; the default says what would have been sent."""
        # never a server path: the person sees what it was, and its caption if any
        note = f"[{media.kind}: {media.caption}]" if media.caption else f"[a {media.kind} I can't send here]"
        await self.send_text(reply.chat_id, note, reply_to=reply.reply_to_message_id)


class _NullContext:
    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return False
