"""/video and /animate in the chats: acknowledged, filmed by the job worker, delivered as
a clip with its size and thumbnail (Telegram) or an attachment (Discord)."""

from __future__ import annotations

import io
from pathlib import Path

from bots.service import OutboxSweeper
from db.jobs import JobTable
from generators.jobs import Worker
from generators.jobs.runners import video_runner
from generators.text.lite import LiteTextGenerator
from generators.video.lite import LiteVideo
from generators.voice import VoiceGenerator, build_voice_backend
from persona.manager import ManagerConfig, PersonaManager
from persona.media import ACKS, MediaJobs
from persona.outbox import Outbox
from persona.registry import SAMPLES, PersonaRegistry
from persona.videos import NO_FACE
from tests.bots.test_discord import bots, fake  # noqa: F401 - fixtures
from tests.bots.test_songs import _mira_voice
from tests.bots.test_telegram import ZOE, running, tg  # noqa: F401 - fixtures


async def _manager(store, embedder, tmp_path):
    voices = tmp_path / "voices"
    _mira_voice(voices)
    table = JobTable(store)
    media = MediaJobs(store, table, uploads=tmp_path / "uploads")
    voice = VoiceGenerator(build_voice_backend("lite", cache_dir=tmp_path / "vcache"), tmp_path / "notes")
    video = LiteVideo(tmp_path / "video")
    m = PersonaManager(store, PersonaRegistry([SAMPLES]), LiteTextGenerator(embedder), embedder, ManagerConfig(),
                       voice=voice, video=video, voices_root=voices, jobs=media)
    await m.start()
    worker = Worker(table, {"video": video_runner(video, voice)}, on_done=media.on_done, on_failed=media.on_failed)
    return m, table, worker


async def test_video_arrives_on_telegram_as_a_clip_with_its_size_and_thumbnail(tg, store, embedder, tmp_path):  # noqa: F811
    m, table, worker = await _manager(store, embedder, tmp_path)
    try:
        async with running(tg, store, embedder, handler=m.handle) as bot:
            tg.push_message(ZOE, "Zoe", "/video see you at the night market!", user_id=ZOE)
            [ack] = await tg.wait_for_sent(1, chat_id=ZOE)
            assert ack.text in ACKS["video"]
            assert await worker.run_one()
            await OutboxSweeper(Outbox(store), [(bot.adapter, "mira")], jobs=table).sweep()
            [clip] = await tg.wait_for_sent(1, chat_id=ZOE, method="sendVideo")
    finally:
        await m.close()
    v = clip.result["video"]
    assert (v["width"], v["height"]) == (512, 512) and v["duration"] >= 1 and v["thumbnail"]["width"] <= 320
    import av

    with av.open(io.BytesIO(clip.file("video").data)) as c:
        assert {s.type for s in c.streams} == {"video", "audio"}
        assert c.streams.video[0].codec_context.name == "h264"


async def test_animate_needs_a_face_and_says_so_in_character(tg, store, embedder, tmp_path):  # noqa: F811
    from PIL import Image

    m, table, worker = await _manager(store, embedder, tmp_path)
    blank = io.BytesIO()
    Image.new("RGB", (200, 200), (120, 140, 160)).save(blank, "PNG")
    try:
        async with running(tg, store, embedder, handler=m.handle) as bot:
            tg.push_photo(ZOE, "Zoe", blank.getvalue(), caption="/animate hello!", user_id=ZOE)
            await tg.wait_for_sent(1, chat_id=ZOE)
            [job] = await table.list()
            assert Path(job.payload["params"]["portrait"]).is_file()  # kept for the worker
            assert await worker.run_one()
            await OutboxSweeper(Outbox(store), [(bot.adapter, "mira")], jobs=table).sweep()
            sent = await tg.wait_for_sent(2, chat_id=ZOE)
    finally:
        await m.close()
    assert sent[-1].text == NO_FACE
    assert (await table.get(job.id)).status == "failed"


async def test_video_goes_to_discord_as_an_mp4_attachment(fake, bots, store, embedder, tmp_path):  # noqa: F811
    m, table, worker = await _manager(store, embedder, tmp_path)
    try:
        adapter = await bots.start(m.handle, outbox=Outbox(store))
        fake.push_message(None, "Zoe", "/video hello!", guild=False)
        await fake.wait_for_sent(1)
        assert await worker.run_one()
        await OutboxSweeper(Outbox(store), [(adapter, "mira")], jobs=table).sweep()
        _, msg = await fake.wait_for_sent(2)
    finally:
        await m.close()
    [f] = msg.files
    assert f.filename.endswith(".mp4") and len(f.data) > 10_000


async def test_forget_deletes_the_clip_made_for_the_person_and_its_thumbnail(store, embedder, tmp_path):
    from tests.persona.test_manager import msg

    m, table, worker = await _manager(store, embedder, tmp_path)
    try:
        await m.handle(msg("/video hello you", mid="v1"))
        assert await worker.run_one()
        [job] = await table.list()
        clip = Path(job.result["files"][0]["path"])
        thumb = clip.with_name(clip.stem + ".thumb.jpg")
        assert clip.is_file() and thumb.is_file()
        await m.forget("mira", "telegram", "u1")
        assert not clip.exists() and not thumb.exists()
    finally:
        await m.close()


async def test_video_note_arrives_on_telegram_as_a_round_video_message(tg, store, embedder, tmp_path):  # noqa: F811
    m, table, worker = await _manager(store, embedder, tmp_path)
    try:
        async with running(tg, store, embedder, handler=m.handle) as bot:
            tg.push_message(ZOE, "Zoe", "/video note good morning!", user_id=ZOE)
            await tg.wait_for_sent(1, chat_id=ZOE)
            assert await worker.run_one()
            await OutboxSweeper(Outbox(store), [(bot.adapter, "mira")], jobs=table).sweep()
            [note] = await tg.wait_for_sent(1, chat_id=ZOE, method="sendVideoNote")
    finally:
        await m.close()
    assert note.result["video_note"]["length"] == 384 and "caption" not in note.fields


async def test_animate_makes_the_photo_speak_and_keeps_no_landmarks_of_it(tg, store, embedder, tmp_path):  # noqa: F811
    m, table, worker = await _manager(store, embedder, tmp_path)
    try:
        async with running(tg, store, embedder, handler=m.handle) as bot:
            tg.push_photo(ZOE, "Zoe", Path(f"{SAMPLES}/media/mira-portrait.png").read_bytes(), caption="/animate hi!",
                          user_id=ZOE)
            await tg.wait_for_sent(1, chat_id=ZOE)
            assert await worker.run_one()
            await OutboxSweeper(Outbox(store), [(bot.adapter, "mira")], jobs=table).sweep()
            await tg.wait_for_sent(1, chat_id=ZOE, method="sendVideo")
    finally:
        await m.close()
    faces = tmp_path / "video" / "faces"
    assert not faces.exists() or not list(faces.iterdir())  # a person's photo leaves no face data behind


async def test_a_group_photo_is_animated_by_its_biggest_face_and_the_caption_says_so(tg, store, embedder, tmp_path):  # noqa: F811
    from PIL import Image

    face = Image.open(f"{SAMPLES}/media/mira-portrait.png").convert("RGB")
    group = Image.new("RGB", (face.width * 2, face.height), (200, 200, 200))
    group.paste(face, (0, 0))
    group.paste(face.resize((face.width * 2 // 3, face.height * 2 // 3)), (face.width + 40, 60))
    buf = io.BytesIO()
    group.save(buf, "JPEG")
    m, table, worker = await _manager(store, embedder, tmp_path)
    try:
        async with running(tg, store, embedder, handler=m.handle) as bot:
            tg.push_photo(ZOE, "Zoe", buf.getvalue(), caption="/animate we are two!", user_id=ZOE)
            await tg.wait_for_sent(1, chat_id=ZOE)
            assert await worker.run_one()
            await OutboxSweeper(Outbox(store), [(bot.adapter, "mira")], jobs=table).sweep()
            [clip] = await tg.wait_for_sent(1, chat_id=ZOE, method="sendVideo")
    finally:
        await m.close()
    assert "2 faces in that picture" in clip.fields["caption"]


async def test_video_selfie_is_upright_9_by_16(tg, store, embedder, tmp_path):  # noqa: F811
    m, table, worker = await _manager(store, embedder, tmp_path)
    try:
        async with running(tg, store, embedder, handler=m.handle) as bot:
            tg.push_message(ZOE, "Zoe", "/video selfie hi from the market", user_id=ZOE)
            await tg.wait_for_sent(1, chat_id=ZOE)
            assert await worker.run_one()
            await OutboxSweeper(Outbox(store), [(bot.adapter, "mira")], jobs=table).sweep()
            [clip] = await tg.wait_for_sent(1, chat_id=ZOE, method="sendVideo")
    finally:
        await m.close()
    v = clip.result["video"]
    assert (v["width"], v["height"]) == (512, 910)
