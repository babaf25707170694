"""The outbox rows: claimed once, recorded part by part, retried, dropped when stale."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import update

from db.models import Message, utcnow
from persona.outbox import Outbox
from tests.db.test_store import PLATFORM, _persona, _say


async def _reply(store, text="hi there", *, sweep_after=0.0, media=None):
    pid = await _persona(store)
    inc = await _say(store, pid, "hello", mid="m1")
    rid = await store.store_reply(inc.conversation_id, inc.message_id, text, sweep_after=sweep_after, media=media)
    return pid, rid


async def test_a_reply_is_claimed_by_one_sender_only(store):
    _, rid = await _reply(store)
    claims = await asyncio.gather(*(store.claim_reply(rid) for _ in range(5)))
    assert sorted(c is not None for c in claims) == [False] * 4 + [True]
    assert (await store.message(rid))["status"] == "sending"


async def test_parts_are_recorded_and_a_lapsed_lease_resumes_after_them(store):
    _, rid = await _reply(store)
    assert await store.claim_reply(rid, lease=60) == 0
    await store.reply_part_delivered(rid, 1, "tg-10", last=False)
    assert await store.claim_reply(rid) is None  # still leased: nobody else sends it
    async with store.write() as conn:  # the sender died: its lease runs out
        await conn.execute(update(Message.__table__).where(Message.__table__.c.id == rid)
                           .values(next_try_at=utcnow() - timedelta(seconds=1)))
    assert await store.claim_reply(rid) == 1  # resumes after the part the platform confirmed
    await store.reply_part_delivered(rid, 2, "tg-11", last=True)
    row = await store.message(rid)
    assert (row["status"], row["parts_done"], row["platform_message_id"], row["attempts"]) == ("delivered", 2, "tg-10", 2)
    assert row["delivered_at"] is not None
    assert await store.claim_reply(rid) is None


async def test_due_replies_wait_for_their_turn_then_come_oldest_first(store):
    pid = await _persona(store)
    inc = await _say(store, pid, "hello", mid="m1")
    later = await store.store_reply(inc.conversation_id, inc.message_id, "not yet", sweep_after=60)
    now1 = await store.store_reply(inc.conversation_id, inc.message_id, "first", sweep_after=0)
    now2 = await store.store_reply(inc.conversation_id, inc.message_id, "second", sweep_after=0)
    rows = await store.due_replies(PLATFORM, "mira")
    assert [r["id"] for r in rows] == [now1, now2]
    assert rows[0]["platform_chat_id"] == "c1" and rows[0]["reply_to"] == "m1"
    assert await store.due_replies("discord", "mira") == [] and await store.due_replies(PLATFORM, "rook") == []
    # a process started after the reply was made takes it at once: no turn of its own holds it
    rows = await store.due_replies(PLATFORM, "mira", made_before=utcnow())
    assert [r["id"] for r in rows] == [later, now1, now2]
    await store.reply_retry_later(now1, "NetworkError: Bad Gateway", 60)  # not claimed: unchanged
    assert (await store.message(now1))["status"] == "due"
    await store.claim_reply(now1)
    await store.reply_retry_later(now1, "NetworkError: Bad Gateway", 60)
    row = await store.message(now1)
    assert row["status"] == "due" and "Bad Gateway" in row["error"]
    assert [r["id"] for r in await store.due_replies(PLATFORM, "mira")] == [now2]


async def test_stale_replies_are_dropped_not_sent_late(store, caplog):
    _, rid = await _reply(store)
    outbox = Outbox(store, max_age=3600)
    assert await outbox.drop_stale() == []
    async with store.write() as conn:
        await conn.execute(update(Message.__table__).where(Message.__table__.c.id == rid)
                           .values(created_at=utcnow() - timedelta(hours=2)))
    assert await outbox.drop_stale() == [rid]
    assert (await store.message(rid))["status"] == "dropped"
    assert f"reply {rid} was not delivered" in caplog.text
    assert await outbox.due(PLATFORM, "mira") == [] and await outbox.depth() == 0


async def test_a_stored_media_reply_comes_back_as_the_same_reply(store, tmp_path):
    from persona.outbox import media_record
    from persona.types import MediaFile

    photo = MediaFile(kind="image", path=str(tmp_path / "a.png"), mime="image/png", caption="Here you go!")
    _, rid = await _reply(store, "Here you go!", media=[media_record(photo, 7)])
    [reply] = await Outbox(store).due(PLATFORM, "mira")
    assert reply.media == (photo,) and reply.text == ""  # the caption rides with the picture
    assert (reply.chat_id, reply.reply_to_message_id, reply.message_db_id, reply.persona) == ("c1", "m1", rid, "mira")
