"""The Telegram adapter end to end: a real python-telegram-bot Application against a local
fake Bot API server, answering through the real persona manager on both databases."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from fractions import Fraction
from pathlib import Path

import pytest
import pytest_asyncio
import yaml

from bots.telegram import (
    APOLOGY_TEXT, COMMANDS, EDITED_TEXT, MAX_MESSAGE, UNSUPPORTED_TEXT, TelegramAdapter, split_message, utf16_len,
)
from generators.text.lite import LiteTextGenerator
from persona.manager import ManagerConfig, PersonaManager
from persona.outbox import Outbox
from persona.registry import SAMPLES, PersonaRegistry
from persona.types import IncomingMessage, MediaFile, Reply
from tests.fakes.telegram_server import FakeTelegramServer
from tests.fakes.text import ScriptedText

pytestmark = pytest.mark.timeout(90)

ZOE = 111  # a private chat with Zoe (chat id == user id, as on Telegram)
GROUP = -1001234567890


@pytest_asyncio.fixture
async def tg():
    async with FakeTelegramServer() as srv:
        yield srv


@pytest.fixture
def registry():
    return PersonaRegistry([SAMPLES])


class Bot:
    def __init__(self, adapter: TelegramAdapter, manager: PersonaManager | None):
        self.adapter = adapter
        self.manager = manager
        self.seen: list[IncomingMessage] = []


@contextlib.asynccontextmanager
async def running(tg, store=None, embedder=None, *, registry=None, text=None, handler=None, persona="mira",
                  admit=None, **kw):
    """A TelegramAdapter polling the fake, answering with the real PersonaManager (or ``handler``)."""
    manager = None
    if handler is None:
        manager = PersonaManager(
            store, registry or PersonaRegistry([SAMPLES]), text or LiteTextGenerator(embedder), embedder, ManagerConfig()
        )
        await manager.start()
    kw.setdefault("poll_timeout", 1)
    adapter = TelegramAdapter(tg.token, persona, api_url=tg.api_url, **kw)
    adapter.send_backoff = 0.05
    bot = Bot(adapter, manager)
    outbox = Outbox(store) if store is not None else None

    async def handle(msg: IncomingMessage):
        bot.seen.append(msg)
        return await (handler(msg) if handler is not None else manager.handle(msg))

    await adapter.start(handle, admit=admit, outbox=outbox)
    try:
        yield bot
    finally:
        await adapter.stop()
        if manager is not None:
            await manager.close()


def message_calls(tg, chat_id) -> list:
    return [c for c in tg.calls if c.method == "sendMessage" and c.chat_id == str(chat_id)]


# -- conversation through the real manager ----------------------------------------------------


async def test_private_message_is_answered_in_character_after_typing(tg, store, embedder):
    async with running(tg, store, embedder) as bot:
        assert [c["command"] for c in tg.commands] == [c for c, _ in COMMANDS]
        assert {"start", "help", "persona", "selfie", "voice", "song", "video", "memory", "forget"} <= {
            c["command"] for c in tg.commands
        }
        assert all(c["description"] for c in tg.commands)
        update = tg.push_message(ZOE, "Zoe", "What's your favourite food?", user_id=ZOE)
        [reply] = await tg.wait_for_sent(1, chat_id=ZOE)
        assert "pork buns" in reply.text
        assert reply.reply_to is None  # no quoting in a private chat
        msg = bot.seen[0]
        assert (msg.platform, msg.chat_id, msg.user_id, msg.user_name) == ("telegram", str(ZOE), str(ZOE), "Zoe")
        assert msg.message_id == str(update["message"]["message_id"]) and msg.chat_kind == "private"
        assert msg.persona == "mira"
        sent = tg.sent_to(ZOE, method=None)
        actions = [i for i, c in enumerate(sent) if c.method == "sendChatAction"]
        assert actions and sent[actions[0]].fields["action"] == "typing"
        assert actions[0] < sent.index(reply)
    assert await store.count_messages() == 2


async def test_start_command_answers_the_greeting(tg, store, embedder, registry):
    async with running(tg, store, embedder):
        tg.push_message(ZOE, "Zoe", "/start", user_id=ZOE)
        [reply] = await tg.wait_for_sent(1, chat_id=ZOE)
    mira = registry.get("mira")
    assert reply.text == mira.render(mira.greetings[0], "Zoe")


async def test_groups_answer_only_mentions_replies_and_commands(tg, store, embedder):
    g = {"chat_type": "supergroup", "chat_title": "Night owls"}
    async with running(tg, store, embedder) as bot:
        tg.push_message(GROUP, "Ala", "hello everyone, anyone up?", **g)
        asked = tg.push_message(GROUP, "Ala", "@mira_test_bot what's your favourite food?", **g)
        [first] = await tg.wait_for_sent(1, chat_id=GROUP)
        assert first.reply_to == asked["message"]["message_id"]  # quotes the question in a group
        assert len(bot.seen) == 1
        msg = bot.seen[0]
        assert msg.text == "what's your favourite food?"
        assert (msg.chat_kind, msg.chat_title, msg.user_name) == ("group", "Night owls", "Ala")

        # A reply to one of the bot's messages is for the bot; a reply to a person is not.
        bo = tg.push_message(GROUP, "Bo", "and which stall has the best ones?", reply_to=first.result["message_id"], **g)
        await tg.wait_for_sent(2, chat_id=GROUP)
        assert bot.seen[-1].reply_to_message_id == str(first.result["message_id"])
        tg.push_message(GROUP, "Ala", "haha I agree", reply_to=bo["message"]["message_id"], **g)
        tg.push_message(GROUP, "Ala", "/start@some_other_bot", **g)
        tg.push_message(GROUP, "Ala", "/help@mira_test_bot", **g)
        calls = await tg.wait_for_sent(3, chat_id=GROUP)
        assert calls[-1].text.startswith("Just talk to me!")
        assert [m.text for m in bot.seen] == [
            "what's your favourite food?", "and which stall has the best ones?", "/help@mira_test_bot",
        ]
        assert len(tg.sent_to(GROUP)) == 3


async def test_long_reply_is_split_at_4096(tg, store, embedder, tmp_path):
    card = yaml.safe_load((Path(SAMPLES) / "mira.yaml").read_text())
    card["id"] = "mira-long"
    card["style"] = {"notes": card.get("style", {}).get("notes", [])}
    folder = tmp_path / "personas"
    folder.mkdir()
    (folder / "mira-long.yaml").write_text(yaml.safe_dump(card))
    registry = PersonaRegistry([SAMPLES, folder])
    paragraph = " ".join(f"The lantern number {i} at the night market glows a little brighter tonight." for i in range(45))
    long_text = "\n\n".join([paragraph] * 3)
    assert len(long_text) > 2 * MAX_MESSAGE
    async with running(tg, store, embedder, registry=registry, text=ScriptedText([long_text]), persona="mira-long"):
        tg.push_message(ZOE, "Zoe", "Tell me everything about the market.", user_id=ZOE)
        await tg.wait_for_sent(2, chat_id=ZOE)
        await asyncio.sleep(0.3)
    parts = [c.text for c in tg.sent_to(ZOE)]
    assert len(parts) == 3
    assert all(utf16_len(p) <= MAX_MESSAGE for p in parts)
    assert all(p == paragraph for p in parts)  # split at the paragraph breaks


async def test_flood_limited_reply_is_retried_and_delivered_once(tg, store, embedder):
    tg.fail_next("sendMessage", 1, status=429, retry_after=1)
    async with running(tg, store, embedder):
        tg.push_message(ZOE, "Zoe", "What's your favourite food?", user_id=ZOE)
        await tg.wait_for_sent(1, chat_id=ZOE, timeout=15)
        tg.push_message(ZOE, "Zoe", "/help", user_id=ZOE)
        await tg.wait_for_sent(2, chat_id=ZOE)
    attempts = message_calls(tg, ZOE)
    assert [c.status for c in attempts] == [429, 200, 200]
    assert attempts[0].text == attempts[1].text and "pork buns" in attempts[1].text
    assert attempts[1].at - attempts[0].at >= 1.0  # waited retry_after
    assert attempts[2].text.startswith("Just talk to me!")


async def test_restart_answers_every_message_exactly_once(tg, store, embedder):
    said = ["Hi, I am Zoe and I love pierogi", "What's your favourite food?", "How are you doing today?"]
    later = ["What do you do for a living?", "/persona", "Who are you?"]
    pushed = []
    async with running(tg, store, embedder):
        pushed.append(tg.push_message(ZOE, "Zoe", said[0], user_id=ZOE))
        pushed.append(tg.push_message(ZOE, "Zoe", said[1], user_id=ZOE))
        await tg.wait_for_sent(2, chat_id=ZOE)
        pushed.append(tg.push_message(ZOE, "Zoe", said[2], user_id=ZOE))
        await tg.wait_for_delivery(pushed[-1]["update_id"])
        # leaving the block stops the bot with message 3 in flight
    assert len(tg.sent_to(ZOE)) == 3  # in-flight work was finished before stopping
    assert tg.confirmed_offset == pushed[-1]["update_id"] + 1  # and the offset confirmed
    for text in later[:2]:  # written while the bot is down
        pushed.append(tg.push_message(ZOE, "Zoe", text, user_id=ZOE))
    async with running(tg, store, embedder):  # a new manager and adapter, same database
        await tg.wait_for_sent(5, chat_id=ZOE)
        pushed.append(tg.push_message(ZOE, "Zoe", later[2], user_id=ZOE))
        await tg.wait_for_sent(6, chat_id=ZOE)
    assert len(tg.sent_to(ZOE)) == 6  # none lost, none doubled
    assert all(tg.deliveries[u["update_id"]] == 1 for u in pushed)
    assert await store.count_messages() == 12


async def test_redelivery_after_a_crash_is_not_answered_twice(tg, store, embedder):
    async with running(tg, store, embedder):
        first = tg.push_message(ZOE, "Zoe", "What's your favourite food?", user_id=ZOE)
        await tg.wait_for_sent(1, chat_id=ZOE)
    tg.unconfirm(0)  # as if the bot died before it confirmed the offset: Telegram sends it again
    async with running(tg, store, embedder):
        tg.push_message(ZOE, "Zoe", "/help", user_id=ZOE)
        await tg.wait_for_sent(2, chat_id=ZOE)
    assert tg.deliveries[first["update_id"]] == 2
    texts = [c.text for c in tg.sent_to(ZOE)]
    assert len(texts) == 2 and "pork buns" in texts[0] and texts[1].startswith("Just talk to me!")


async def _replies(store) -> list[dict]:
    from sqlalchemy import select

    from db.models import Message

    async with store.read() as conn:
        rows = (await conn.execute(select(Message.__table__).where(Message.__table__.c.role == "assistant"))).all()
    return [dict(r._mapping) for r in rows]


async def test_a_502_on_a_send_is_sent_again_not_apologised_for(tg, store, embedder):
    tg.fail_next("sendMessage", status=502, description="Bad Gateway")
    async with running(tg, store, embedder):
        tg.push_message(ZOE, "Zoe", "What's your favourite food?", user_id=ZOE)
        [reply] = await tg.wait_for_sent(1, chat_id=ZOE)
        await asyncio.sleep(0.3)
    attempts = message_calls(tg, ZOE)
    assert [c.status for c in attempts] == [502, 200]
    assert attempts[0].text == attempts[1].text and "pork buns" in reply.text
    assert not any(APOLOGY_TEXT in (c.text or "") for c in tg.calls)
    [row] = await _replies(store)
    assert row["status"] == "delivered" and row["platform_message_id"] == str(reply.result["message_id"])


async def test_a_reply_a_crash_left_undelivered_is_sent_once_on_restart(tg, store, embedder):
    from bots.service import OutboxSweeper

    # The first run stored the message and its reply, then died before sending it.
    manager = PersonaManager(store, PersonaRegistry([SAMPLES]), LiteTextGenerator(embedder), embedder, ManagerConfig())
    await manager.start()
    update = tg.push_message(ZOE, "Zoe", "What's your favourite food?", user_id=ZOE)
    m = update["message"]
    reply = await manager.handle(IncomingMessage(platform="telegram", chat_id=str(ZOE), user_id=str(ZOE), user_name="Zoe",
                                                 text=m["text"], message_id=str(m["message_id"]), persona="mira"))
    await manager.close()
    assert reply is not None and not tg.sent_to(ZOE)
    # The next run: Telegram hands the unconfirmed update over again, and the outbox is swept.
    async with running(tg, store, embedder) as bot:
        stop = asyncio.Event()
        sweeper = OutboxSweeper(Outbox(store), [(bot.adapter, "mira")], interval=0.1)
        task = asyncio.create_task(sweeper.run(stop))
        [sent] = await tg.wait_for_sent(1, chat_id=ZOE)
        await tg.wait_for_delivery(update["update_id"])
        await asyncio.sleep(0.5)
        stop.set()
        await task
    assert len(tg.sent_to(ZOE)) == 1 and sent.text == reply.text  # answered once, with the stored reply
    assert (await store.message(reply.message_db_id))["status"] == "delivered"


# -- unsupported input, errors, ordering (no database needed) ---------------------------------


async def echo(msg: IncomingMessage) -> Reply:
    return Reply(text=f"re: {msg.text}", chat_id=msg.chat_id, persona="mira", reply_to_message_id=msg.message_id)


async def test_unsupported_input_gets_a_polite_note_in_private_and_silence_in_groups(tg):
    g = {"chat_type": "group", "chat_title": "Night owls"}
    async with running(tg, handler=echo) as bot:
        tg.push_sticker(ZOE, "Zoe", user_id=ZOE)
        tg.push_location(ZOE, "Zoe", user_id=ZOE)
        tg.push_document(ZOE, "Zoe", caption="have a look", user_id=ZOE)
        tg.push_poll(ZOE, "Zoe", user_id=ZOE)
        hello = tg.push_message(ZOE, "Zoe", "hello", user_id=ZOE)
        tg.push_edit(ZOE, hello["message"]["message_id"], "hello again")
        tg.push_message(ZOE, "Zoe", "still there?", user_id=ZOE)
        calls = await tg.wait_for_sent(7, chat_id=ZOE)
        assert [c.text for c in calls] == [UNSUPPORTED_TEXT] * 4 + ["re: hello", EDITED_TEXT, "re: still there?"]

        tg.push_sticker(GROUP, "Ala", **g)
        tg.push_location(GROUP, "Ala", **g)
        asked = tg.push_message(GROUP, "Ala", "hi", **g)
        tg.push_edit(GROUP, asked["message"]["message_id"], "hi all")
        tg.push_message(GROUP, "Ala", "@mira_test_bot you there?", **g)
        [reply] = await tg.wait_for_sent(1, chat_id=GROUP)
        assert reply.text == "re: you there?"
        await asyncio.sleep(0.2)
        assert len(tg.sent_to(GROUP)) == 1
        assert [m.text for m in bot.seen] == ["hello", "still there?", "you there?"]


async def test_an_unreadable_update_is_skipped_not_fatal(tg):
    async with running(tg, handler=echo) as bot:
        tg.push_message(ZOE, "Zoe", "before", user_id=ZOE)
        broken = tg.push_raw("message", {"message_id": 99, "chat": {"id": ZOE}, "text": "no date, no chat type"})
        tg.push_message(ZOE, "Zoe", "after", user_id=ZOE)
        calls = await tg.wait_for_sent(2, chat_id=ZOE)
        assert [c.text for c in calls] == ["re: before", "re: after"]
        assert [m.text for m in bot.seen] == ["before", "after"]
    assert tg.confirmed_offset > broken["update_id"]


async def test_handler_error_gets_an_apology_not_a_traceback(tg):
    state = {"fail": True}

    async def flaky(msg: IncomingMessage) -> Reply:
        if state["fail"]:
            raise RuntimeError("database exploded at line 42")
        return await echo(msg)

    async with running(tg, handler=flaky, admin_ids=[999]):
        tg.push_message(ZOE, "Zoe", "hello", user_id=ZOE)
        [apology] = await tg.wait_for_sent(1, chat_id=ZOE)
        assert apology.text == APOLOGY_TEXT
        tg.push_message(999, "Admin", "hello", user_id=999)
        [admin] = await tg.wait_for_sent(1, chat_id=999)
        assert admin.text.startswith(APOLOGY_TEXT) and "RuntimeError: database exploded" in admin.text
        assert "Traceback" not in admin.text
        state["fail"] = False
        tg.push_message(ZOE, "Zoe", "and now?", user_id=ZOE)
        calls = await tg.wait_for_sent(2, chat_id=ZOE)
        assert calls[-1].text == "re: and now?"


async def test_chats_run_concurrently_but_each_in_order(tg):
    async def slow_first(msg: IncomingMessage) -> Reply:
        if msg.text.startswith("slow"):
            await asyncio.sleep(0.8)
        return await echo(msg)

    async with running(tg, handler=slow_first):
        tg.push_message(ZOE, "Zoe", "slow one", user_id=ZOE)
        tg.push_message(ZOE, "Zoe", "fast two", user_id=ZOE)
        tg.push_message(222, "Bo", "fast three", user_id=222)
        await tg.wait_for_sent(3)
    order = [c.text for c in tg.sent if c.method == "sendMessage"]
    assert order[0] == "re: fast three"  # another chat is not held up by a slow one
    assert [t for t in order if t != "re: fast three"] == ["re: slow one", "re: fast two"]


async def test_typing_repeats_while_the_character_works(tg):
    async def slow(msg: IncomingMessage) -> Reply:
        await asyncio.sleep(0.75)
        return await echo(msg)

    async with running(tg, handler=slow, typing_interval=0.2):
        tg.push_message(ZOE, "Zoe", "think hard", user_id=ZOE)
        await tg.wait_for_sent(1, chat_id=ZOE)
        await asyncio.sleep(0.5)
    sent = tg.sent_to(ZOE, method=None)
    reply_at = next(i for i, c in enumerate(sent) if c.method == "sendMessage")
    typing = [i for i, c in enumerate(sent) if c.method == "sendChatAction"]
    assert len(typing) >= 3 and all(i < reply_at for i in typing)  # and none after the reply


def test_split_message_prefers_natural_boundaries():
    assert split_message("short") == ["short"]
    words = "word " * 2000
    parts = split_message(words)
    assert all(utf16_len(p) <= MAX_MESSAGE for p in parts) and all(not p.endswith("wor") for p in parts)
    assert " ".join(parts).split() == words.split()
    sentences = "This is one sentence. " * 300
    parts = split_message(sentences)
    assert all(p.endswith(".") for p in parts)
    emoji = "🌙" * 3000  # 2 UTF-16 units each: Telegram counts 6000
    parts = split_message(emoji)
    assert all(utf16_len(p) <= MAX_MESSAGE for p in parts) and "".join(parts) == emoji


# -- media ------------------------------------------------------------------------------------


def make_png(path: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (64, 48), (255, 140, 0)).save(path)
    return path


def make_ogg_opus(path: Path, seconds: float = 1.0) -> Path:
    av = pytest.importorskip("av", reason="PyAV makes the OGG/Opus voice note")
    import numpy as np

    rate = 48000
    t = np.arange(int(rate * seconds)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    with av.open(str(path), "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=rate, layout="mono")
        for start in range(0, len(pcm), 960):
            chunk = pcm[start : start + 960]
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def make_mp4(path: Path, seconds: float = 1.0) -> Path:
    """A 64x48 H.264 clip with an AAC tone, written by the project's own MP4 writer."""
    import numpy as np

    from generators.video.mp4 import write_mp4

    fps, rate = 12, 44100
    t = np.arange(int(rate * seconds)) / rate
    frames = [np.full((48, 64, 3), (i * 20) % 255, dtype=np.uint8) for i in range(int(fps * seconds))]
    return write_mp4(path, frames, fps, audio=(0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), sample_rate=rate)

def probe(data: bytes) -> dict[str, str]:
    import av

    with av.open(io.BytesIO(data)) as container:
        streams = {s.type: s.codec_context.name for s in container.streams}
        decoded = sum(1 for _ in container.decode(container.streams[0]))
    assert decoded > 0
    return streams


async def test_media_is_uploaded_as_valid_files(tg, tmp_path):
    png = make_png(tmp_path / "selfie.png")
    ogg = make_ogg_opus(tmp_path / "hello.ogg")
    mp4 = make_mp4(tmp_path / "clip.mp4")
    reply = Reply(
        text="Here you go!", chat_id=str(ZOE), persona="mira",
        media=(
            MediaFile("image", str(png), "image/png", caption="Me at the night market"),
            MediaFile("voice", str(ogg), "audio/ogg", duration=1.0),
            MediaFile("audio", str(ogg), "audio/ogg", caption="a little song", duration=1.0),
            MediaFile("video", str(mp4), "video/mp4", caption="the pier tonight", duration=1.0),
        ),
    )
    async with running(tg, handler=echo) as bot:
        await bot.adapter.send(reply)
    sent = tg.sent_to(ZOE, method=None)
    media = [c for c in sent if c.method in ("sendPhoto", "sendVoice", "sendAudio", "sendVideo", "sendMessage")]
    assert [c.method for c in media] == ["sendPhoto", "sendVoice", "sendAudio", "sendVideo", "sendMessage"]
    photo, voice, audio, video, text = media
    assert text.text == "Here you go!"

    from PIL import Image

    up = photo.file("photo")
    assert up is not None and photo.fields["caption"] == "Me at the night market"
    with Image.open(io.BytesIO(up.data)) as img:
        assert img.format == "PNG" and img.size == (64, 48)

    up = voice.file("voice")
    assert up is not None and up.data == ogg.read_bytes() and "caption" not in voice.fields
    assert probe(up.data) == {"audio": "opus"}
    assert str(voice.fields.get("duration")) == "1"

    up = audio.file("audio")
    assert up is not None and audio.fields["caption"] == "a little song"
    assert probe(up.data)["audio"] == "opus"

    up = video.file("video")
    assert up is not None and video.fields["caption"] == "the pier tonight"
    streams = probe(up.data)
    assert set(streams) == {"video", "audio"} and streams["audio"] == "aac"

    actions = [c.fields["action"] for c in sent if c.method == "sendChatAction"]
    assert {"upload_photo", "record_voice", "upload_video"} <= set(actions)


async def test_long_caption_goes_as_text_and_non_ogg_voice_as_audio(tg, tmp_path):
    png = make_png(tmp_path / "selfie.png")
    wav = tmp_path / "note.wav"
    wav.write_bytes(b"RIFF....WAVEfmt fake")
    caption = "A very long story about the stars. " * 40
    reply = Reply(
        text="", chat_id=str(GROUP), persona="mira", reply_to_message_id="5",
        media=(MediaFile("image", str(png), "image/png", caption=caption), MediaFile("voice", str(wav), "audio/wav")),
    )
    async with running(tg, handler=echo) as bot:
        await bot.adapter.send(reply)
    calls = [c for c in tg.sent_to(GROUP, method=None) if c.method != "sendChatAction"]
    assert [c.method for c in calls] == ["sendPhoto", "sendMessage", "sendAudio"]
    assert "caption" not in calls[0].fields and calls[0].reply_to == 5
    assert calls[1].text == caption.strip()


@pytest.mark.parametrize("token", ["999:wrongSECRETwrongSECRET", "not-a-token-SECRETSECRET"])
async def test_wrong_token_fails_to_start_without_showing_it(tg, token, caplog):
    """401 or 404 from the server: the error says the token was rejected, never the token."""
    from bots.telegram import TelegramStartError

    adapter = TelegramAdapter(token, "mira", api_url=tg.api_url, poll_timeout=1)
    with pytest.raises(TelegramStartError) as failed:
        await adapter.start(echo)
    await adapter.stop()  # harmless after a failed start
    assert "rejected" in str(failed.value) or "Not Found" in str(failed.value)
    assert "SECRET" not in str(failed.value) and "SECRET" not in caplog.text
    assert tg.calls == []  # the fake records nothing from a stranger


def test_webhook_mode_without_a_secret_is_refused():
    with pytest.raises(ValueError, match="VCHAR_TELEGRAM_WEBHOOK_SECRET"):
        TelegramAdapter("1:abc", "mira", webhook_url="https://bot.example/telegram")
    assert TelegramAdapter("1:abc", "mira", webhook_url="https://bot.example/telegram", webhook_secret="s3cret-Token")


async def test_fake_confirms_offsets_like_telegram(tg):
    """The fake itself: offset confirms, long poll waits for an update."""
    import httpx

    url = f"{tg.base_url}{tg.token}"
    async with httpx.AsyncClient() as client:
        first = tg.push_message(ZOE, "Zoe", "one", user_id=ZOE)
        got = (await client.post(f"{url}/getUpdates", data={"timeout": "0"})).json()
        assert got["ok"] and [u["update_id"] for u in got["result"]] == [first["update_id"]]
        assert got["result"][0]["message"]["chat"] == {"id": ZOE, "type": "private", "first_name": "Zoe", "username": "zoe"}

        async def later():
            await asyncio.sleep(0.3)
            return tg.push_message(ZOE, "Zoe", "/start now", user_id=ZOE)

        started = time.monotonic()
        poll = client.post(f"{url}/getUpdates", data={"offset": str(first["update_id"] + 1), "timeout": "5"})
        res, second = await asyncio.gather(poll, later())
        assert 0.25 < time.monotonic() - started < 3
        [update] = res.json()["result"]
        assert update["update_id"] == second["update_id"]
        assert update["message"]["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
        assert tg.confirmed_offset == first["update_id"] + 1
        bad = await client.post(f"{tg.base_url}1:nope/getMe")
        assert bad.status_code == 401 and bad.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}


# -- photos for /art and /portrait ------------------------------------------------------------


def jpeg_photo(tmp_path) -> bytes:
    from PIL import Image

    from generators.image.testing import portrait_on_canvas

    src = portrait_on_canvas(tmp_path / "friend.png")
    buf = io.BytesIO()
    with Image.open(src) as img:
        img.convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


async def test_art_photo_is_downloaded_and_answered_with_a_redrawn_picture(tg, store, embedder, tmp_path):
    from PIL import Image

    from generators.image import build_image_backend

    data = jpeg_photo(tmp_path)
    image = build_image_backend("lite", out_dir=tmp_path / "images")
    manager = PersonaManager(store, PersonaRegistry([SAMPLES]), LiteTextGenerator(embedder), embedder, ManagerConfig(),
                             image=image)
    await manager.start()
    seen: list[tuple[IncomingMessage, bytes]] = []

    async def handle(msg: IncomingMessage):
        seen.append((msg, Path(msg.attachments[0].path).read_bytes() if msg.attachments else b""))
        return await manager.handle(msg)

    try:
        async with running(tg, handler=handle, download_dir=tmp_path / "incoming"):
            tg.push_photo(ZOE, "Zoe", data, caption="/art watercolor", user_id=ZOE)
            [photo] = await tg.wait_for_sent(1, method="sendPhoto", chat_id=ZOE)
    finally:
        await manager.close()
    [(msg, got)] = seen
    assert msg.text == "/art watercolor" and len(msg.attachments) == 1
    att = msg.attachments[0]
    assert (att.kind, att.mime, att.size) == ("image", "image/jpeg", len(data)) and got == data
    assert tg.downloads and tg.downloads[-1].startswith("photos/")  # the largest size, not the thumbnail
    assert not Path(att.path).exists()  # the download is cleaned up once answered
    up = photo.file("photo")
    assert up is not None and photo.fields.get("caption")
    with Image.open(io.BytesIO(up.data)) as img:
        assert img.format == "PNG" and img.size[0] >= 256
    assert not tg.sent_to(ZOE)  # the picture is the whole answer: no "text only" note


async def test_photos_of_limited_or_blocked_people_are_never_downloaded(tg, store, embedder, tmp_path):
    from generators.image import build_image_backend
    from persona.limits import Rate
    from persona.manager import MEDIA_LIMITED

    data = jpeg_photo(tmp_path)
    image = build_image_backend("lite", out_dir=tmp_path / "images")
    config = ManagerConfig(media_rate=Rate(1, 3600), admins={"telegram": frozenset({str(ZOE)})})
    manager = PersonaManager(store, PersonaRegistry([SAMPLES]), LiteTextGenerator(embedder), embedder, config,
                             image=image)
    await manager.start()
    ala = 222
    try:
        async with running(tg, handler=manager.handle, admit=manager.admits, download_dir=tmp_path / "incoming"):
            tg.push_photo(ala, "Ala", data, caption="/art", user_id=ala)  # spends Ala's one picture
            await tg.wait_for_sent(1, method="sendPhoto", chat_id=ala)
            assert len(tg.downloads) == 1
            tg.push_photo(ala, "Ala", data, caption="/art again", user_id=ala)
            [limited] = await tg.wait_for_sent(1, chat_id=ala)
            assert limited.text == MEDIA_LIMITED
            tg.push_message(ZOE, "Zoe", f"/block {ala}", user_id=ZOE)
            await tg.wait_for_sent(1, chat_id=ZOE)
            manager.media_limiter = type(manager.media_limiter)(Rate(10, 3600))  # limit lifted: only the block
            tg.push_photo(ala, "Ala", data, caption="/art", user_id=ala)
            await asyncio.sleep(0.5)
            assert len(tg.downloads) == 1  # neither the limited nor the blocked photo was fetched
    finally:
        await manager.close()
    assert [c.method for c in tg.sent_to(ala, method=None) if c.method != "sendChatAction"] == ["sendPhoto", "sendMessage"]


async def test_photo_rules_in_private_and_groups(tg, tmp_path):
    from bots.telegram import TOO_BIG_TEXT

    data = jpeg_photo(tmp_path)
    g = {"chat_type": "group", "chat_title": "Night owls"}
    got: list[tuple[str, tuple]] = []

    async def handler(msg: IncomingMessage) -> Reply:
        att = msg.attachments
        got.append((msg.text, tuple((a.kind, a.mime, Path(a.path).read_bytes() == data) for a in att)))
        return Reply(text=f"re: {msg.text}", chat_id=msg.chat_id, persona="mira", reply_to_message_id=msg.message_id)

    async with running(tg, handler=handler, max_download_bytes=5 * 1024 * 1024):
        tg.push_photo(ZOE, "Zoe", data, user_id=ZOE)  # no caption: the usual note
        tg.push_photo(ZOE, "Zoe", data, caption="look at this", user_id=ZOE)  # no command: the usual note
        tg.push_photo(ZOE, "Zoe", data, caption="/art", user_id=ZOE, file_size=50 * 1024 * 1024)  # too big
        tg.push_document(ZOE, "Zoe", "statue.jpg", "image/jpeg", caption="/portrait", user_id=ZOE, data=data)
        calls = await tg.wait_for_sent(4, chat_id=ZOE)
        assert [c.text for c in calls] == [UNSUPPORTED_TEXT, UNSUPPORTED_TEXT, TOO_BIG_TEXT.format(mb=5), "re: /portrait"]

        tg.push_photo(GROUP, "Ala", data, **g)  # photos in groups: silence ...
        tg.push_photo(GROUP, "Ala", data, caption="/unknown", **g)
        tg.push_photo(GROUP, "Ala", data, caption="/art@mira_test_bot oil painting", **g)  # ... unless for us
        [reply] = await tg.wait_for_sent(1, chat_id=GROUP)
        assert reply.text == "re: /art@mira_test_bot oil painting"
        await asyncio.sleep(0.2)
        assert len(tg.sent_to(GROUP)) == 1
    assert got == [("/portrait", (("image", "image/jpeg", True),)),
                   ("/art@mira_test_bot oil painting", (("image", "image/jpeg", True),))]
    assert len(tg.downloads) == 2  # neither the photos without a command nor the oversized one


async def test_a_clip_goes_with_its_size_and_thumbnail_and_a_video_note_goes_round(tg, tmp_path):
    import numpy as np

    from generators.video.mp4 import thumbnail, write_mp4

    frames = [np.full((240, 240, 3), 40 + 8 * i, np.uint8) for i in range(10)]
    clip = write_mp4(tmp_path / "clip.mp4", frames, 10)
    thumb = thumbnail(frames[0], tmp_path / "clip.jpg")
    reply = Reply(
        text="", chat_id=str(ZOE), persona="mira",
        media=(MediaFile("video", str(clip), "video/mp4", caption="at the pier", duration=1.0, width=240, height=240,
                         thumbnail=str(thumb)),
               MediaFile("video_note", str(clip), "video/mp4", caption="hi!", duration=1.0, width=240,
                         thumbnail=str(thumb))),
    )
    async with running(tg, handler=echo) as bot:
        await bot.adapter.send(reply)
    [video] = tg.sent_to(ZOE, method="sendVideo")
    v = video.result["video"]
    assert (v["width"], v["height"], v["supports_streaming"]) == (240, 240, True) and v["thumbnail"]["width"] <= 320
    [note] = tg.sent_to(ZOE, method="sendVideoNote")
    assert note.result["video_note"]["length"] == 240 and note.result["video_note"]["thumbnail"]
    assert "caption" not in note.fields  # a round video note carries no caption: it follows as text
    assert any(c.text == "hi!" for c in tg.sent_to(ZOE, method="sendMessage"))
