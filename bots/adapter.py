"""The adapter interface every platform implements (Telegram, Discord, the terminal).

An adapter turns platform events into :class:`IncomingMessage` and hands them to a
handler (the service), then delivers the :class:`Reply` it gets back. Only
``send_text`` is required; media fall back to text by default.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Awaitable, Callable

from persona.types import IncomingMessage, MediaFile, Reply

log = logging.getLogger(__name__)

Handler = Callable[[IncomingMessage], Awaitable[Reply | None]]
# Asked before anything a message carries is downloaded: would this message be handled at
# all (allowed chat, person not blocked, rate limit not spent)? PersonaManager.admits.
Admit = Callable[[IncomingMessage], Awaitable[bool]]

# What a person hears in a private chat when they send something the character cannot read
# (a sticker, a file, a voice message, a photo without a command).
UNSUPPORTED_TEXT = "I can only read text messages for now."


class Adapter(abc.ABC):
    platform: str = "abstract"

    def __init__(self, persona: str | None = None):
        self.persona = persona
        self._handler: Handler | None = None
        self._admit: Admit | None = None

    async def start(self, handler: Handler, admit: Admit | None = None) -> None:
        """Connect and begin delivering messages to ``handler``; returns once started.
        ``admit`` (optional) is asked before a message's photo is downloaded."""
        self._handler = handler
        self._admit = admit
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
            await self.send(reply)
        return reply

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
