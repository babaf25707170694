"""Discord: one bot account speaks for one character, through discord.py.

``DiscordAdapter(token, persona)`` runs a ``discord.Client`` (intents: guilds, guild and
DM messages, message content; the last is privileged and must be switched on in the
Developer Portal). What it answers:

* direct messages, always;
* messages in servers that mention the bot (the mention is taken out of the text) or
  that reply to one of its messages; never messages from bots, itself included.

Slash commands mirroring Telegram's (``/start /help /persona /memory /forget /selfie
/voice /song /video``) are registered globally when the adapter starts (``tree.sync()``;
pass ``command_guild_ids`` to register them in given servers instead, which is instant).
A slash command is deferred ("is thinking...") and answered with follow-ups; the
manager gets ``"/name args"`` as the message text.

A message whose text is a command and that carries an image (``/art watercolor`` with a
photo attached, ``/portrait`` with a picture of a statue) has its first image downloaded
(``Attachment.save``) into a temporary folder (``download_dir``), at most
``max_download_bytes`` (larger: :data:`TOO_BIG`); the manager gets it as the attachment's
``path``, and the file is deleted once the reply is delivered.

While the character works the channel shows the typing indicator. Replies longer than
2000 characters go as several messages, split at paragraph, line, sentence or word
boundaries. Images, audio and video go as attachments; voice notes as real Discord voice
messages (flag 8192 with ``duration_secs`` and a ``waveform``, uploaded through an upload
slot), or as a plain attachment when that fails. A dropped gateway is resumed by
discord.py itself; the persona manager answers a message id once, so an event replayed
on resume is not answered twice. A failing handler is logged and the person gets a short
apology, never a traceback.

Several characters in one process: one ``DiscordAdapter`` (one bot token, one Client)
per persona.

Pointing at another Discord (a proxy, or a fake in tests): ``api_url`` and ``gateway_url``
set ``discord.http.Route.BASE`` and ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY``.
**These are process-wide globals of discord.py**: every Discord client in the process
uses the last values set, so all adapters of one process must agree on them (a warning
is logged when they do not). With ``api_url`` set and no ``gateway_url``, the gateway
address is asked from ``GET /gateway``.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import dataclasses
import logging
import os
import re
import tempfile
import weakref
from pathlib import Path
from typing import Any, Optional

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.http import Route

from bots.adapter import UNSUPPORTED_TEXT, Adapter, Handler, Part, media_then_text
from persona.commands import slash_commands
from persona.types import Attachment, IncomingMessage, MediaFile, Reply

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://discord.com/api/v10"
MESSAGE_LIMIT = 2000
VOICE_MESSAGE_FLAG = 8192
VOICE_FILENAME = "voice-message.ogg"
APOLOGY = "Sorry, something went wrong on my side. Could you try that again in a moment?"
#: Answer to a picture over ``max_download_bytes`` ({mb}: the limit in MB).
TOO_BIG = "That picture is too big for me to open. Could you send a smaller one (under {mb} MB)?"
#: Answer when a picture could not be fetched from Discord.
DOWNLOAD_FAILED = "I couldn't get that picture from Discord. Could you send it again?"
MAX_DOWNLOAD = 10 * 1024 * 1024  # bytes: the largest picture downloaded for /art and /portrait

# Slash commands: name -> (description, option name or None, option description).
SLASH_COMMANDS: dict[str, tuple[str, str | None, str]] = slash_commands()  # from persona/commands.py

_live: weakref.WeakSet[DiscordAdapter] = weakref.WeakSet()  # connected adapters, to warn on conflicts


def configure_endpoints(api_url: str | None = None, gateway_url: str | None = None) -> None:
    """Point every discord.py client in this process at ``api_url`` / ``gateway_url``."""
    if api_url is not None:
        api_url = api_url.rstrip("/")
        if Route.BASE != api_url and any(a.api_url != api_url for a in _live):
            log.warning("Discord API URL changed from %s to %s for every client in this process", Route.BASE, api_url)
        Route.BASE = api_url
    if gateway_url is not None:
        old = str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
        if old != gateway_url and any(a.gateway_url not in (None, gateway_url) for a in _live):
            log.warning("Discord gateway URL changed from %s to %s for every client in this process", old, gateway_url)
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Cut ``text`` into pieces of at most ``limit`` characters, at the most natural
    boundary available: a blank line, a line break, a sentence end, a space."""
    text = text.strip()
    pieces: list[str] = []
    while len(text) > limit:
        window = text[: limit + 1]
        cut = -1
        for sep in ("\n\n", "\n", ". ", "! ", "? ", "… ", " "):
            i = window.rfind(sep, 0, limit)
            if i > limit // 3:
                cut = i + (len(sep) if sep.strip() else 0)
                break
        if cut <= 0:
            cut = limit
        head, text = text[:cut].rstrip(), text[cut:].lstrip()
        if head:
            pieces.append(head)
    if text:
        pieces.append(text)
    return pieces


def voice_message_metadata(path: str | os.PathLike[str], max_points: int = 256) -> tuple[float, str]:
    """Duration in seconds and Discord's waveform (base64 of up to 256 amplitude bytes,
    about one per 100 ms) of an audio file, decoded with PyAV."""
    import av
    import numpy as np

    rate = 8000
    chunks: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    if samples.size == 0:
        raise ValueError(f"{path}: no audio samples")
    duration = samples.size / rate
    points = max(1, min(max_points, round(duration * 10)))
    buckets = np.array_split(np.abs(samples.astype(np.float32)), points)
    rms = np.array([float(np.sqrt(np.mean(b * b))) if b.size else 0.0 for b in buckets])
    peak = float(rms.max()) or 1.0
    wave = np.clip(np.round(rms / peak * 255), 0, 255).astype(np.uint8)
    return round(duration, 3), base64.b64encode(wave.tobytes()).decode("ascii")


# Voice *channels* need PyNaCl and davey; voice *messages* are plain uploads and need
# neither, so discord.py's start-up warnings about them would only mislead.
discord.VoiceClient.warn_nacl = False
discord.VoiceClient.warn_dave = False


class _VcharClient(discord.Client):
    def __init__(self, adapter: DiscordAdapter, **options: Any):
        super().__init__(**options)
        self.adapter = adapter
        self.tree = app_commands.CommandTree(self)

    async def setup_hook(self) -> None:
        await self.adapter._setup()

    async def on_ready(self) -> None:
        self.adapter._ready.set()
        log.info("discord: logged in as %s (%s) for persona %s", self.user, self.user.id if self.user else "?",
                 self.adapter.persona)

    async def on_resumed(self) -> None:
        log.info("discord: gateway session resumed for persona %s", self.adapter.persona)

    async def on_message(self, message: discord.Message) -> None:
        await self.adapter._on_message(message)


class _SafeTyping:
    """The channel's typing indicator; failing to show it never stops a reply."""

    def __init__(self, channel: discord.abc.Messageable):
        self._typing = channel.typing()
        self._entered = False

    async def __aenter__(self):
        try:
            await self._typing.__aenter__()
            self._entered = True
        except Exception as exc:  # a 403 in a read-only channel, a network blip
            log.debug("typing indicator failed: %s", exc)
        return self

    async def __aexit__(self, *exc):
        if self._entered:
            await self._typing.__aexit__(*exc)
        return False


class DiscordAdapter(Adapter):
    platform = "discord"

    def __init__(
        self,
        token: str,
        persona: str | None = None,
        *,
        api_url: str = DEFAULT_API_URL,
        gateway_url: str | None = None,
        sync_commands: bool = True,
        command_guild_ids: tuple[int, ...] | list[int] = (),
        ready_timeout: float = 60.0,
        guild_ready_timeout: float = 2.0,
        max_ratelimit_timeout: float | None = 60.0,
        client_options: dict[str, Any] | None = None,
        drain_timeout: float = 30.0,
        download_dir: str | os.PathLike[str] | None = None,
        max_download_bytes: int = MAX_DOWNLOAD,
    ):
        super().__init__(persona)
        self.token = token
        self.api_url = api_url.rstrip("/")
        self.gateway_url = gateway_url
        self.sync_commands = sync_commands
        self.command_guild_ids = tuple(int(g) for g in command_guild_ids)
        self.ready_timeout = ready_timeout
        self.guild_ready_timeout = guild_ready_timeout
        self.max_ratelimit_timeout = max_ratelimit_timeout
        self.client_options = dict(client_options or {})
        self.drain_timeout = drain_timeout
        self.download_dir = Path(download_dir) if download_dir is not None else None  # None: the system temp folder
        self.max_download_bytes = max_download_bytes
        self.client: _VcharClient | None = None
        self.synced_commands: list[app_commands.AppCommand] = []
        self._ready = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None
        self._sent_ids: collections.deque[int] = collections.deque(maxlen=5000)  # our recent message ids
        self._inflight: set[asyncio.Task] = set()  # messages being answered
        self._closing = False

    # -- life cycle -------------------------------------------------------------------------

    @staticmethod
    def intents() -> discord.Intents:
        intents = discord.Intents.none()
        intents.guilds = True
        intents.guild_messages = True
        intents.dm_messages = True
        intents.message_content = True
        return intents

    async def connect(self) -> None:
        if self.api_url != DEFAULT_API_URL or self.gateway_url:
            configure_endpoints(self.api_url, self.gateway_url)
        options = {
            "intents": self.intents(),
            "guild_ready_timeout": self.guild_ready_timeout,
            "max_ratelimit_timeout": self.max_ratelimit_timeout,
            "allowed_mentions": discord.AllowedMentions(everyone=False, roles=False, users=True, replied_user=False),
            **self.client_options,
        }
        self._ready.clear()
        self._closing = False
        self.client = _VcharClient(self, **options)
        self._session = aiohttp.ClientSession()
        try:
            await self.client.login(self.token)  # GET /users/@me, the application; setup_hook syncs commands
            if self.api_url != DEFAULT_API_URL and not self.gateway_url:
                data = await self.client.http.request(Route("GET", "/gateway"))
                self.gateway_url = data["url"]
                configure_endpoints(gateway_url=self.gateway_url)
            _live.add(self)
            self._task = asyncio.create_task(self.client.connect(reconnect=True), name=f"discord-{self.persona}")
            self._task.add_done_callback(self._gateway_ended)
            ready = asyncio.create_task(self._ready.wait())
            done, _ = await asyncio.wait({ready, self._task}, timeout=self.ready_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if ready not in done:
                ready.cancel()
                if self._task in done:
                    self._task.result()  # raises what stopped the gateway (bad token, missing intents)
                    raise RuntimeError("the Discord gateway closed before the bot was ready")
                raise TimeoutError(f"Discord did not get ready within {self.ready_timeout:.0f}s")
        except BaseException:
            await self.disconnect()
            raise

    async def disconnect(self) -> None:
        """Stop taking messages, let the replies being written go out (up to
        ``drain_timeout`` seconds), then close the gateway and the HTTP session."""
        _live.discard(self)
        self._closing = True
        pending = {t for t in self._inflight if t is not asyncio.current_task()}
        if pending:
            log.info("discord: waiting for %d replies in progress", len(pending))
            _, late = await asyncio.wait(pending, timeout=self.drain_timeout)
            for task in late:
                task.cancel()
        if self.client is not None:
            await self.client.close()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 10)
            except (Exception, asyncio.CancelledError) as exc:
                if not isinstance(exc, asyncio.CancelledError):
                    log.debug("discord gateway task ended with %r", exc)
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _gateway_ended(self, task: asyncio.Task) -> None:
        if self._closing or task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("discord: the gateway connection for persona %s ended for good: %r", self.persona, exc)
        else:
            log.error("discord: the gateway connection for persona %s closed", self.persona)

    async def _setup(self) -> None:
        """Runs after login, before the gateway connects: register the slash commands."""
        assert self.client is not None
        tree = self.client.tree
        for name, (description, option, option_desc) in SLASH_COMMANDS.items():
            tree.add_command(self._make_command(name, description, option, option_desc))
        if not self.sync_commands:
            return
        try:
            if self.command_guild_ids:
                self.synced_commands = []
                for gid in self.command_guild_ids:
                    guild = discord.Object(id=gid)
                    tree.copy_global_to(guild=guild)
                    self.synced_commands += await tree.sync(guild=guild)
            else:
                self.synced_commands = await tree.sync()
            log.info("discord: %d slash commands registered", len(self.synced_commands))
        except discord.HTTPException as exc:
            log.error("discord: could not register slash commands: %s", exc)

    def _make_command(self, name: str, description: str, option: str | None, option_desc: str) -> app_commands.Command:
        adapter = self
        if option is None:
            async def callback(interaction: discord.Interaction) -> None:
                await adapter._on_slash(interaction, name, "")
            return app_commands.Command(name=name, description=description, callback=callback)

        async def callback_arg(interaction: discord.Interaction, text: Optional[str] = None) -> None:  # noqa: UP045
            await adapter._on_slash(interaction, name, text or "")
        cmd = app_commands.Command(name=name, description=description, callback=callback_arg)
        if option != "text":
            cmd = app_commands.rename(text=option)(cmd)
        return app_commands.describe(text=option_desc)(cmd)

    # -- incoming ----------------------------------------------------------------------------

    @property
    def bot_id(self) -> int | None:
        user = self.client.user if self.client is not None else None
        return user.id if user is not None else None

    def _addressed_to_me(self, message: discord.Message) -> bool:
        me = self.bot_id
        if me is None:
            return False
        if any(u.id == me for u in message.mentions):
            return True
        ref = message.reference
        if ref is not None:
            resolved = ref.resolved
            if isinstance(resolved, discord.Message):
                return resolved.author.id == me
            return ref.message_id is not None and ref.message_id in self._sent_ids
        return False

    def _quote(self, message: discord.Message) -> str | None:
        """The character's own message (a post, say) that this one replies to, in a server."""
        ref = message.reference
        resolved = ref.resolved if ref is not None else None
        if (message.guild is None or not isinstance(resolved, discord.Message) or self.bot_id is None
                or resolved.author.id != self.bot_id):
            return None
        return (resolved.content or "")[:4000] or None

    def _clean_text(self, message: discord.Message) -> str:
        me = self.bot_id
        text = re.sub(rf"<@!?{me}>", "", message.content) if me else message.content
        names = {u.id: u.display_name for u in message.mentions}
        text = re.sub(r"<@!?(\d+)>", lambda m: "@" + names.get(int(m.group(1)), "someone"), text)
        text = re.sub(r"[ \t]{2,}", " ", text).strip()
        text = re.sub(r"^[,:;]\s*", "", text)
        return text

    def _track(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _on_message(self, message: discord.Message) -> None:
        if self._handler is None or self._closing or message.author.bot or message.author.id == self.bot_id:
            return
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return
        private = message.guild is None
        if not private and not self._addressed_to_me(message):
            return
        self._track()
        text = self._clean_text(message)
        attachments = tuple(_attachment(a, message) for a in message.attachments)
        if not text:
            if attachments or message.stickers:
                # a sticker, a file, a voice message or a bare picture: nothing to read
                if private:
                    await self._say_unsupported(message)
                return
            me = self.client.user if self.client else None
            text = f"@{me.display_name}" if me else "hi"  # a bare mention: they are calling the character
        channel = message.channel
        msg = IncomingMessage(
            platform=self.platform,
            chat_id=str(channel.id),
            user_id=str(message.author.id),
            user_name=message.author.display_name,
            text=text,
            message_id=str(message.id),
            persona=self.persona,
            chat_kind="private" if private else "group",
            chat_title=None if private else f"{message.guild.name} #{getattr(channel, 'name', '')}",
            reply_to_message_id=str(message.reference.message_id) if message.reference and message.reference.message_id else None,
            quote=self._quote(message),
            attachments=attachments,
            sent_at=message.created_at,
            raw=message,
        )
        if text.startswith("/") and any(a.kind == "image" for a in attachments):
            await self._dispatch_with_image(message, msg)
        else:
            await self._safe_dispatch(msg)

    async def _say_unsupported(self, message: discord.Message) -> None:
        try:
            await self.send_text(str(message.channel.id), UNSUPPORTED_TEXT)
        except discord.HTTPException as exc:
            log.warning("discord: could not answer the unreadable message %s: %s", message.id, exc)

    async def _dispatch_with_image(self, message: discord.Message, msg: IncomingMessage) -> None:
        """A command with a picture (``/art`` on a photo): download the first image into a
        temporary folder, hand the message on with its ``path``, delete it afterwards.
        Nothing is fetched for a message the handler would not take (see ``admits``)."""
        if not await self.admits(msg):
            await self._safe_dispatch(msg)
            return
        source = next(a for a in message.attachments if (a.content_type or "").startswith("image/"))
        limit = self.max_download_bytes
        too_big = TOO_BIG.format(mb=max(1, limit // 2**20))
        try:
            if source.size > limit:
                await self.send_text(msg.chat_id, too_big, reply_to=msg.message_id)
                return
            if self.download_dir is not None:
                self.download_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix="vchar-discord-", dir=self.download_dir) as tmp:
                suffix = Path(source.filename).suffix.lower()
                if not re.fullmatch(r"\.[a-z0-9]{1,5}", suffix):
                    suffix = ".img"
                path = Path(tmp) / f"photo-{message.id}{suffix}"
                try:
                    await source.save(path)
                except (discord.HTTPException, OSError) as exc:
                    log.warning("discord: could not download %s of message %s: %s", source.url, message.id, exc)
                    await self.send_text(msg.chat_id, DOWNLOAD_FAILED, reply_to=msg.message_id)
                    return
                size = path.stat().st_size
                if size > limit:
                    await self.send_text(msg.chat_id, too_big, reply_to=msg.message_id)
                    return
                attachments = tuple(
                    dataclasses.replace(a, path=str(path), size=size) if a.url == source.url else a
                    for a in msg.attachments
                )
                await self._safe_dispatch(dataclasses.replace(msg, attachments=attachments))
        except Exception:
            log.exception("discord: answering the picture in message %s failed", message.id)

    async def _safe_dispatch(self, msg: IncomingMessage) -> None:
        try:
            await self.dispatch(msg)
        except Exception:
            log.exception("discord: answering message %s in %s failed", msg.message_id, msg.chat_id)
            try:
                await self.send_text(msg.chat_id, APOLOGY, reply_to=msg.message_id)
            except Exception as exc:
                log.error("discord: could not even apologise in %s: %s", msg.chat_id, exc)

    async def _on_slash(self, interaction: discord.Interaction, name: str, arg: str) -> None:
        self._track()
        try:
            await interaction.response.defer(thinking=True)
        except discord.HTTPException as exc:
            log.warning("discord: could not defer /%s: %s", name, exc)
            return
        user = interaction.user
        msg = IncomingMessage(
            platform=self.platform,
            chat_id=str(interaction.channel_id),
            user_id=str(user.id),
            user_name=user.display_name,
            text=f"/{name} {arg}".strip(),
            message_id=f"interaction-{interaction.id}",
            persona=self.persona,
            chat_kind="private" if interaction.guild_id is None else "group",
            sent_at=interaction.created_at,
            raw=interaction,
        )
        try:
            assert self._handler is not None
            reply = await self._handler(msg)
            if reply is None or not await self.claim(reply):
                await interaction.delete_original_response()
                return
            first: str | None = None
            for media in reply.media:
                sent = await self._followup_media(interaction, media)
                first = first or sent
            for chunk in split_message(reply.text) if reply.text else []:
                sent_msg = await interaction.followup.send(chunk, wait=True)
                first = first or str(sent_msg.id)
            await self.delivered(reply, first)
        except Exception:
            log.exception("discord: slash command /%s failed", name)
            try:
                await interaction.followup.send(APOLOGY)
            except Exception as exc:
                log.error("discord: could not apologise for /%s: %s", name, exc)

    async def _followup_media(self, interaction: discord.Interaction, media: MediaFile) -> str | None:
        try:
            sent = await interaction.followup.send(media.caption[:MESSAGE_LIMIT] if media.caption else "",
                                                   file=discord.File(media.path, filename=Path(media.path).name), wait=True)
            return str(sent.id)
        except (OSError, discord.HTTPException) as exc:
            log.warning("discord: could not send %s %s: %s", media.kind, media.path, exc)
            await interaction.followup.send(f"[{media.kind}: {media.caption or Path(media.path).name}]")
            return None

    # -- outgoing ----------------------------------------------------------------------------

    def _channel(self, chat_id: str) -> discord.abc.Messageable:
        if self.client is None:
            raise RuntimeError("DiscordAdapter is not started")
        cid = int(chat_id)
        return self.client.get_channel(cid) or self.client.get_partial_messageable(cid)

    def _is_guild_channel(self, chat_id: str) -> bool:
        ch = self.client.get_channel(int(chat_id)) if self.client else None
        return isinstance(ch, (discord.abc.GuildChannel, discord.Thread))

    def _reference(self, chat_id: str, reply_to: str | None) -> discord.MessageReference | None:
        if not reply_to or not reply_to.isdigit() or not self._is_guild_channel(chat_id):
            return None  # in a DM the answer follows the question anyway
        return discord.MessageReference(message_id=int(reply_to), channel_id=int(chat_id), fail_if_not_exists=False)

    def working(self, chat_id: str):
        return _SafeTyping(self._channel(chat_id))

    async def send_text(self, chat_id: str, text: str, reply_to: str | None = None) -> None:
        channel = self._channel(chat_id)
        ref = self._reference(chat_id, reply_to)
        for i, chunk in enumerate(split_message(text)):
            sent = await channel.send(chunk, reference=ref if i == 0 else None)  # type: ignore[arg-type]
            self._sent_ids.append(sent.id)

    # The outbox sends a reply part by part, each with a nonce made from the reply's id and
    # the part's place, and discord.py sends ``enforce_nonce`` with it: a part resent after
    # a crash or a lost answer is created once.

    def parts(self, reply: Reply) -> list[Part]:
        return media_then_text(reply, split_message(reply.text) if reply.text else [])

    async def send_part(self, reply: Reply, part: Part, nonce: str) -> str | None:
        if part.media is not None:
            return await self.send_media(reply, part.media, nonce=nonce)
        if part.text:
            ref = self._reference(reply.chat_id, reply.reply_to_message_id) if part.quote else None
            sent = await self._channel(reply.chat_id).send(part.text, reference=ref, nonce=nonce)  # type: ignore[arg-type]
            self._sent_ids.append(sent.id)
            return str(sent.id)
        return None

    async def announce(self, chat_id: str, message_id: str) -> bool:
        """A post in an announcement channel is crossposted to the servers that follow it.
        False where the channel is not one (nothing to do)."""
        ch = self.client.get_channel(int(chat_id)) if self.client else None
        if not isinstance(ch, discord.TextChannel) or not ch.is_news():
            return False
        await ch.get_partial_message(int(message_id)).publish()
        return True

    def outcome_unknown(self, exc: BaseException) -> bool:
        """Never for a post here: every part carries a nonce with ``enforce_nonce``, so a
        part sent again after a timeout is created once (Discord answers with the first)."""
        return False

    async def edit_text(self, chat_id: str, message_id: str, text: str) -> None:
        try:
            await self._channel(chat_id).get_partial_message(int(message_id)).edit(content=text[:MESSAGE_LIMIT])
        except (discord.HTTPException, ValueError) as exc:
            log.debug("discord: could not edit %s in %s: %s", message_id, chat_id, exc)

    async def show_activity(self, chat_id: str, kind: str) -> None:
        try:
            await self._channel(chat_id).typing()  # type: ignore[union-attr]
        except discord.HTTPException as exc:
            log.debug("discord: typing in %s failed: %s", chat_id, exc)

    def retry_delay(self, exc: BaseException) -> float | None:
        """Discord's 5xx (after discord.py's own retries), dropped connections and
        timeouts are transient; a 4xx is the platform's refusal."""
        if isinstance(exc, discord.DiscordServerError):
            return 0.0
        if isinstance(exc, discord.HTTPException):
            return None
        if isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)):
            return 0.0
        return super().retry_delay(exc)

    async def send_media(self, reply: Reply, media: MediaFile, nonce: str | None = None) -> str | None:
        try:
            if media.kind == "voice":
                try:
                    message = await self.send_voice_message(reply.chat_id, media.path, nonce=nonce)
                    return str(message["id"])
                except Exception as exc:
                    if self.retry_delay(exc) is not None:
                        raise
                    log.warning("discord: voice message failed (%s); sending %s as a file", exc, media.path)
            return await self._send_file(reply.chat_id, media, reply.reply_to_message_id, nonce)
        except (OSError, discord.HTTPException) as exc:
            if self.retry_delay(exc) is not None:
                raise  # transient: the outbox tries again rather than falling back to text
            log.warning("discord: could not send %s %s: %s", media.kind, media.path, exc)
            await super().send_media(reply, media)
            return None

    async def _send_file(self, chat_id: str, media: MediaFile, reply_to: str | None, nonce: str | None = None) -> str:
        channel = self._channel(chat_id)
        caption = media.caption[:MESSAGE_LIMIT] if media.caption else None
        file = discord.File(media.path, filename=Path(media.path).name)
        sent = await channel.send(caption, file=file, reference=self._reference(chat_id, reply_to),  # type: ignore[arg-type]
                                  nonce=nonce)
        self._sent_ids.append(sent.id)
        return str(sent.id)

    async def send_voice_message(self, chat_id: str, path: str | os.PathLike[str], nonce: str | None = None) -> dict[str, Any]:
        """A real voice message: an upload slot (POST /channels/{id}/attachments), the
        OGG/Opus bytes PUT there, then a message with flag 8192 whose attachment carries
        ``duration_secs`` and ``waveform``. Discord shows it as a playable voice note."""
        if self.client is None or self._session is None:
            raise RuntimeError("DiscordAdapter is not started")
        data = Path(path).read_bytes()
        duration, waveform = await asyncio.to_thread(voice_message_metadata, path)
        http = self.client.http
        slots = await http.request(
            Route("POST", "/channels/{channel_id}/attachments", channel_id=int(chat_id)),
            json={"files": [{"id": "0", "filename": VOICE_FILENAME, "file_size": len(data)}]},
        )
        slot = slots["attachments"][0]
        async with self._session.put(slot["upload_url"], data=data, headers={"Content-Type": "audio/ogg"}) as resp:
            if resp.status >= 300:
                raise RuntimeError(f"voice upload failed with HTTP {resp.status}")
        message = await http.request(
            Route("POST", "/channels/{channel_id}/messages", channel_id=int(chat_id)),
            json={
                **({"nonce": nonce, "enforce_nonce": True} if nonce else {}),
                "flags": VOICE_MESSAGE_FLAG,
                "attachments": [{
                    "id": "0", "filename": VOICE_FILENAME, "uploaded_filename": slot["upload_filename"],
                    "duration_secs": duration, "waveform": waveform,
                }],
            },
        )
        self._sent_ids.append(int(message["id"]))
        return message


def _attachment(a: discord.Attachment, message: discord.Message) -> Attachment:
    ctype = (a.content_type or "").split(";")[0]
    if message.flags.voice:
        kind = "voice"
    elif ctype.startswith(("image/", "audio/", "video/")):
        kind = ctype.split("/")[0]
    else:
        kind = "document"
    return Attachment(kind=kind, url=a.url, mime=ctype or None, name=a.filename, size=a.size)
