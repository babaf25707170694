"""Chat in the studio: one more adapter (``platform="studio"``), as Telegram and Discord are.

The operator's messages go to the persona manager like any platform's; replies leave
through the outbox like any platform's. "Delivering" here means telling the open studio
pages: each chat page listens on :class:`Hub` (server-sent events) and reloads its
messages when a reply was delivered, or updates an acknowledgement's progress line.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

from bots.adapter import Adapter
from persona.types import IncomingMessage, MediaFile, Reply

log = logging.getLogger(__name__)

OPERATOR_ID = "operator"  # the studio's own person: whoever logged in


class Hub:
    """Live events for the open studio pages, per topic (a persona's chat, the jobs)."""

    def __init__(self) -> None:
        self._listeners: dict[str, set[asyncio.Queue]] = {}

    def listen(self, topic: str) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(maxsize=100)
        self._listeners.setdefault(topic, set()).add(queue)
        return queue

    def leave(self, topic: str, queue: asyncio.Queue) -> None:
        self._listeners.get(topic, set()).discard(queue)

    def publish(self, topic: str, event: dict) -> None:
        for queue in list(self._listeners.get(topic, ())):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:  # a page that stopped reading: it reloads when it comes back
                log.debug("studio: a listener on %s is full; event dropped", topic)


class StudioAdapter(Adapter):
    """The studio's chat for one persona. The operator is ``OPERATOR_ID`` in the chat
    ``studio:operator``; ``user_name`` is how the character addresses them."""

    platform = "studio"

    def __init__(self, persona: str, hub: Hub, *, user_name: str = "Operator"):
        super().__init__(persona)
        self.hub = hub
        self.user_name = user_name
        self.chat_id = f"studio:{OPERATOR_ID}"
        self.topic = f"chat:{persona}"

    def message(self, text: str) -> IncomingMessage:
        return IncomingMessage(platform=self.platform, chat_id=self.chat_id, user_id=OPERATOR_ID,
                               user_name=self.user_name, text=text, message_id=uuid.uuid4().hex, persona=self.persona)

    async def converse(self, text: str, on_text: Callable[[str], Awaitable[None]] | None = None) -> Reply | None:
        """The operator says ``text``: the turn runs (streaming its pieces to ``on_text``)
        and its reply is delivered through the outbox."""
        if self._handler is None:
            raise RuntimeError("the studio's adapter is not started")
        reply = await self._handler(self.message(text), on_text=on_text)
        if reply is not None:
            await self.deliver(reply)
        return reply

    async def deliver(self, reply: Reply) -> bool:
        done = await super().deliver(reply)
        self.hub.publish(self.topic, {"type": "changed"})
        return done

    async def send_part(self, reply: Reply, part, nonce: str) -> str | None:
        await super().send_part(reply, part, nonce)
        # the message's own row is what the page shows: its id is the "platform" id, so a
        # job's progress on its acknowledgement finds it
        return str(reply.message_db_id) if reply.message_db_id is not None else None

    async def send(self, reply: Reply) -> None:
        """Nothing goes on a wire: the page reads the stored reply."""

    async def send_text(self, chat_id: str, text: str, reply_to: str | None = None) -> None:
        self.hub.publish(self.topic, {"type": "changed"})

    async def send_media(self, reply: Reply, media: MediaFile) -> None:
        self.hub.publish(self.topic, {"type": "changed"})

    async def send_choice(self, chat_id: str, text: str, choices) -> str | None:
        return None  # the studio has the calendar itself: no message with buttons

    async def edit_text(self, chat_id: str, message_id: str, text: str) -> None:
        self.hub.publish(self.topic, {"type": "progress", "id": message_id, "text": text})

    async def show_activity(self, chat_id: str, kind: str) -> None:
        self.hub.publish(self.topic, {"type": "activity", "kind": kind})
