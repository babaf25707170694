"""Store behaviour a person chatting with a character would notice, on SQLite and PostgreSQL.

Every test gets an empty migrated database through the ``store`` fixture
(tests/conftest.py), once per backend.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import numpy as np
import pytest

from db.models import Conversation, utcnow
from db.store import Store

C = Conversation.__table__

PLATFORM = "telegram"


async def gather_all(*aws):
    """asyncio.gather that lets every task finish before re-raising the first error
    (no task left writing to a database the fixture is already tearing down)."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


async def _persona(store: Store, slug: str = "mira") -> int:
    return await store.ensure_persona(slug, slug.title(), {"name": slug.title()}, None)


async def _say(
    store: Store,
    pid: int,
    text: str = "hello",
    *,
    mid: str | None = "1",
    user: str = "u1",
    chat: str = "c1",
    kind: str = "private",
    **kw,
):
    return await store.store_incoming(
        pid,
        platform=PLATFORM,
        chat_id=chat,
        chat_kind=kind,
        chat_title=None if kind == "private" else "The group",
        user_id=user,
        user_name=user.upper(),
        text=text,
        platform_message_id=mid,
        **kw,
    )


# -- incoming ---------------------------------------------------------------------------


async def test_store_incoming_creates_user_conversation_relationship(store):
    pid = await _persona(store)
    long_text = "Ж" * 49_990 + "end-marker"  # 50,000 chars, multibyte
    assert len(long_text) == 50_000

    inc = await _say(store, pid, long_text, mid="m1")

    assert inc.state == "new"
    msg = await store.message(inc.message_id)
    assert msg["text"] == long_text
    assert msg["role"] == "user"
    assert msg["status"] == "processing"
    assert msg["conversation_id"] == inc.conversation_id
    assert msg["user_id"] == inc.user_id
    assert msg["platform_message_id"] == "m1"

    assert await store.find_user(PLATFORM, "u1") == inc.user_id
    # A fresh Store (another worker, or after a restart) finds the same rows.
    fresh = Store(store.engine)
    assert await fresh.find_user(PLATFORM, "u1") == inc.user_id

    rel = await store.relationship(pid, inc.user_id)
    assert rel is not None
    assert rel == inc.relationship
    assert rel.message_count == 1
    assert rel.turns_since_memory == 1
    assert rel.memory_version == 0
    assert rel.blocked is False
    assert rel.facts == [] and rel.consent == {}

    assert await store.count_messages(pid) == 1
    assert await store.count_messages(pid, inc.user_id) == 1


async def test_message_count_increments_per_new_message(store):
    pid = await _persona(store)
    for i in range(1, 6):
        inc = await _say(store, pid, f"message {i}", mid=str(i))
        assert inc.state == "new"
        assert inc.relationship.message_count == i
    rel = await store.relationship(pid, inc.user_id)
    assert rel.message_count == 5
    assert rel.last_seen >= rel.first_seen
    assert 0 < rel.affinity <= 1
    # One conversation, one user, five messages.
    ids = {(await _say(store, pid, "x", mid=str(i))).conversation_id for i in range(1, 3)}
    assert ids == {inc.conversation_id}
    assert await store.count_messages(pid) == 5


async def test_messages_without_platform_id_are_all_stored(store):
    pid = await _persona(store)
    a = await _say(store, pid, "one", mid=None)
    b = await _say(store, pid, "two", mid=None)
    assert a.state == b.state == "new"
    assert a.message_id != b.message_id
    assert b.relationship.message_count == 2


async def test_same_message_id_in_another_chat_is_a_new_message(store):
    pid = await _persona(store)
    a = await _say(store, pid, "hi", mid="7", chat="c1")
    b = await _say(store, pid, "hi", mid="7", chat="c2")
    assert a.state == b.state == "new"
    assert a.conversation_id != b.conversation_id


async def test_redelivered_message_is_a_duplicate(store):
    pid = await _persona(store)
    first = await _say(store, pid, "hello", mid="42")
    second = await _say(store, pid, "hello", mid="42")

    assert first.state == "new"
    assert second.state == "duplicate"
    assert second.message_id == first.message_id
    assert await store.count_messages(pid) == 1
    assert second.relationship.message_count == 1
    # Answered and then redelivered: still a duplicate, nobody answers twice.
    await store.store_reply(first.conversation_id, first.message_id, "hi there")
    third = await _say(store, pid, "hello", mid="42")
    assert third.state == "duplicate"
    assert (await store.message(first.message_id))["status"] == "answered"
    assert await store.count_messages(pid) == 2  # the message and the one reply


async def test_redelivery_after_failure_is_retried(store):
    pid = await _persona(store)
    first = await _say(store, pid, "hello", mid="42")
    await store.mark_incoming(first.message_id, "failed", "model timed out")
    assert (await store.message(first.message_id))["error"] == "model timed out"

    again = await _say(store, pid, "hello", mid="42")

    assert again.state == "retry"
    assert again.message_id == first.message_id
    msg = await store.message(first.message_id)
    assert msg["status"] == "processing"
    assert msg["error"] is None
    assert await store.count_messages(pid) == 1
    assert again.relationship.message_count == 1
    # Claimed by the retry: a further redelivery is a duplicate.
    assert (await _say(store, pid, "hello", mid="42")).state == "duplicate"


async def test_concurrent_delivery_of_one_message_is_stored_once(store):
    pid = await _persona(store)
    await _say(store, pid, "earlier message", mid="dup-0")  # an ongoing chat
    results = await gather_all(*(_say(store, pid, "hello", mid="dup-1") for _ in range(10)))

    states = Counter(r.state for r in results)
    assert states == {"new": 1, "duplicate": 9}
    assert len({r.message_id for r in results}) == 1
    assert await store.count_messages(pid) == 2
    rel = await store.relationship(pid, results[0].user_id)
    assert rel.message_count == 2


async def test_concurrent_delivery_of_a_first_message_is_stored_once(store, request):
    """Same, when it is the very first message from a new person (after a restart, say)."""
    pid = await _persona(store)
    results = await gather_all(*(_say(store, pid, "hello", mid="dup-1") for _ in range(10)))
    assert Counter(r.state for r in results) == {"new": 1, "duplicate": 9}
    assert await store.count_messages(pid) == 1
    assert (await store.relationship(pid, results[0].user_id)).message_count == 1


async def test_concurrent_first_messages_from_new_people(store, request):
    """Several new people write at once: each gets their own user and relationship."""
    pid = await _persona(store)
    results = await gather_all(
        *(_say(store, pid, "hi", mid=f"g{i}", user=f"p{i}", chat="group", kind="group") for i in range(10))
    )
    assert all(r.state == "new" for r in results)
    assert len({r.conversation_id for r in results}) == 1
    assert len({r.user_id for r in results}) == 10
    for r in results:
        assert (await store.relationship(pid, r.user_id)).message_count == 1


async def test_no_lost_updates_under_concurrent_messages(store):
    """40 tasks x 12 messages from one person: every single one is counted."""
    pid = await _persona(store)
    await _say(store, pid, "warm-up", mid=None, count_turn=False)  # user and chat exist

    async def burst(task: int) -> None:
        for i in range(12):
            inc = await _say(store, pid, f"{task}/{i}", mid=f"t{task}-{i}")
            assert inc.state == "new"

    await gather_all(*(burst(t) for t in range(40)))

    uid = await store.find_user(PLATFORM, "u1")
    rel = await store.relationship(pid, uid)
    assert rel.message_count == 480
    assert rel.turns_since_memory == 480
    assert await store.count_messages(pid) == 481


async def test_concurrent_quoting_replies_all_stored(store):
    """20 x 6 messages that each quote an earlier one: every transaction reads (the quoted
    message) before it writes. With a deferred BEGIN, SQLite fails these with "database is
    locked" (a stale WAL read snapshot cannot be upgraded); BEGIN IMMEDIATE keeps them safe."""
    pid = await _persona(store)
    root = await _say(store, pid, "who's up for a movie?", mid="root", count_turn=False)

    async def burst(task: int) -> None:
        for i in range(6):
            inc = await _say(store, pid, f"me! {task}/{i}", mid=f"t{task}-{i}", reply_to_platform_id="root")
            assert inc.state == "new"

    await gather_all(*(burst(t) for t in range(20)))

    assert (await store.relationship(pid, root.user_id)).message_count == 120
    assert await store.count_messages(pid) == 121
    last = (await store.history(root.conversation_id, 1))[0]
    assert (await store.message(last.id))["reply_to_id"] == root.message_id


async def test_no_lost_updates_from_a_cold_start(store, request):
    """Same, but the very first messages race to create the user, chat and relationship."""
    pid = await _persona(store)

    async def burst(task: int) -> None:
        for i in range(4):
            await _say(store, pid, f"{task}/{i}", mid=f"t{task}-{i}")

    await gather_all(*(burst(t) for t in range(10)))

    uid = await store.find_user(PLATFORM, "u1")
    assert (await store.relationship(pid, uid)).message_count == 40


async def test_count_turn_false_stores_without_counting(store):
    pid = await _persona(store)
    inc = await _say(store, pid, "just an edit", mid="e1", count_turn=False)
    assert inc.state == "new"
    assert inc.relationship.message_count == 0
    assert await store.count_messages(pid) == 1


async def test_reply_to_links_earlier_message(store):
    pid = await _persona(store)
    a = await _say(store, pid, "first", mid="1")
    b = await _say(store, pid, "re: first", mid="2", reply_to_platform_id="1")
    c = await _say(store, pid, "re: unknown", mid="3", reply_to_platform_id="999")
    assert (await store.message(b.message_id))["reply_to_id"] == a.message_id
    assert (await store.message(c.message_id))["reply_to_id"] is None


# -- history and replies ------------------------------------------------------------------


async def test_history_is_last_n_oldest_first(store):
    pid = await _persona(store)
    ids = []
    for i in range(10):
        inc = await _say(store, pid, f"q{i}", mid=str(i))
        rid = await store.store_reply(inc.conversation_id, inc.message_id, f"a{i}")
        ids += [inc.message_id, rid]
    cid = inc.conversation_id

    last = await store.history(cid, 4)
    assert [h.text for h in last] == ["q8", "a8", "q9", "a9"]
    assert [h.id for h in last] == ids[-4:]
    assert [h.role for h in last] == ["user", "assistant", "user", "assistant"]
    assert last[0].user_id == inc.user_id and last[1].user_id is None

    before = await store.history(cid, 3, before_id=ids[10])  # the three just before q5
    assert [h.text for h in before] == ["a3", "q4", "a4"]
    assert [h.text for h in await store.history(cid, 100, before_id=ids[2])] == ["q0", "a0"]
    assert await store.history(cid, 5, before_id=ids[0]) == []
    assert len(await store.history(cid, 100)) == 20

    # Another chat's messages never leak in.
    other = await _say(store, pid, "elsewhere", mid="x", chat="c2")
    assert [h.text for h in await store.history(other.conversation_id, 10)] == ["elsewhere"]
    assert (await store.history(cid, 1))[0].text == "a9"


async def test_store_reply_marks_incoming_answered(store):
    pid = await _persona(store)
    inc = await _say(store, pid, "how are you?", mid="1")
    rid = await store.store_reply(inc.conversation_id, inc.message_id, "great, you?")

    reply = await store.message(rid)
    assert reply["role"] == "assistant"
    assert reply["status"] == "due"  # in the outbox until the platform confirms it
    assert reply["reply_to_id"] == inc.message_id
    assert reply["text"] == "great, you?"
    assert (await store.message(inc.message_id))["status"] == "answered"

    await store.set_platform_message_id(rid, "tg-555")
    assert (await store.message(rid))["platform_message_id"] == "tg-555"
    assert await store.unanswered(pid) == []


async def test_stale_claims_released_and_listed_as_unanswered(store):
    pid = await _persona(store)
    a = await _say(store, pid, "one", mid="1")
    b = await _say(store, pid, "two", mid="2")
    c = await _say(store, pid, "three", mid="3")
    await store.store_reply(c.conversation_id, c.message_id, "answered three")
    other = await _persona(store, "other")
    await _say(store, other, "to someone else", mid="1")

    assert await store.unanswered(pid) == []  # "processing" is being answered right now
    # The process crashes mid-generation; on restart:
    released = await store.release_stale_claims()
    assert released == 3  # a, b, and the other persona's message
    assert (await store.message(a.message_id))["status"] == "received"

    rows = await store.unanswered(pid)
    assert [r["id"] for r in rows] == [a.message_id, b.message_id]
    assert rows[0]["text"] == "one"
    assert rows[0]["platform_message_id"] == "1"
    assert rows[0]["platform"] == PLATFORM
    assert rows[0]["platform_chat_id"] == "c1"
    assert rows[0]["platform_user_id"] == "u1"
    assert rows[0]["status"] == "received"
    assert len(await store.unanswered(pid, limit=1)) == 1

    await store.mark_incoming(b.message_id, "failed", "boom")
    assert [r["status"] for r in await store.unanswered(pid)] == ["received", "failed"]
    assert await store.release_stale_claims() == 0

    # The platform redelivers a: it is claimed once more for answering.
    assert (await _say(store, pid, "one", mid="1")).state == "retry"
    assert [r["id"] for r in await store.unanswered(pid)] == [b.message_id]


# -- memories ----------------------------------------------------------------------------


def _unit(rng: np.random.Generator, dim: int = 384) -> np.ndarray:
    v = rng.standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


async def test_memories_round_trip_exactly_and_bump_version(store):
    pid = await _persona(store)
    inc = await _say(store, pid, "I have a cat named Tofu", mid="1")
    uid = inc.user_id
    rng = np.random.default_rng(1234)
    vecs = [_unit(rng) for _ in range(3)]
    vecs[2][:4] = [np.float32(1e-38), np.float32(-0.0), np.float32(3.4e38), np.float32(np.pi)]

    v0, n0, ids0, mat0, texts0, imp0 = await store.memory_matrix(pid, uid)
    assert v0 == 0 and len(ids0) == 0 and texts0 == [] and mat0.shape[0] == 0 and len(imp0) == 0

    ids, new_version = await store.add_memories(
        pid,
        uid,
        [
            ("has a cat named Tofu", vecs[0], 0.9, "fact", inc.message_id),
            ("likes rainy days", vecs[1], 0.4, "fact", None),
            ("talked about cats", vecs[2], 0.6, "summary", None),
        ],
    )
    assert len(ids) == 3 and ids == sorted(ids) and new_version > 1_700_000_000_000_000  # a microsecond stamp

    version, total, mids, mat, texts, imp = await store.memory_matrix(pid, uid)
    assert total == 3
    assert version == new_version
    assert (await store.relationship(pid, uid)).memory_version == new_version
    assert mids.tolist() == ids
    assert texts == ["has a cat named Tofu", "likes rainy days", "talked about cats"]
    assert mat.dtype == np.float32 and mat.shape == (3, 384)
    assert mat.tobytes() == np.stack(vecs).tobytes()  # bit for bit
    assert imp.tolist() == pytest.approx([0.9, 0.4, 0.6])

    more, _ = await store.add_memories(pid, uid, [("plays the cello", _unit(rng), 0.4, "told", None)])
    assert (await store.memory_matrix(pid, uid))[0] == new_version + 1
    assert await store.add_memories(pid, uid, []) == ([], -1)
    assert (await store.memory_matrix(pid, uid))[0] == new_version + 1  # nothing added, no bump

    listed = await store.list_memories(pid, uid)
    # Most important first; equal importance: newest first.
    assert [m.id for m in listed] == [ids[0], ids[2], more[0], ids[1]]
    assert [m.text for m in listed][0] == "has a cat named Tofu"
    assert listed[2].source == "told" and listed[1].source == "summary"
    assert [m.id for m in await store.list_memories(pid, uid, limit=2)] == [ids[0], ids[2]]


async def test_memories_are_per_person_and_persona(store):
    pid = await _persona(store)
    other_persona = await _persona(store, "other")
    a = await _say(store, pid, "hi", mid="1", user="a")
    b = await _say(store, pid, "hi", mid="2", user="b")
    await _say(store, other_persona, "hi", mid="1", user="a")
    rng = np.random.default_rng(7)
    await store.add_memories(pid, a.user_id, [("a's fact", _unit(rng), 0.5, "fact", None)])

    assert (await store.memory_matrix(pid, b.user_id))[4] == []
    assert (await store.memory_matrix(other_persona, a.user_id))[4] == []
    assert (await store.memory_matrix(pid, b.user_id))[0] == 0
    assert (await store.memory_matrix(other_persona, a.user_id))[0] == 0
    assert [m.text for m in await store.list_memories(pid, a.user_id)] == ["a's fact"]


# -- forgetting -------------------------------------------------------------------------


async def test_forget_user_removes_only_that_person(store):
    pid = await _persona(store)
    rng = np.random.default_rng(99)

    # A group chat with Alice and Bob, and a private chat with each.
    async def exchange(user: str, chat: str, kind: str, n: int, tag: str):
        out = []
        for i in range(n):
            inc = await _say(store, pid, f"{user} says {i}", mid=f"{tag}{i}", user=user, chat=chat, kind=kind)
            rid = await store.store_reply(inc.conversation_id, inc.message_id, f"reply to {user} {i}")
            out.append((inc, rid))
        return out

    alice_group = await exchange("alice", "g1", "group", 3, "ag")
    bob_group = await exchange("bob", "g1", "group", 2, "bg")
    alice_dm = await exchange("alice", "dm-alice", "private", 2, "ad")
    bob_dm = await exchange("bob", "dm-bob", "private", 2, "bd")
    alice, bob = alice_group[0][0].user_id, bob_group[0][0].user_id
    group = alice_group[0][0].conversation_id
    # Bob quotes one of Alice's messages; a reply from the character to no one in particular.
    bob_quote = await _say(store, pid, "quoting alice", mid="bq", user="bob", chat="g1", kind="group",
                           reply_to_platform_id="ag0")
    ambient = await store.store_reply(group, None, "good morning, everyone")

    await store.add_memories(pid, alice, [("alice likes jazz", _unit(rng), 0.7, "fact", alice_group[0][0].message_id),
                                          ("alice has a dog", _unit(rng), 0.5, "fact", None)])
    await store.add_memories(pid, bob, [("bob is a chef", _unit(rng), 0.8, "fact", bob_group[0][0].message_id)])
    bob_matrix = await store.memory_matrix(pid, bob)
    bob_rel = await store.relationship(pid, bob)
    bob_history = await store.history(group, 100)
    total = await store.count_messages(pid)

    result = await store.forget_user(pid, alice)

    assert result == {"messages": 5, "replies": 5, "memories": 2, "media": 0, "files": [], "user_removed": True}
    assert await store.count_messages(pid, alice) == 0
    assert await store.count_messages(pid) == total - 10
    for inc, rid in alice_group + alice_dm:
        assert await store.message(inc.message_id) is None
        assert await store.message(rid) is None
    assert await store.relationship(pid, alice) is None
    assert await store.list_memories(pid, alice) == []
    assert (await store.memory_matrix(pid, alice))[4] == []

    # Bob's side of the same group chat, and his private chat, are untouched.
    for inc, rid in bob_group + bob_dm:
        assert await store.message(inc.message_id) is not None
        assert await store.message(rid) is not None
    quote = await store.message(bob_quote.message_id)
    assert quote is not None and quote["reply_to_id"] is None  # the quoted message is gone
    assert await store.message(ambient) is not None
    assert [h.text for h in await store.history(group, 100)] == [
        h.text for h in bob_history if h.user_id != alice and not h.text.startswith("reply to alice")
    ]
    assert await store.relationship(pid, bob) == bob_rel
    after = await store.memory_matrix(pid, bob)
    assert after[4] == bob_matrix[4] == ["bob is a chef"]
    assert after[3].tobytes() == bob_matrix[3].tobytes()
    assert after[0] == bob_matrix[0]

    # Alice writes again later: she starts over as a stranger.
    back = await _say(store, pid, "hi again", mid="ad-new", user="alice", chat="dm-alice")
    assert back.state == "new"
    assert back.relationship.message_count == 1
    assert [h.text for h in await store.history(back.conversation_id, 10)] == ["hi again"]


async def test_forget_user_leaves_other_personas_alone(store):
    pid = await _persona(store)
    other = await _persona(store, "other")
    a = await _say(store, pid, "hi", mid="1", user="alice")
    b = await _say(store, other, "hi other", mid="1", user="alice")
    await store.add_memories(other, b.user_id, [("alice, seen by other", _unit(np.random.default_rng(3)), 0.5, "fact", None)])

    await store.forget_user(pid, a.user_id)

    assert await store.relationship(pid, a.user_id) is None
    assert (await store.relationship(other, b.user_id)).message_count == 1
    assert await store.message(b.message_id) is not None
    assert [m.text for m in await store.list_memories(other, b.user_id)] == ["alice, seen by other"]


async def test_forget_user_keeps_greetings_sent_to_others(store, request):
    """The character greeted Bob in a private chat he has not answered yet;
    forgetting Alice must not wipe that greeting."""
    pid = await _persona(store)
    alice = await _say(store, pid, "hi", mid="1", user="alice", chat="dm-alice")
    await store.store_reply(alice.conversation_id, alice.message_id, "hi alice")
    async with store.engine.begin() as conn:
        bob_chat = (
            await conn.execute(
                C.insert()
                .values(persona_id=pid, platform=PLATFORM, platform_chat_id="dm-bob", kind="private", created_at=utcnow())
                .returning(C.c.id)
            )
        ).scalar_one()
    greeting = await store.store_reply(bob_chat, None, "hey bob, long time no see!")

    await store.forget_user(pid, alice.user_id)

    assert await store.message(alice.message_id) is None
    assert await store.message(greeting) is not None, "forgetting Alice deleted the greeting in Bob's chat"


async def test_forget_user_clears_their_private_chat_entirely(store):
    """Forgetting someone also removes the character's greetings in their private chat."""
    pid = await _persona(store)
    dm = await _say(store, pid, "hi", mid="1", user="alice", chat="dm-alice")
    greeting = await store.store_reply(dm.conversation_id, None, "welcome back!")
    await store.store_reply(dm.conversation_id, dm.message_id, "hello alice")

    await store.forget_user(pid, dm.user_id)

    assert await store.history(dm.conversation_id, 100) == []
    assert await store.message(greeting) is None


async def test_timestamps_are_timezone_aware(store, request):
    """db/models.py promises aware UTC datetimes on every backend."""
    pid = await _persona(store)
    inc = await _say(store, pid, "hi", mid="1")
    await store.add_memories(pid, inc.user_id, [("fact", _unit(np.random.default_rng(0)), 0.5, "fact", None)])
    msg = await store.message(inc.message_id)
    rel = await store.relationship(pid, inc.user_id)
    mem = (await store.list_memories(pid, inc.user_id))[0]
    for ts in (msg["created_at"], rel.first_seen, rel.last_seen, inc.relationship.last_seen, mem.created_at):
        assert ts.tzinfo is not None and ts.utcoffset() == timedelta(0)
    assert abs(utcnow() - msg["created_at"]) < timedelta(minutes=1)
