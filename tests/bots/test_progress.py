"""A media job's progress shows in the chat: its acknowledgement is edited as the stage
moves, with the matching chat action."""

from __future__ import annotations

from bots.service import OutboxSweeper
from db.jobs import JobTable
from generators.image import build_image_backend
from generators.text.lite import LiteTextGenerator
from persona.manager import ManagerConfig, PersonaManager
from persona.media import ACKS, MediaJobs
from persona.outbox import Outbox
from persona.registry import SAMPLES, PersonaRegistry
from tests.bots.test_telegram import ZOE, running, tg  # noqa: F401 - fixture


async def test_the_acknowledgement_is_edited_as_the_job_moves(tg, store, embedder, tmp_path):  # noqa: F811
    table = JobTable(store)
    media = MediaJobs(store, table, uploads=tmp_path / "uploads")
    manager = PersonaManager(store, PersonaRegistry([SAMPLES]), LiteTextGenerator(embedder), embedder, ManagerConfig(),
                             image=build_image_backend("lite", out_dir=tmp_path / "images"), jobs=media)
    await manager.start()
    try:
        async with running(tg, store, embedder, handler=manager.handle) as bot:
            tg.push_message(ZOE, "Zoe", "/selfie at the pier", user_id=ZOE)
            [ack] = await tg.wait_for_sent(1, chat_id=ZOE)
            assert ack.text in ACKS["image"]
            job = await table.claim("gpu-1", ["image"], 30)  # a worker has it
            sweeper = OutboxSweeper(Outbox(store), [(bot.adapter, "mira")], jobs=table)
            assert await sweeper.show_progress() == 0  # no stage yet: only the chat action
            await table.heartbeat(job.id, "gpu-1", 30, 0.4, "drawing")
            assert await sweeper.show_progress() == 1
            assert await sweeper.show_progress() == 0  # nothing moved: no edit
            await table.heartbeat(job.id, "gpu-1", 30, 0.95, "saving")
            assert await sweeper.show_progress() == 1
    finally:
        await manager.close()
    edits = [c for c in tg.calls if c.method == "editMessageText" and c.ok]
    assert [e.text for e in edits] == [f"{ack.text}\n(drawing, 40%)", f"{ack.text}\n(saving, 95%)"]
    assert all(int(e.fields["message_id"]) == ack.result["message_id"] for e in edits)
    actions = [c.fields["action"] for c in tg.sent_to(ZOE, method="sendChatAction")]
    assert actions.count("upload_photo") == 4  # one each look while the picture is being made
