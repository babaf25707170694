"""Posting to a Discord channel through its webhook (``platform: discord-webhook`` in a
posting plan): the post appears under the character's name, with no bot account needed. Sent with
discord.py's own webhook client; the same parts as any reply: each media file, then text.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import aiohttp
import discord

from bots.adapter import Adapter, Part, media_then_text
from bots.discord_adapter import DEFAULT_API_URL, configure_endpoints, split_message
from persona.types import Reply

log = logging.getLogger(__name__)


class DiscordWebhookPoster(Adapter):
    """An adapter that only sends: ``reply.chat_id`` is the webhook's URL."""

    platform = "discord-webhook"

    def __init__(self, name_of: Callable[[str], str], *, api_url: str = DEFAULT_API_URL,
                 avatar_url: str | None = None):
        super().__init__(None)
        self.name_of = name_of  # persona id -> the name posts appear under
        self.api_url = api_url.rstrip("/")
        self.avatar_url = avatar_url
        self._session: aiohttp.ClientSession | None = None

    async def connect(self) -> None:
        if self.api_url != DEFAULT_API_URL:
            configure_endpoints(self.api_url)
        self._session = aiohttp.ClientSession()

    async def disconnect(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send_text(self, chat_id: str, text: str, reply_to: str | None = None) -> None:
        for chunk in split_message(text):
            await self._send(chat_id, "", content=chunk)

    def parts(self, reply: Reply) -> list[Part]:
        return media_then_text(reply, split_message(reply.text) if reply.text else [])

    async def send_part(self, reply: Reply, part: Part, nonce: str) -> str | None:
        if part.media is not None:
            path = Path(part.media.path)
            return await self._send(reply.chat_id, reply.persona, content=part.media.caption or "",
                                    file=discord.File(str(path), filename=path.name))
        if part.text:
            return await self._send(reply.chat_id, reply.persona, content=part.text)
        return None

    async def _send(self, url: str, persona: str, **kw) -> str:
        if self._session is None:
            await self.connect()
        try:
            hook = discord.Webhook.from_url(url, session=self._session)
        except ValueError as exc:
            raise discord.InvalidData(f"not a Discord webhook URL: {exc}") from None
        name = self.name_of(persona) if persona else None
        sent = await hook.send(wait=True, username=name[:80] if name else discord.utils.MISSING,
                               avatar_url=self.avatar_url or discord.utils.MISSING, **kw)
        return str(sent.id)

    def retry_delay(self, exc: BaseException) -> float | None:
        if isinstance(exc, discord.DiscordServerError):
            return 0.0
        if isinstance(exc, (discord.HTTPException, discord.InvalidData)):
            return None
        if isinstance(exc, (aiohttp.ClientError, ConnectionError)):
            return 0.0
        return super().retry_delay(exc)

    def outcome_unknown(self, exc: BaseException) -> bool:
        """A webhook execution has no nonce: a timeout may have posted it."""
        return isinstance(exc, (asyncio.TimeoutError, TimeoutError))
