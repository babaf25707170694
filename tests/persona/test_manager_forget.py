"""/forget really forgets: media made for the person, their user row, and every
worker's recall cache; and the in-process state stays bounded."""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, select

from db.models import MediaAsset, Memory
from db.store import MAX_MEMORIES_PER_PERSON, Store
from persona.limits import Rate, RateLimiter
from persona.memory import MemoryStore
from tests.persona.test_manager import make, msg, registry  # noqa: F401 - the registry fixture


async def test_forget_deletes_the_media_made_for_the_person_and_its_files(store, registry, embedder, tmp_path):
    m = await make(store, registry, embedder)
    await m.handle(msg("hi there", user="a", name="Ala"))
    pid = await store.persona_id("mira")
    incoming = await store.store_incoming(pid, platform="telegram", chat_id="chat-a", chat_kind="private", chat_title=None,
                                          user_id="a", user_name="Ala", text="/art", platform_message_id="art-1")
    redraw = tmp_path / "redraw.png"
    redraw.write_bytes(b"\x89PNG their own photo, redrawn")
    asset = await store.add_media_asset(persona_id=pid, kind="image", path=str(redraw), mime="image/png",
                                        generator="lite", parameters={"init_image": "/tmp/their-photo.jpg"})
    await store.store_reply(incoming.conversation_id, incoming.message_id, "Drawn just for you.",
                            media=[{"kind": "image", "asset_id": asset, "path": str(redraw)}])
    # someone else's picture stays
    other = tmp_path / "other.png"
    other.write_bytes(b"\x89PNG someone else")
    keep = await store.add_media_asset(persona_id=pid, kind="image", path=str(other), mime="image/png",
                                       generator="lite", parameters={})

    counts = await m.forget("mira", "telegram", "a")

    assert counts["media"] == 1
    assert not redraw.exists() and other.exists()
    async with store.read() as conn:
        left = [r[0] for r in (await conn.execute(select(MediaAsset.id))).all()]
    assert left == [keep]
    assert await store.find_user("telegram", "a") is None


async def test_a_second_worker_never_recalls_a_forgotten_memory(store, embedder, db_url):
    """Two workers on one database: one forgets, the person comes back and tells one new
    thing; the other worker's cached index must not bring the old fact back."""
    other_store = Store.from_url(db_url)
    try:
        pid = await store.ensure_persona("mira", "Mira", {}, None)
        first, second = MemoryStore(store, embedder), MemoryStore(other_store, embedder)

        async def meet():
            inc = await store.store_incoming(pid, platform="telegram", chat_id="c", chat_kind="private", chat_title=None,
                                             user_id="a", user_name="Ala", text="hi", platform_message_id=None)
            return inc.user_id

        uid = await meet()
        await first.add(pid, uid, [("Ala lives in Gdansk.", 0.8, "fact")])
        q = (await first.batcher.embed(["where does Ala live"]))[0]
        version = (await store.relationship(pid, uid)).memory_version
        assert "Ala lives in Gdansk." in [t for t, _ in await second.recall(pid, uid, q, version=version)]

        await store.forget_user(pid, uid)
        first.forget(pid, uid)
        uid2 = await meet()
        await first.add(pid, uid2, [("Ala loves jazz.", 0.8, "fact")])
        version2 = (await store.relationship(pid, uid2)).memory_version
        assert version2 != version
        recalled = [t for t, _ in await second.recall(pid, uid2, q, version=version2)]
        assert recalled == ["Ala loves jazz."]
    finally:
        await other_store.close()


async def test_memories_per_person_are_capped_keeping_the_important_ones(store, embedder):
    pid = await store.ensure_persona("mira", "Mira", {}, None)
    inc = await store.store_incoming(pid, platform="telegram", chat_id="c", chat_kind="private", chat_title=None,
                                     user_id="a", user_name="Ala", text="hi", platform_message_id=None)
    rng = np.random.default_rng(0)
    vec = lambda: (v := rng.normal(size=384).astype(np.float32)) / np.linalg.norm(v)  # noqa: E731
    await store.add_memories(pid, inc.user_id, [("what matters most", vec(), 1.0, "fact", None)])
    for batch in range(3):
        await store.add_memories(pid, inc.user_id, [(f"small talk {batch}-{i}", vec(), 0.1, "fact", None) for i in range(200)])
    async with store.read() as conn:
        count = (await conn.execute(select(func.count()).select_from(Memory))).scalar_one()
    assert count == MAX_MEMORIES_PER_PERSON
    texts = [r.text for r in await store.list_memories(pid, inc.user_id, limit=1)]
    assert texts == ["what matters most"]


def test_rate_limiter_forgets_people_whose_window_has_passed():
    now = [0.0]
    limiter = RateLimiter(Rate(3, 60), clock=lambda: now[0], max_keys=1000)
    for i in range(5000):
        limiter.hit(("mira", "telegram", str(i)))
    assert len(limiter) <= 1000  # never more than max_keys, however many ids arrive
    now[0] = 61.0
    assert len(limiter) == 0  # everyone's window has passed
    # and limits still hold for someone active
    assert [limiter.hit(("mira", "telegram", "x")) for _ in range(5)] == ["allowed"] * 3 + ["limited", "silent"]
