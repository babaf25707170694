"""/song in the chats: acknowledged, made by the job worker, delivered as a song
(Telegram's audio player with title, performer and cover; a Discord attachment)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from bots.service import OutboxSweeper
from db.jobs import JobTable
from generators.jobs import Worker
from generators.jobs.runners import music_runner
from generators.music.lite import LiteMusic
from generators.text.lite import LiteTextGenerator
from persona.manager import ManagerConfig, PersonaManager
from persona.media import ACKS, MediaJobs
from persona.outbox import Outbox
from persona.registry import SAMPLES, PersonaRegistry
from tests.bots.test_discord import bots, fake  # noqa: F401 - fixtures
from tests.bots.test_telegram import ZOE, running, tg  # noqa: F401 - fixtures


def _mira_voice(voices: Path) -> None:
    from generators.voice.profile import create_voice_profile

    spec = json.loads((Path(SAMPLES) / "media" / "mira-voice.json").read_text())
    create_voice_profile("mira", Path(SAMPLES) / "media" / spec["sample"], consent_statement=spec["consent_statement"],
                         consent_who=spec["consent_who"], voices_root=voices)


async def _manager(store, embedder, tmp_path, *, voice: bool):
    voices = tmp_path / "voices"
    if voice:
        _mira_voice(voices)
    table = JobTable(store)
    media = MediaJobs(store, table, uploads=tmp_path / "uploads")
    music = LiteMusic(tmp_path / "music")
    m = PersonaManager(store, PersonaRegistry([SAMPLES]), LiteTextGenerator(embedder), embedder, ManagerConfig(),
                       music=music, voices_root=voices, jobs=media)
    await m.start()
    worker = Worker(table, {"music": music_runner(music)}, on_done=media.on_done, on_failed=media.on_failed)
    return m, table, worker


async def test_a_song_arrives_on_telegram_in_the_audio_player_with_its_cover(tg, store, embedder, tmp_path):  # noqa: F811
    m, table, worker = await _manager(store, embedder, tmp_path, voice=True)
    try:
        async with running(tg, store, embedder, handler=m.handle) as bot:
            tg.push_message(ZOE, "Zoe", "sing me a song about the rain", user_id=ZOE)
            [ack] = await tg.wait_for_sent(1, chat_id=ZOE)
            assert ack.text in ACKS["music"]
            [job] = await table.list()
            assert job.kind == "music" and job.payload["params"]["request"]["voice"]["persona_id"] == "mira"
            assert await worker.run_one()
            await OutboxSweeper(Outbox(store), [(bot.adapter, "mira")], jobs=table).sweep()
            [song] = await tg.wait_for_sent(1, chat_id=ZOE, method="sendAudio")
    finally:
        await m.close()
    audio = song.result["audio"]
    assert audio["title"] == "The Rain" and audio["performer"] == "Mira Vale"
    assert audio["thumbnail"]["width"] <= 320  # a JPEG Telegram accepts as the cover
    assert audio["duration"] >= 25 and audio["mime_type"] == "audio/mpeg"
    assert "The Rain" in song.fields["caption"] and "instrumental" not in song.fields["caption"]
    from sqlalchemy import select

    from db.models import MediaAsset

    async with store.read() as conn:
        [params] = (await conn.execute(select(MediaAsset.parameters).where(MediaAsset.kind == "audio"))).scalars().all()
    assert "the rain" in params["lyrics"].lower()  # every song is kept with its lyrics


async def test_without_a_voice_the_song_is_an_instrumental_and_the_caption_says_so(tg, store, embedder, tmp_path):  # noqa: F811
    m, table, worker = await _manager(store, embedder, tmp_path, voice=False)
    try:
        async with running(tg, store, embedder, handler=m.handle) as bot:
            tg.push_message(ZOE, "Zoe", "/song chiptune about cats", user_id=ZOE)
            await tg.wait_for_sent(1, chat_id=ZOE)
            [job] = await table.list()
            request = job.payload["params"]["request"]
            assert request["instrumental"] and request["voice"] is None and request["style"] == "chiptune"
            assert await worker.run_one()
            await OutboxSweeper(Outbox(store), [(bot.adapter, "mira")], jobs=table).sweep()
            [song] = await tg.wait_for_sent(1, chat_id=ZOE, method="sendAudio")
    finally:
        await m.close()
    assert "instrumental" in song.fields["caption"]


async def test_a_song_goes_to_discord_as_an_attachment(fake, bots, store, embedder, tmp_path):  # noqa: F811
    import av

    m, table, worker = await _manager(store, embedder, tmp_path, voice=True)
    try:
        await bots.start(m.handle, outbox=Outbox(store))
        fake.push_message(None, "Zoe", "/song lo-fi about the sea", guild=False)
        [ack] = await fake.wait_for_sent(1)
        assert ack.content in ACKS["music"]
        assert await worker.run_one()
        adapter = bots.adapters[-1]
        await OutboxSweeper(Outbox(store), [(adapter, "mira")], jobs=table).sweep()
        _, msg = await fake.wait_for_sent(2)
    finally:
        await m.close()
    [f] = msg.files
    assert f.filename.endswith(".mp3") and "The Sea" in msg.content
    with av.open(io.BytesIO(f.data)) as c:
        assert c.streams.audio[0].codec_context.name in ("mp3", "mp3float") and c.metadata.get("artist") == "Mira Vale"
