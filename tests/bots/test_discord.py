"""The Discord adapter end to end: a real discord.py Client against a fake Discord
(REST + gateway, tests/fakes/discord_server.py), with the real persona manager on both
databases where a conversation is stored."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
from fractions import Fraction

import discord
import numpy as np
import pytest
import pytest_asyncio
from PIL import Image
from sqlalchemy import select

from bots.discord_adapter import APOLOGY, SLASH_COMMANDS, DiscordAdapter, split_message
from db.models import Message
from generators.text.lite import LiteTextGenerator
from persona.commands import HELP_TEXT, MEDIA_COMMANDS
from persona.manager import ManagerConfig, PersonaManager
from persona.registry import SAMPLES, PersonaRegistry
from persona.types import IncomingMessage, MediaFile, Reply
from tests.fakes.discord_server import FakeDiscordServer
from tests.fakes.text import ScriptedText

TALKER = """\
id: talker
name: Talker
description: "{{char}} never stops talking."
greetings: ["Oh hello, where do I begin"]
"""


@pytest_asyncio.fixture
async def fake():
    async with FakeDiscordServer(bot_name="Mira") as srv:
        yield srv


@pytest.fixture
def registry(tmp_path):
    folder = tmp_path / "personas"
    folder.mkdir()
    (folder / "talker.yaml").write_text(TALKER)
    return PersonaRegistry([SAMPLES, folder])


@pytest_asyncio.fixture
async def manager(store, registry, embedder):
    m = PersonaManager(store, registry, LiteTextGenerator(embedder), embedder, ManagerConfig())
    await m.start()
    yield m
    await m.close()


class Bots:
    """Starts adapters against the fake and stops them all at the end of a test."""

    def __init__(self, fake: FakeDiscordServer):
        self.fake = fake
        self.adapters: list[DiscordAdapter] = []

    async def start(self, handler, persona: str = "mira", admit=None, outbox=None, **kw) -> DiscordAdapter:
        kw.setdefault("gateway_url", self.fake.gateway_url)
        a = DiscordAdapter(self.fake.token, persona, api_url=self.fake.api_url, guild_ready_timeout=0.05, **kw)
        await a.start(handler, admit=admit, outbox=outbox)
        self.adapters.append(a)
        return a


@pytest_asyncio.fixture
async def bots(fake):
    b = Bots(fake)
    yield b
    for a in b.adapters:
        await a.stop()


async def quiet(fake: FakeDiscordServer, seconds: float = 0.3) -> None:
    """Give the bot time to (wrongly) answer."""
    await asyncio.sleep(seconds)


# -- conversations through the real manager -----------------------------------------------------


async def test_dm_is_answered_with_typing_and_stored(fake, bots, manager, store):
    # No gateway_url: the adapter asks GET /gateway for it, as a proxy setup would.
    await bots.start(manager.handle, gateway_url=None)
    assert fake.identifies and fake.identifies[0]["intents"] & (1 << 15)  # MESSAGE_CONTENT
    fake.push_message(None, "Zoe", "What's your favourite food?", guild=False)
    [reply] = await fake.wait_for_sent(1)
    dm = fake.dm_channel_id("Zoe")
    assert reply.channel_id == dm
    assert "pork buns" in reply.content  # the card's own example dialogue, through the lite backend
    assert reply.message_reference is None  # in a DM the answer simply follows
    assert set(fake.typing) == {dm}  # once, or again every 5 s on a slow machine
    calls = [(r.method, r.path.rsplit("/", 1)[-1]) for r in fake.requests if r.path.startswith("/channels/")]
    assert calls[0] == ("POST", "typing") and calls[-1] == ("POST", "messages")  # typing shown while it worked
    await manager.drain()
    assert await store.count_messages() == 2
    assert await store.find_user("discord", fake.users["Zoe"]["id"]) is not None


async def test_guild_messages_need_a_mention_or_a_reply(fake, bots, manager):
    await bots.start(manager.handle)
    fake.push_message(None, "Zoe", "anyone here like dumplings?")
    fake.push_message(None, {"id": fake.new_id(), "username": "otherbot", "global_name": "Other", "discriminator": "0",
                             "avatar": None, "bot": True}, "hey Mira", mentions_bot=True)
    await quiet(fake)
    assert fake.sent == [] and fake.typing == []

    asked = fake.push_message(None, "Zoe", "What's your favourite food?", mentions_bot=True)
    [first] = await fake.wait_for_sent(1)
    assert first.channel_id == fake.channel_id
    assert "pork buns" in first.content
    assert first.message_reference["message_id"] == asked  # a threaded reply in a busy channel
    assert set(fake.typing) == {fake.channel_id}
    async with manager.store.engine.connect() as conn:  # the stored text has no raw mention in it
        texts = (await conn.execute(select(Message.text).where(Message.role == "user"))).scalars().all()
    assert texts == ["What's your favourite food?"]

    # A reply to the bot's message, without a mention, is for the bot too.
    fake.push_message(None, "Zoe", "Tell me a joke.", reply_to=first.id)
    sent = await fake.wait_for_sent(2)
    assert "dumpling" in sent[1].content.lower()
    # A reply to someone else's message is not.
    other = fake.push_message(None, "Bo", "I like noodles")
    fake.push_message(None, "Zoe", "same", reply_to=other)
    await quiet(fake)
    assert len(fake.sent) == 2


async def test_slash_commands_are_synced_and_answered(fake, bots, manager):
    await bots.start(manager.handle)
    [(scope, commands)] = fake.command_puts
    assert scope == "global"
    assert {c["name"] for c in commands} == set(SLASH_COMMANDS) == {
        "start", "help", "persona", "selfie", "voice", "song", "video", "memory", "forget", "cancel"}
    selfie = next(c for c in commands if c["name"] == "selfie")
    assert [(o["name"], o["type"], o.get("required", False)) for o in selfie["options"]] == [("scene", 3, False)]

    inter = fake.push_interaction("help", user="Zoe")
    [answer] = await fake.wait_for_sent(1)
    assert fake.interaction_callbacks[0]["type"] == 5  # deferred: "Mira is thinking..."
    assert answer.via == "followup" and answer.interaction_token == inter.token
    assert answer.content == HELP_TEXT

    fake.push_interaction("selfie", {"scene": "at the night market"}, guild=False)
    sent = await fake.wait_for_sent(2)
    assert sent[1].content == MEDIA_COMMANDS["selfie"]
    assert sent[1].channel_id == fake.dm_channel_id("Zoe")

    fake.push_interaction("persona")
    sent = await fake.wait_for_sent(3)
    assert sent[2].content.startswith("Mira Vale\n")


async def test_long_reply_is_split_under_2000_characters(fake, bots, store, registry, embedder):
    sentence = "I have so much to tell you about the harbour lights tonight, honestly. "
    long = "".join(f"{i}: {sentence}" for i in range(70)).strip()
    assert len(long) > 4000
    text = ScriptedText([long])
    m = PersonaManager(store, registry, text, embedder, ManagerConfig())
    await m.start()
    try:
        await bots.start(m.handle, persona="talker")
        fake.push_message(None, "Zoe", "how was your evening?", guild=False)
        sent = await fake.wait_for_sent(3)
        await quiet(fake, 0.2)
        assert len(fake.sent) == 3
        assert all(len(s.content) <= 2000 for s in sent)
        assert all(s.content.endswith(".") for s in sent)  # cut at sentence ends
        assert " ".join(s.content for s in sent) == long
    finally:
        await m.close()


async def test_rate_limited_message_is_retried_and_delivered_once(fake, bots, manager, caplog):
    await bots.start(manager.handle)
    fake.fail_next(r"^/channels/\d+/messages$", 1, retry_after=0.3, method="POST")
    fake.push_message(None, "Zoe", "Tell me a joke.", guild=False)
    [reply] = await fake.wait_for_sent(1)
    await quiet(fake)
    assert len(fake.sent) == 1
    posts = fake.requests_to(r"^/channels/\d+/messages$", "POST")
    assert [p.status for p in posts] == [429, 200]
    assert posts[1].at - posts[0].at >= 0.3


async def test_dropped_gateway_resumes_and_answers_once(fake, bots, manager):
    await bots.start(manager.handle)
    fake.push_message(None, "Zoe", "hello there", guild=False)
    await fake.wait_for_sent(1)

    await fake.drop_gateway("abort")  # the TCP connection just dies (close code 1006)
    during = fake.push_message(None, "Zoe", "What's your favourite food?", guild=False)
    assert not fake.connected
    await fake.wait_for(lambda: len(fake.resumes) == 1, 20, "a RESUME")
    sent = await fake.wait_for_sent(2, timeout=20)
    assert "pork buns" in sent[1].content
    assert len(fake.identifies) == 1  # resumed, not a new session

    fake.redeliver(during)  # Discord may deliver an event twice: answered once all the same
    await fake.drop_gateway("reconnect")  # op 7: Discord asks for a reconnect
    after = fake.push_message(None, "Zoe", "Tell me a joke.", guild=False)
    await fake.wait_for(lambda: len(fake.resumes) == 2, 20, "a second RESUME")
    sent = await fake.wait_for_sent(3, timeout=20)
    await quiet(fake)
    assert len(fake.sent) == 3
    assert "dumpling" in sent[2].content.lower()
    assert sent[2].content != sent[1].content
    assert len(fake.identifies) == 1
    assert after != during


# -- adapter behaviour without a database -------------------------------------------------------


async def test_handler_error_gets_an_apology_not_a_traceback(fake, bots, caplog):
    async def broken(msg: IncomingMessage) -> Reply:
        raise RuntimeError("database exploded")

    await bots.start(broken)
    with caplog.at_level(logging.ERROR, logger="bots.discord_adapter"):
        fake.push_message(None, "Zoe", "hi", guild=False)
        [reply] = await fake.wait_for_sent(1)
    assert reply.content == APOLOGY
    assert "database exploded" in caplog.text  # logged for the operator
    assert "Traceback" not in reply.content and "exploded" not in reply.content


async def test_incoming_message_fields(fake, bots):
    seen: list[IncomingMessage] = []

    async def record(msg: IncomingMessage) -> None:
        seen.append(msg)
        return None

    await bots.start(record)
    other = fake.user("Bo")
    mid = fake.push_message(None, "Zoe", f"<@{other['id']}> look,   the moon!", mentions_bot=True)
    dm = fake.push_message(None, "Zoe", "psst", guild=False)
    await fake.wait_for(lambda: len(seen) == 2)
    g, d = seen
    assert (g.platform, g.chat_id, g.message_id, g.chat_kind, g.persona) == ("discord", fake.channel_id, mid, "group", "mira")
    assert g.user_id == fake.users["Zoe"]["id"] and g.user_name == "Zoe"
    assert g.text == "@Bo look, the moon!"
    assert g.chat_title == "Lantern Club #general"
    assert (d.chat_id, d.message_id, d.chat_kind, d.text) == (fake.dm_channel_id("Zoe"), dm, "private", "psst")
    assert fake.sent == []


async def test_invalid_session_identifies_again_and_guild_commands(fake, bots):
    async def echo(msg: IncomingMessage) -> Reply:
        return Reply(text=f"echo: {msg.text}", chat_id=msg.chat_id, persona="mira", reply_to_message_id=msg.message_id)

    await bots.start(echo, command_guild_ids=[int(fake.guild_id)])
    [(scope, commands)] = fake.command_puts
    assert scope == fake.guild_id and len(commands) == len(SLASH_COMMANDS)
    await fake.drop_gateway("invalid")  # op 9, not resumable: a fresh IDENTIFY
    await fake.wait_for(lambda: len(fake.identifies) == 2 and fake.connected, 20, "a new IDENTIFY")
    fake.push_message(None, "Zoe", "still there?", guild=False)
    [m] = await fake.wait_for_sent(1)
    assert m.content == "echo: still there?" and fake.resumes == []


async def test_stop_delivers_the_reply_in_progress(fake, bots):
    async def slow(msg: IncomingMessage) -> Reply:
        await asyncio.sleep(0.3)
        return Reply(text="worth the wait", chat_id=msg.chat_id, persona="mira", reply_to_message_id=msg.message_id)

    bot = await bots.start(slow)
    fake.push_message(None, "Zoe", "hello?", guild=False)
    await fake.wait_for(lambda: fake.typing, what="typing")
    await bot.stop()
    assert [m.content for m in fake.sent] == ["worth the wait"]
    fake.push_message(None, "Zoe", "and now?", guild=False)
    await quiet(fake, 0.2)
    assert len(fake.sent) == 1


async def test_bad_token_fails_to_start(fake):
    bot = DiscordAdapter("not-the-token", "mira", api_url=fake.api_url, gateway_url=fake.gateway_url)
    with pytest.raises(discord.LoginFailure):
        await bot.start(lambda msg: None)
    assert fake.identifies == []


def test_split_message_keeps_every_word():
    words = " ".join(f"w{i}" for i in range(1500))
    parts = split_message(words)
    assert all(len(p) <= 2000 for p in parts) and " ".join(parts) == words
    assert split_message("x" * 4500) == ["x" * 2000, "x" * 2000, "x" * 500]
    assert split_message("short") == ["short"]


# -- media ---------------------------------------------------------------------------------------


try:
    import av
except ImportError:  # pragma: no cover - PyAV is in the test extra
    av = None

needs_av = pytest.mark.skipif(av is None, reason="PyAV is needed to make and check OGG/Opus and MP4 files")


def make_png(path, size=(64, 48)):
    img = Image.new("RGB", size, (200, 80, 40))
    for x in range(size[0]):
        img.putpixel((x, x % size[1]), (255, 255, 255))
    img.save(path, "PNG")
    return path


def make_ogg_opus(path, seconds=1.5, rate=48000):
    t = np.arange(int(rate * seconds)) / rate
    wave = (0.6 * np.sin(2 * np.pi * 440 * t) * np.minimum(1.0, t / seconds * 2)).astype(np.float32)
    with av.open(str(path), "w", format="ogg") as c:
        s = c.add_stream("libopus", rate=rate, layout="mono")
        for i in range(0, wave.size, 960):
            frame = av.AudioFrame.from_ndarray(wave[None, i : i + 960], format="flt", layout="mono")
            frame.sample_rate = rate
            frame.pts = i
            frame.time_base = Fraction(1, rate)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def make_mp4(path, frames=12, fps=12, rate=48000):
    """A 64x64 H.264 clip with an AAC tone, written by the project's own MP4 writer."""
    from generators.video.mp4 import write_mp4

    imgs = [np.full((64, 64, 3), (i * 20) % 255, dtype=np.uint8) for i in range(frames)]
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(rate) / rate)).astype(np.float32)
    return write_mp4(path, imgs, fps, audio=tone, sample_rate=rate)

def media_handler(*media: MediaFile, text: str = ""):
    async def handle(msg: IncomingMessage) -> Reply:
        return Reply(text=text, chat_id=msg.chat_id, persona="mira", reply_to_message_id=msg.message_id, media=media)

    return handle


async def test_image_goes_as_a_multipart_attachment(fake, bots, tmp_path):
    png = make_png(tmp_path / "selfie.png")
    await bots.start(media_handler(MediaFile("image", str(png), "image/png", caption="me at the market"), text="ta-da"))
    fake.push_message(None, "Zoe", "/selfie", guild=False)
    img_msg, text_msg = await fake.wait_for_sent(2)
    assert img_msg.multipart and img_msg.content == "me at the market"
    [f] = img_msg.files
    assert f.filename == "selfie.png"
    with Image.open(io.BytesIO(f.data)) as im:
        assert im.format == "PNG" and im.size == (64, 48)
    assert img_msg.payload["attachments"][0]["filename"] == "selfie.png"
    assert text_msg.content == "ta-da" and not text_msg.files


@needs_av
async def test_voice_note_goes_as_a_real_voice_message(fake, bots, tmp_path):
    ogg = make_ogg_opus(tmp_path / "note.ogg", seconds=1.5)
    await bots.start(media_handler(MediaFile("voice", str(ogg), "audio/ogg", duration=1.5)))
    fake.push_message(None, "Zoe", "/voice hi", guild=False)
    [vm] = await fake.wait_for_sent(1)
    assert vm.is_voice_message and vm.flags == 8192 and vm.content == "" and not vm.multipart
    assert fake.requests_to(r"^/channels/\d+/attachments$", "POST")
    [att] = vm.attachments
    assert att["filename"] == "voice-message.ogg"
    assert abs(att["duration_secs"] - 1.5) < 0.1
    wave = base64.b64decode(att["waveform"])
    assert 1 <= len(wave) <= 256 and max(wave) == 255 and wave[0] < wave[-1]  # it fades in
    [f] = vm.files
    assert f.data == ogg.read_bytes()
    with av.open(io.BytesIO(f.data)) as c:
        assert c.streams.audio[0].codec_context.name in ("opus", "libopus")


@needs_av
async def test_voice_message_falls_back_to_an_attachment(fake, bots, tmp_path):
    ogg = make_ogg_opus(tmp_path / "note.ogg", seconds=0.5)
    fake.fail_next(r"/attachments$", 1, status=403, method="POST")
    await bots.start(media_handler(MediaFile("voice", str(ogg), "audio/ogg")))
    fake.push_message(None, "Zoe", "/voice hi", guild=False)
    [m] = await fake.wait_for_sent(1)
    assert not m.is_voice_message and m.multipart
    assert m.files[0].filename == "note.ogg" and m.files[0].data == ogg.read_bytes()


@needs_av
async def test_video_goes_as_an_mp4_attachment_with_its_streams(fake, bots, tmp_path):
    mp4 = make_mp4(tmp_path / "clip.mp4")
    await bots.start(media_handler(MediaFile("video", str(mp4), "video/mp4")))
    fake.push_message(None, "Zoe", "/video", mentions_bot=True)
    [m] = await fake.wait_for_sent(1)
    assert m.multipart and m.channel_id == fake.channel_id
    [f] = m.files
    assert f.filename == "clip.mp4" and f.data == mp4.read_bytes()
    with av.open(io.BytesIO(f.data)) as c:
        kinds = {s.type: s.codec_context.name for s in c.streams}
        assert kinds == {"video": "h264", "audio": "aac"}
        frames = sum(1 for _ in c.decode(video=0))
    assert frames == 12


# -- pictures for /art and /portrait -----------------------------------------------------------


def jpeg_photo(tmp_path) -> bytes:
    from generators.image.testing import portrait_on_canvas

    src = portrait_on_canvas(tmp_path / "friend.png")
    buf = io.BytesIO()
    with Image.open(src) as img:
        img.convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


async def test_art_picture_is_downloaded_and_answered_with_a_redrawn_one(fake, bots, store, registry, embedder, tmp_path):
    from pathlib import Path

    from generators.image import build_image_backend

    data = jpeg_photo(tmp_path)
    image = build_image_backend("lite", out_dir=tmp_path / "images")
    m = PersonaManager(store, registry, LiteTextGenerator(embedder), embedder, ManagerConfig(), image=image)
    await m.start()
    seen: list[tuple[IncomingMessage, bytes]] = []

    async def handle(msg: IncomingMessage):
        seen.append((msg, Path(msg.attachments[0].path).read_bytes() if msg.attachments and msg.attachments[0].path else b""))
        return await m.handle(msg)

    try:
        await bots.start(handle, download_dir=tmp_path / "incoming")
        att = fake.person_attachment("me.jpg", data, "image/jpeg", width=600, height=400)
        fake.push_message(None, "Zoe", "/art watercolor", guild=False, attachments=[att])
        [answer] = await fake.wait_for_sent(1)
    finally:
        await m.close()
    [(msg, got)] = seen
    assert msg.text == "/art watercolor" and got == data
    a = msg.attachments[0]
    assert (a.kind, a.mime, a.size, a.name) == ("image", "image/jpeg", len(data), "me.jpg")
    await fake.wait_for(lambda: not Path(a.path).exists(), timeout=5, what="the download to be deleted")  # once answered
    assert fake.cdn_downloads == [f"attachments/{att['id']}/me.jpg"]
    [f] = answer.files
    assert answer.content  # the caption
    with Image.open(io.BytesIO(f.data)) as im:
        assert im.format == "PNG"


async def test_pictures_without_a_command_are_not_downloaded_and_huge_ones_are_refused(fake, bots, tmp_path):
    from bots.discord_adapter import TOO_BIG

    data = jpeg_photo(tmp_path)
    got: list[IncomingMessage] = []

    async def handler(msg: IncomingMessage) -> Reply:
        got.append(msg)
        return Reply(text=f"re: {msg.text}", chat_id=msg.chat_id, persona="mira", reply_to_message_id=msg.message_id)

    await bots.start(handler, max_download_bytes=5 * 1024 * 1024)
    plain = fake.person_attachment("cat.jpg", data)
    fake.push_message(None, "Zoe", "look at my cat", guild=False, attachments=[plain])
    huge = fake.person_attachment("huge.jpg", data, size=50 * 1024 * 1024)
    fake.push_message(None, "Zoe", "/art", guild=False, attachments=[huge])
    sent = await fake.wait_for_sent(2)  # messages are answered concurrently: in either order
    assert sorted(s.content for s in sent) == sorted(["re: look at my cat", TOO_BIG.format(mb=5)])
    assert [m.text for m in got] == ["look at my cat"] and got[0].attachments[0].path is None
    assert fake.cdn_downloads == []


async def test_stickers_files_and_voice_messages_get_the_text_only_note_in_dms_and_silence_in_guilds(fake, bots, tmp_path):
    from bots.adapter import UNSUPPORTED_TEXT

    got: list[IncomingMessage] = []

    async def handler(msg: IncomingMessage) -> Reply:
        got.append(msg)
        return Reply(text=f"re: {msg.text}", chat_id=msg.chat_id, persona="mira", reply_to_message_id=msg.message_id)

    await bots.start(handler)
    pdf = fake.person_attachment("cv.pdf", b"%PDF-1.4 tiny", "application/pdf")
    photo = fake.person_attachment("cat.jpg", jpeg_photo(tmp_path))
    voice = fake.person_attachment("voice-message.ogg", b"OggS", "audio/ogg")
    fake.push_message(None, "Zoe", "", guild=False, stickers=["Wave"])
    fake.push_message(None, "Zoe", "", guild=False, attachments=[pdf])
    fake.push_message(None, "Zoe", "", guild=False, attachments=[photo])
    fake.push_message(None, "Zoe", "", guild=False, attachments=[voice], flags=8192)
    sent = await fake.wait_for_sent(4)
    assert [s.content for s in sent] == [UNSUPPORTED_TEXT] * 4
    fake.push_message(None, "Ala", "", mentions_bot=True, stickers=["Wave"])  # in a guild: silence
    fake.push_message(None, "Ala", "", mentions_bot=True)  # a bare mention is still a call
    [called] = (await fake.wait_for_sent(5))[4:]
    await quiet(fake)
    assert len(fake.sent) == 5 and called.channel_id == fake.channel_id
    assert [m.text for m in got] == ["@Mira"]
    assert fake.cdn_downloads == []


async def test_art_photos_of_limited_or_blocked_people_are_never_downloaded(fake, bots, store, registry, embedder, tmp_path):
    from generators.image import build_image_backend
    from persona.limits import Rate
    from persona.manager import MEDIA_LIMITED

    data = jpeg_photo(tmp_path)
    image = build_image_backend("lite", out_dir=tmp_path / "images")
    boss = fake.user("Boss")["id"]
    config = ManagerConfig(media_rate=Rate(1, 3600), admins={"discord": frozenset({boss})})
    m = PersonaManager(store, registry, LiteTextGenerator(embedder), embedder, config, image=image)
    await m.start()
    try:
        await bots.start(m.handle, admit=m.admits, download_dir=tmp_path / "incoming")
        fake.push_message(None, "Zoe", "/art", guild=False, attachments=[fake.person_attachment("a.jpg", data)])
        [first] = await fake.wait_for_sent(1)
        assert first.files and len(fake.cdn_downloads) == 1
        fake.push_message(None, "Zoe", "/art", guild=False, attachments=[fake.person_attachment("b.jpg", data)])
        [limited] = (await fake.wait_for_sent(2))[1:]
        assert limited.content == MEDIA_LIMITED
        fake.push_message(None, "Boss", f"/block {fake.users['Zoe']['id']}", guild=False)
        await fake.wait_for_sent(3)
        m.media_limiter = type(m.media_limiter)(Rate(10, 3600))  # the limit lifted: only the block is left
        fake.push_message(None, "Zoe", "/art", guild=False, attachments=[fake.person_attachment("c.jpg", data)])
        await quiet(fake, 0.5)
    finally:
        await m.close()
    assert len(fake.sent) == 3  # the blocked person is not answered ...
    assert len(fake.cdn_downloads) == 1  # ... and neither their photo nor the limited one was fetched


async def test_a_send_whose_answer_is_lost_is_created_once_by_its_nonce(fake, bots, store, registry, embedder):
    from sqlalchemy import select

    from persona.outbox import Outbox

    m = PersonaManager(store, registry, LiteTextGenerator(embedder), embedder, ManagerConfig())
    await m.start()
    try:
        await bots.start(m.handle, outbox=Outbox(store))
        # Discord creates the message but the answer is lost (a 502 from the gateway in front):
        # discord.py sends the same request again, with the same nonce.
        fake.fail_next(r"^/channels/\d+/messages$", status=502, method="POST", after=True)
        fake.push_message(None, "Zoe", "What's your favourite food?", guild=False)
        [reply] = await fake.wait_for_sent(1)
        await fake.wait_for(lambda: fake.nonce_repeats == 1, timeout=15, what="the resend")
        await quiet(fake)
    finally:
        await m.close()
    assert len(fake.sent) == 1 and "pork buns" in reply.content  # created once
    assert reply.payload.get("nonce") and reply.payload.get("enforce_nonce") is True
    async with store.read() as conn:
        [row] = (await conn.execute(select(Message).where(Message.role == "assistant"))).all()
    assert row.status == "delivered" and row.platform_message_id == reply.id


async def test_progress_edits_the_acknowledgement_in_place(fake, bots):
    async def ack(msg: IncomingMessage) -> Reply:
        return Reply(text="On it!", chat_id=msg.chat_id, persona="mira")

    adapter = await bots.start(ack)
    fake.push_message(None, "Zoe", "/selfie", guild=False)
    [sent] = await fake.wait_for_sent(1)
    await adapter.edit_text(sent.channel_id, sent.id, "On it!\n(drawing, 40%)")
    await adapter.show_activity(sent.channel_id, "image")
    assert fake.edits == [(sent.id, "On it!\n(drawing, 40%)")]
    assert fake.messages[sent.id]["content"] == "On it!\n(drawing, 40%)" and len(fake.sent) == 1
