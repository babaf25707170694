"""Media requests as jobs through the real manager: acknowledged at once, made by a
worker, delivered as a reply of their own; /cancel stops them."""

from __future__ import annotations

import asyncio

from db.jobs import JobTable
from generators.image import build_image_backend
from generators.jobs import Worker
from generators.jobs.runners import image_runner
from generators.text.lite import LiteTextGenerator
from persona.manager import ManagerConfig, PersonaManager
from persona.media import ACKS, CANCELLED, NOTHING_TO_CANCEL, MediaJobs
from persona.outbox import Outbox
from tests.persona.test_manager import msg, photo_msg, portrait_registry, registry  # noqa: F401 - fixtures


async def _setup(store, embedder, registry, tmp_path):
    image = build_image_backend("lite", out_dir=tmp_path / "images")
    table = JobTable(store)
    rung: list[tuple[str, int]] = []

    async def bell(kind, job_id):
        rung.append((kind, job_id))

    media = MediaJobs(store, table, bell=bell, uploads=tmp_path / "uploads")
    m = PersonaManager(store, registry, LiteTextGenerator(embedder), embedder, ManagerConfig(), image=image, jobs=media)
    await m.start()
    worker = Worker(table, {"image": image_runner(image)}, on_done=media.on_done, on_failed=media.on_failed)
    return m, table, worker, rung


async def test_a_selfie_is_acknowledged_then_arrives_from_the_worker_once(store, embedder, portrait_registry, tmp_path):
    from PIL import Image

    m, table, worker, rung = await _setup(store, embedder, portrait_registry, tmp_path)
    ack = await m.handle(msg("/selfie at the beach", mid="s1"))
    assert ack.text in ACKS["image"] and not ack.media
    [(kind, job_id)] = rung
    job = await table.get(job_id)
    assert (kind, job.kind, job.status, job.requester) == ("image", "image", "queued", "telegram:u1:mira")
    assert await m.handle(msg("/selfie at the beach", mid="s1")) is None  # the same message again: no second job
    assert len(await table.list()) == 1
    assert await worker.run_one()
    outbox = Outbox(store)
    due = [r for r in await outbox.due("telegram", "mira") if r.media]
    [photo] = due
    assert photo.reply_to_message_id == "s1" and "beach" in photo.media[0].caption.lower()
    assert Image.open(photo.media[0].path).format == "PNG"
    job = await table.get(job_id)
    assert job.status == "done" and job.progress == 1.0 and job.result["reply_id"] == photo.message_db_id
    assert not await worker.run_one()  # nothing left: the picture is made once
    await m.close()


async def test_an_art_photo_survives_its_download_folder_and_is_removed_after(store, embedder, registry, tmp_path):
    from generators.image.testing import portrait_on_canvas

    m, table, worker, _ = await _setup(store, embedder, registry, tmp_path)
    tmp = tmp_path / "download"
    tmp.mkdir()
    photo = portrait_on_canvas(tmp / "me.png")
    ack = await m.handle(photo_msg("/art watercolor", photo))
    assert ack.text in ACKS["image"]
    photo.unlink()  # the adapter deletes its download once the turn is over
    kept = list((tmp_path / "uploads").iterdir())
    assert len(kept) == 1
    assert await worker.run_one()
    [job] = await table.list()
    assert job.status == "done" and not kept[0].exists()  # the kept copy goes once it is used
    await m.close()


async def test_cancel_stops_the_persons_job_and_a_refusal_is_answered_in_character(store, embedder, portrait_registry, tmp_path):
    from persona.requests import SELFIE_REFUSED

    m, table, worker, _ = await _setup(store, embedder, portrait_registry, tmp_path)
    await m.handle(msg("/selfie at the lake", mid="a"))
    assert (await m.handle(msg("/cancel", mid="b"))).text == CANCELLED
    assert (await m.handle(msg("/cancel", mid="c"))).text == NOTHING_TO_CANCEL
    [job] = await table.list()
    assert job.status == "cancelled" and not await worker.run_one()
    await m.handle(msg("/selfie nude on the beach", mid="d"))  # the backend refuses it: no retries
    assert await worker.run_one()
    refused = [r for r in await Outbox(store).due("telegram", "mira") if r.text == SELFIE_REFUSED]
    assert len(refused) == 1 and refused[0].reply_to_message_id == "d"
    assert (await table.list(status="failed"))[0].attempts == 1
    await m.close()
