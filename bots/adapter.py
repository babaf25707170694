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


class Adapter(abc.ABC):
    platform: str = "abstract"

    def __init__(self, persona: str | None = None):
        self.persona = persona
        self._handler: Handler | None = None

    async def start(self, handler: Handler) -> None:
        """Connect and begin delivering messages to ``handler``; returns once started."""
        self._handler = handler
        await self.connect()

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
