"""The reads and writes the service makes, as short transactions in SQLAlchemy Core.

Every chat turn goes through here twice (the incoming message, then the reply), so
these paths avoid the ORM's unit-of-work overhead and keep small in-process caches
of rows that never change once written (user and conversation ids).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import time

import numpy as np
from cachetools import LRUCache
from sqlalchemy import case, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import create_engine, create_thread_engine
from db.models import Conversation, MediaAsset, Memory, Message, Persona, PlatformUser, Relationship, utcnow

log = logging.getLogger(__name__)

ID_CACHE_SIZE = 50_000
# Memories kept per person and persona; past this the least important (then oldest) go.
MAX_MEMORIES_PER_PERSON = 500
# The outbox: seconds a new reply is left to the turn that made it before the sweeper may
# take it, and how long a sender holds a reply it is sending before others may retry it.
OUTBOX_GRACE = 15.0
OUTBOX_LEASE = 60.0


def new_memory_version() -> int:
    """A memory version no earlier relationship can have had: microseconds since the
    epoch. A relationship's first memory takes one; later ones count up from it by one a
    write, which is always slower than a microsecond, so a person forgotten and met again
    never gets back a version that a worker's recall cache still holds."""
    return time.time_ns() // 1000

P, U, R, C, M, MEM, MA = (
    t.__table__ for t in (Persona, PlatformUser, Relationship, Conversation, Message, Memory, MediaAsset)
)


@dataclass(frozen=True, slots=True)
class RelationshipRow:
    id: int
    persona_id: int
    user_id: int
    first_seen: datetime
    last_seen: datetime
    message_count: int
    affinity: float
    facts: list[Any]
    consent: dict[str, Any]
    blocked: bool
    memory_version: int
    turns_since_memory: int


@dataclass(frozen=True, slots=True)
class Incoming:
    """The outcome of storing an incoming message."""

    message_id: int
    conversation_id: int
    user_id: int
    relationship: RelationshipRow
    # "new": stored and claimed for answering; "retry": stored earlier but never
    # answered, claimed now; "duplicate": answered or being answered already.
    state: str
    # This message completes ``memory_every`` turns: time for a memory summary.
    memory_due: bool = False


@dataclass(frozen=True, slots=True)
class HistoryItem:
    id: int
    role: str
    text: str
    user_id: int | None


@dataclass(frozen=True, slots=True)
class MemoryRow:
    id: int
    text: str
    importance: float
    source: str
    created_at: datetime


class Store:
    def __init__(self, engine: AsyncEngine, read_engine: AsyncEngine | None = None, thread_engine: Engine | None = None):
        self.engine = engine
        # The per-turn hot paths run each whole transaction in one worker-thread call on a
        # blocking driver: aiosqlite would hop threads for every statement.
        url = engine.url.render_as_string(hide_password=False)
        self.thread_engine = thread_engine or create_thread_engine(url)
        # SQLite reads in threads skip BEGIN IMMEDIATE, as the async read engine does.
        self.thread_reader = create_thread_engine(url, readonly=True) if engine.dialect.name == "sqlite" else self.thread_engine
        # Reads go through their own engine: on SQLite it skips BEGIN IMMEDIATE, so
        # reads never wait for the write lock.
        self.read_engine = read_engine or engine
        self.dialect = engine.dialect.name
        # One writer at a time in this process: waiting on an asyncio lock is cheaper
        # than SQLite's sleep-and-retry on a busy database.
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None
        # Bounded caches of ids that never change once written (a forgotten person's row
        # may go: see store_incoming's retry).
        self._users: LRUCache = LRUCache(maxsize=ID_CACHE_SIZE)
        self._convs: LRUCache = LRUCache(maxsize=ID_CACHE_SIZE)
        self._personas: dict[str, int] = {}

    @classmethod
    def from_url(cls, url: str, **kwargs) -> Store:
        engine = create_engine(url, **kwargs)
        reader = create_engine(url, readonly=True, **kwargs) if engine.dialect.name == "sqlite" else None
        return cls(engine, reader)

    async def close(self) -> None:
        await asyncio.to_thread(self.thread_engine.dispose)
        if self.thread_reader is not self.thread_engine:
            await asyncio.to_thread(self.thread_reader.dispose)
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()

    @contextlib.asynccontextmanager
    async def write(self):
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite, serialised in process)."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
        else:
            async with self._write_lock, self.engine.begin() as conn:
                yield conn

    def read(self):
        """A read-only connection (a consistent snapshot on SQLite's WAL)."""
        return self.read_engine.connect()

    def _in_tx(self, fn):
        with self.thread_engine.begin() as conn:
            return fn(conn)

    def _in_read(self, fn):
        with self.thread_reader.connect() as conn:
            return fn(conn)

    async def _write_sync(self, fn):
        """Run ``fn(connection)`` as one write transaction in a worker thread."""
        if self._write_lock is None:
            return await asyncio.to_thread(self._in_tx, fn)
        async with self._write_lock:
            return await asyncio.to_thread(self._in_tx, fn)

    async def _read_sync(self, fn):
        return await asyncio.to_thread(self._in_read, fn)

    def _insert(self, table):
        return (sqlite_insert if self.dialect == "sqlite" else pg_insert)(table)

    # -- personas ---------------------------------------------------------------

    async def ensure_persona(self, slug: str, name: str, card: dict[str, Any], source: str | None) -> int:
        async with self.write() as conn:
            stmt = self._insert(P).values(slug=slug, name=name, card=card, source=source, created_at=utcnow(), updated_at=utcnow())
            stmt = stmt.on_conflict_do_update(
                index_elements=[P.c.slug], set_={"name": name, "card": card, "source": source, "updated_at": utcnow()}
            ).returning(P.c.id)
            pid = (await conn.execute(stmt)).scalar_one()
        self._personas[slug] = pid
        return pid

    async def persona_id(self, slug: str) -> int | None:
        if slug in self._personas:
            return self._personas[slug]
        async with self.read() as conn:
            pid = (await conn.execute(select(P.c.id).where(P.c.slug == slug))).scalar()
        if pid is not None:
            self._personas[slug] = pid
        return pid

    # -- incoming -----------------------------------------------------------------

    def _user_id(self, conn: Connection, platform: str, uid: str, name: str | None) -> int:
        key = (platform, uid)
        cached = self._users.get(key)
        if cached is not None:
            return cached
        found = (
            conn.execute(select(U.c.id).where(U.c.platform == platform, U.c.platform_user_id == uid))
        ).scalar()
        if found is not None:
            return found
        stmt = (
            self._insert(U)
            .values(platform=platform, platform_user_id=uid, display_name=name, created_at=utcnow())
            .on_conflict_do_nothing(index_elements=[U.c.platform, U.c.platform_user_id])
            .returning(U.c.id)
        )
        user_id = (conn.execute(stmt)).scalar()
        if user_id is None:
            user_id = (
                conn.execute(select(U.c.id).where(U.c.platform == platform, U.c.platform_user_id == uid))
            ).scalar_one()
        return user_id

    def _conversation_id(
        self, conn: Connection, persona_id: int, platform: str, chat: str, kind: str, title: str | None
    ) -> int:
        key = (persona_id, platform, chat)
        cached = self._convs.get(key)
        if cached is not None:
            return cached
        found = (
            conn.execute(
                select(C.c.id).where(C.c.persona_id == persona_id, C.c.platform == platform, C.c.platform_chat_id == chat)
            )
        ).scalar()
        if found is not None:
            return found
        stmt = (
            self._insert(C)
            .values(persona_id=persona_id, platform=platform, platform_chat_id=chat, kind=kind, title=title, created_at=utcnow())
            .on_conflict_do_nothing(index_elements=[C.c.persona_id, C.c.platform, C.c.platform_chat_id])
            .returning(C.c.id)
        )
        cid = (conn.execute(stmt)).scalar()
        if cid is None:
            cid = (
                conn.execute(
                    select(C.c.id).where(C.c.persona_id == persona_id, C.c.platform == platform, C.c.platform_chat_id == chat)
                )
            ).scalar_one()
        return cid

    async def store_incoming(
        self,
        persona_id: int,
        *,
        platform: str,
        chat_id: str,
        chat_kind: str,
        chat_title: str | None,
        user_id: str,
        user_name: str | None,
        text: str,
        platform_message_id: str | None,
        reply_to_platform_id: str | None = None,
        media: list[Any] | None = None,
        count_turn: bool = True,
        memory_every: int = 0,
    ) -> Incoming:
        """Store a person's message before anything else happens, and claim it for answering."""
        now = utcnow()

        def tx(conn: Connection) -> tuple:
            uid = self._user_id(conn, platform, user_id, user_name)
            cid = self._conversation_id(conn, persona_id, platform, chat_id, chat_kind, chat_title)
            reply_to = None
            if reply_to_platform_id:
                reply_to = (
                    conn.execute(
                        select(M.c.id).where(M.c.conversation_id == cid, M.c.platform_message_id == reply_to_platform_id)
                    )
                ).scalar()
            values = dict(
                conversation_id=cid, user_id=uid, role="user", text=text, platform_message_id=platform_message_id,
                reply_to_id=reply_to, media=media or [], status="processing", created_at=now,
            )
            ins = self._insert(M).values(**values)
            if platform_message_id is not None:
                ins = ins.on_conflict_do_nothing(index_elements=[M.c.conversation_id, M.c.platform_message_id])
            mid = (conn.execute(ins.returning(M.c.id))).scalar()
            state = "new"
            if mid is None:
                # Delivered before: answer only if the earlier delivery never was.
                claimed = (
                    conn.execute(
                        update(M)
                        .where(
                            M.c.conversation_id == cid,
                            M.c.platform_message_id == platform_message_id,
                            M.c.status.in_(("received", "failed")),
                        )
                        .values(status="processing", error=None)
                        .returning(M.c.id)
                    )
                ).scalar()
                if claimed is None:
                    mid = (
                        conn.execute(
                            select(M.c.id).where(M.c.conversation_id == cid, M.c.platform_message_id == platform_message_id)
                        )
                    ).scalar_one()
                    state = "duplicate"
                else:
                    mid, state = claimed, "retry"
            if state == "new":
                conn.execute(
                    update(C).where(C.c.id == cid).values(last_message_at=now)
                )
            counted = state == "new" and count_turn
            rel = self._touch_relationship(conn, persona_id, uid, now, counted, memory_every)
            return uid, cid, mid, state, counted, rel

        try:
            uid, cid, mid, state, counted, rel = await self._write_sync(tx)
        except IntegrityError:
            # Another process forgot this person (their row is gone) after this one cached
            # the id: look it up afresh, once.
            self._users.pop((platform, user_id), None)
            self._convs.pop((persona_id, platform, chat_id), None)
            uid, cid, mid, state, counted, rel = await self._write_sync(tx)
        # Cache only committed ids: a concurrent turn must never reference a row another
        # transaction may still roll back (a foreign-key error on PostgreSQL).
        self._users[(platform, user_id)] = uid
        self._convs[(persona_id, platform, chat_id)] = cid
        due = counted and memory_every > 0 and rel.turns_since_memory == 0
        return Incoming(mid, cid, uid, rel, state, due)

    def _touch_relationship(
        self, conn: Connection, persona_id: int, uid: int, now: datetime, count: bool, memory_every: int = 0
    ) -> RelationshipRow:
        inc = 1 if count else 0
        turns = R.c.turns_since_memory + inc
        if memory_every > 0:
            # Wraps to 0 on the turn that completes a memory period (read back by the caller).
            turns = case((R.c.turns_since_memory + inc >= memory_every, 0), else_=R.c.turns_since_memory + inc)
        stmt = self._insert(R).values(
            persona_id=persona_id, user_id=uid, first_seen=now, last_seen=now, message_count=inc,
            affinity=0.01 * inc, facts=[], consent={}, blocked=False, memory_version=0, turns_since_memory=inc,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[R.c.persona_id, R.c.user_id],
            set_={
                "last_seen": now,
                "message_count": R.c.message_count + inc,
                "turns_since_memory": turns,
                # Warmth grows a little with every exchange, up to 1.
                "affinity": func.min(R.c.affinity + 0.01 * inc, 1.0) if self.dialect == "sqlite" else func.least(R.c.affinity + 0.01 * inc, 1.0),
            },
        ).returning(*R.c)
        row = (conn.execute(stmt)).one()
        return RelationshipRow(**row._mapping)

    async def relationship(self, persona_id: int, uid: int) -> RelationshipRow | None:
        async with self.read() as conn:
            row = (await conn.execute(select(R).where(R.c.persona_id == persona_id, R.c.user_id == uid))).first()
        return RelationshipRow(**row._mapping) if row else None

    async def find_user(self, platform: str, platform_user_id: str) -> int | None:
        key = (platform, platform_user_id)
        if key in self._users:
            return self._users[key]
        async with self.read() as conn:
            return (
                await conn.execute(select(U.c.id).where(U.c.platform == platform, U.c.platform_user_id == platform_user_id))
            ).scalar()

    async def update_relationship(self, persona_id: int, uid: int, **values: Any) -> None:
        async with self.write() as conn:
            await conn.execute(update(R).where(R.c.persona_id == persona_id, R.c.user_id == uid).values(**values))

    # -- history and replies --------------------------------------------------------

    async def history(self, conversation_id: int, limit: int, before_id: int | None = None) -> list[HistoryItem]:
        """The last ``limit`` messages of a conversation, oldest first."""
        q = select(M.c.id, M.c.role, M.c.text, M.c.user_id).where(M.c.conversation_id == conversation_id,
                                                                 M.c.status != "swiped")
        if before_id is not None:
            q = q.where(M.c.id < before_id)
        q = q.order_by(M.c.id.desc()).limit(limit)

        def read(conn: Connection) -> list:
            return conn.execute(q).all()

        rows = await self._read_sync(read)
        return [HistoryItem(*r) for r in reversed(rows)]

    async def store_reply(
        self, conversation_id: int, incoming_id: int | None, text: str, *, media: list[Any] | None = None,
        status: str = "due", incoming_status: str = "answered", error: str | None = None,
        sweep_after: float = OUTBOX_GRACE,
    ) -> int:
        """Store a reply as due for delivery (the outbox) and mark what it answers.
        The turn's own adapter delivers it at once; the outbox sweeper takes it only if
        it is still due ``sweep_after`` seconds from now (a crash in between)."""
        now = utcnow()

        def tx(conn: Connection) -> int:
            rid = conn.execute(
                M.insert()
                .values(conversation_id=conversation_id, user_id=None, role="assistant", text=text,
                        reply_to_id=incoming_id, media=media or [], status=status, created_at=now,
                        next_try_at=now + timedelta(seconds=sweep_after))
                .returning(M.c.id)
            ).scalar_one()
            if incoming_id is not None:
                conn.execute(update(M).where(M.c.id == incoming_id).values(status=incoming_status, error=error))
            return rid

        return await self._write_sync(tx)

    # -- the outbox ------------------------------------------------------------------------

    async def claim_reply(self, message_id: int, lease: float = OUTBOX_LEASE) -> int | None:
        """Take a due reply for sending (or one whose sender's lease ran out): returns how
        many of its parts were already delivered, or None when it is not ours to send
        (delivered, being sent by someone else, dropped)."""
        now = utcnow()
        async with self.write() as conn:
            return (
                await conn.execute(
                    update(M)
                    .where(
                        M.c.id == message_id,
                        (M.c.status == "due") | ((M.c.status == "sending") & (M.c.next_try_at <= now)),
                    )
                    .values(status="sending", next_try_at=now + timedelta(seconds=lease), attempts=M.c.attempts + 1)
                    .returning(M.c.parts_done)
                )
            ).scalar()

    async def reply_part_delivered(
        self, message_id: int, parts_done: int, platform_message_id: str | None, *, last: bool
    ) -> None:
        """One part (a media file, a text chunk) reached the platform: one UPDATE, the only
        step between the platform's answer and the record of it."""
        values: dict[str, Any] = {"parts_done": parts_done}
        if platform_message_id is not None:
            values["platform_message_id"] = func.coalesce(M.c.platform_message_id, platform_message_id)
        if last:
            values.update(status="delivered", delivered_at=utcnow(), error=None, next_try_at=None)
        async with self.write() as conn:
            await conn.execute(update(M).where(M.c.id == message_id, M.c.status == "sending").values(**values))

    async def reply_retry_later(self, message_id: int, error: str, delay: float) -> None:
        """A transient failure (a 5xx, a reset, a timeout): due again after ``delay`` s."""
        async with self.write() as conn:
            await conn.execute(
                update(M).where(M.c.id == message_id, M.c.status == "sending")
                .values(status="due", error=error[:2000], next_try_at=utcnow() + timedelta(seconds=delay))
            )

    async def reply_failed(self, message_id: int, error: str) -> None:
        """The platform refused the reply for good (blocked by the person, a bad request)."""
        async with self.write() as conn:
            await conn.execute(
                update(M).where(M.c.id == message_id, M.c.status.in_(("due", "sending")))
                .values(status="failed", error=error[:2000], next_try_at=None)
            )

    async def due_replies(
        self, platform: str, persona_slug: str, limit: int = 50, *, made_before: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Replies the outbox should send now for one adapter, oldest first: due ones
        whose time has come and ones whose sender's lease ran out (a crash mid-send).
        ``made_before`` (this process's start): due replies made before it are taken at
        once, since no turn of this process is about to deliver them."""
        now = utcnow()
        ready = M.c.next_try_at <= now
        if made_before is not None:
            ready = ready | ((M.c.status == "due") & (M.c.created_at < made_before) & (M.c.attempts == 0))
        Q = M.alias("q")  # the message each reply answers, for its platform id
        query = (
            select(M.c.id, M.c.text, M.c.media, M.c.created_at, M.c.attempts, C.c.platform_chat_id,
                   Q.c.platform_message_id.label("reply_to"))
            .join(C, C.c.id == M.c.conversation_id)
            .join(P, P.c.id == C.c.persona_id)
            .outerjoin(Q, Q.c.id == M.c.reply_to_id)
            .where(M.c.status.in_(("due", "sending")), ready,
                   C.c.platform == platform, P.c.slug == persona_slug)
            .order_by(M.c.id)
            .limit(limit)
        )
        async with self.read() as conn:
            return [dict(r._mapping) for r in (await conn.execute(query)).all()]

    async def drop_stale_replies(self, max_age: float) -> list[int]:
        """Replies still undelivered ``max_age`` seconds after they were made are dropped
        (a late answer to an old message is worse than none); returns their ids."""
        cutoff = utcnow() - timedelta(seconds=max_age)
        async with self.write() as conn:
            return list((
                await conn.execute(
                    update(M)
                    .where(M.c.status.in_(("due", "sending")), M.c.next_try_at <= utcnow(), M.c.created_at < cutoff)
                    .values(status="dropped", next_try_at=None)
                    .returning(M.c.id)
                )
            ).scalars())

    async def outbox_depth(self) -> int:
        async with self.read() as conn:
            return (await conn.execute(select(func.count()).select_from(M).where(M.c.status.in_(("due", "sending"))))).scalar_one()

    async def set_platform_message_id(self, message_id: int, platform_message_id: str) -> None:
        async with self.write() as conn:
            await conn.execute(update(M).where(M.c.id == message_id).values(platform_message_id=platform_message_id))

    async def mark_incoming(self, message_id: int, status: str, error: str | None = None) -> None:
        async with self.write() as conn:
            await conn.execute(update(M).where(M.c.id == message_id).values(status=status, error=error))

    async def release_stale_claims(self) -> int:
        """At start-up: messages left "processing" by a crashed run become answerable again."""
        async with self.write() as conn:
            res = await conn.execute(update(M).where(M.c.status == "processing").values(status="received"))
        return res.rowcount or 0

    async def unanswered(self, persona_id: int, limit: int = 100) -> list[dict[str, Any]]:
        """Incoming messages stored but never answered (failed or interrupted)."""
        q = (
            select(M.c.id, M.c.text, M.c.platform_message_id, M.c.status, C.c.platform, C.c.platform_chat_id, U.c.platform_user_id)
            .join(C, C.c.id == M.c.conversation_id)
            .join(U, U.c.id == M.c.user_id)
            .where(C.c.persona_id == persona_id, M.c.role == "user", M.c.status.in_(("received", "failed")))
            .order_by(M.c.id)
            .limit(limit)
        )
        async with self.read() as conn:
            return [dict(r._mapping) for r in (await conn.execute(q)).all()]

    async def message(self, message_id: int) -> dict[str, Any] | None:
        async with self.read() as conn:
            row = (await conn.execute(select(M).where(M.c.id == message_id))).first()
        return dict(row._mapping) if row else None

    async def add_media_asset(
        self, *, persona_id: int | None, kind: str, path: str, mime: str, generator: str | None,
        parameters: dict[str, Any], seed: int | None = None, duration: float | None = None, sha256: str | None = None,
    ) -> int:
        """Record a generated file (its hash is computed here when not given)."""
        if sha256 is None:
            import hashlib

            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            sha256 = h.hexdigest()
        async with self.write() as conn:
            return (
                await conn.execute(
                    MA.insert()
                    .values(persona_id=persona_id, kind=kind, path=path, sha256=sha256, mime=mime, duration=duration,
                            generator=generator, parameters=parameters, seed=seed, created_at=utcnow())
                    .returning(MA.c.id)
                )
            ).scalar_one()

    async def persona_stats(self, persona_id: int) -> dict[str, int]:
        async with self.read() as conn:
            people = (await conn.execute(select(func.count()).select_from(R).where(R.c.persona_id == persona_id))).scalar_one()
            msgs = (
                await conn.execute(
                    select(func.count()).select_from(M.join(C, C.c.id == M.c.conversation_id)).where(C.c.persona_id == persona_id)
                )
            ).scalar_one()
            open_ = (
                await conn.execute(
                    select(func.count()).select_from(M.join(C, C.c.id == M.c.conversation_id))
                    .where(C.c.persona_id == persona_id, M.c.status.in_(("received", "failed")))
                )
            ).scalar_one()
            mems = (await conn.execute(select(func.count()).select_from(MEM).where(MEM.c.persona_id == persona_id))).scalar_one()
        return {"people": people, "messages": msgs, "memories": mems, "unanswered": open_}

    async def count_messages(self, persona_id: int | None = None, user_id: int | None = None) -> int:
        q = select(func.count()).select_from(M.join(C, C.c.id == M.c.conversation_id))
        if persona_id is not None:
            q = q.where(C.c.persona_id == persona_id)
        if user_id is not None:
            q = q.where(M.c.user_id == user_id)
        async with self.read() as conn:
            return (await conn.execute(q)).scalar_one()

    # -- memories ---------------------------------------------------------------------

    async def add_memories(
        self, persona_id: int, uid: int, items: list[tuple[str, np.ndarray, float, str, int | None]]
    ) -> tuple[list[int], int]:
        """Insert (text, embedding, importance, source, source message id) rows; returns
        their ids and the person's new memory version."""
        if not items:
            return [], -1
        now = utcnow()
        rows = [
            dict(persona_id=persona_id, user_id=uid, text=text, embedding=np.asarray(vec, dtype=np.float32).tobytes(),
                 importance=importance, source=source, source_message_id=src_id, created_at=now)
            for text, vec, importance, source, src_id in items
        ]
        def tx(conn: Connection) -> tuple[list[int], int | None]:
            result = conn.execute(MEM.insert().returning(MEM.c.id, sort_by_parameter_order=True), rows)
            ids = [r[0] for r in result.all()]
            # Over the cap: the least important, then oldest, memories make room.
            keep = (
                select(MEM.c.id).where(MEM.c.persona_id == persona_id, MEM.c.user_id == uid)
                .order_by(MEM.c.importance.desc(), MEM.c.id.desc()).limit(MAX_MEMORIES_PER_PERSON)
            )
            dropped = conn.execute(
                delete(MEM).where(MEM.c.persona_id == persona_id, MEM.c.user_id == uid, MEM.c.id.not_in(keep.scalar_subquery()))
            ).rowcount or 0
            # +2 when rows went: a recall cache must reload rather than append
            step = 2 if dropped else 1
            version = (
                conn.execute(
                    update(R).where(R.c.persona_id == persona_id, R.c.user_id == uid)
                    .values(memory_version=case((R.c.memory_version == 0, new_memory_version()), else_=R.c.memory_version + step))
                    .returning(R.c.memory_version)
                )
            ).scalar()
            return ids, version

        ids, version = await self._write_sync(tx)
        return ids, (version if version is not None else -1)

    async def memory_matrix(
        self, persona_id: int, uid: int, after_id: int = 0
    ) -> tuple[int, int, np.ndarray, np.ndarray, list[str], np.ndarray]:
        """(version, total count, ids, unit vectors, texts, importance) of one person's
        memories with ids above ``after_id`` (all of them by default)."""
        def read(conn: Connection):
            version = (
                conn.execute(select(R.c.memory_version).where(R.c.persona_id == persona_id, R.c.user_id == uid))
            ).scalar() or 0
            where = (MEM.c.persona_id == persona_id, MEM.c.user_id == uid)
            total = conn.execute(select(func.count()).select_from(MEM).where(*where)).scalar_one()
            rows = (
                conn.execute(
                    select(MEM.c.id, MEM.c.embedding, MEM.c.text, MEM.c.importance)
                    .where(*where, MEM.c.id > after_id)
                    .order_by(MEM.c.id)
                )
            ).all()
            return version, total, rows

        version, total, rows = await self._read_sync(read)
        if not rows:
            return version, total, np.zeros(0, np.int64), np.zeros((0, 0), np.float32), [], np.zeros(0, np.float32)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        mat = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
        imp = np.fromiter((r[3] for r in rows), dtype=np.float32, count=len(rows))
        return version, total, ids, mat, [r[2] for r in rows], imp

    async def list_memories(self, persona_id: int, uid: int, limit: int = 50) -> list[MemoryRow]:
        async with self.read() as conn:
            rows = (
                await conn.execute(
                    select(MEM.c.id, MEM.c.text, MEM.c.importance, MEM.c.source, MEM.c.created_at)
                    .where(MEM.c.persona_id == persona_id, MEM.c.user_id == uid)
                    .order_by(MEM.c.importance.desc(), MEM.c.id.desc())
                    .limit(limit)
                )
            ).all()
        return [MemoryRow(*r) for r in rows]

    async def delete_memory(self, persona_id: int, uid: int, memory_id: int) -> bool:
        """Erase one memory; the person's memory version moves on, so every recall cache reloads."""
        def tx(conn: Connection) -> bool:
            gone = conn.execute(delete(MEM).where(MEM.c.id == memory_id, MEM.c.persona_id == persona_id,
                                                  MEM.c.user_id == uid)).rowcount or 0
            if gone:
                conn.execute(update(R).where(R.c.persona_id == persona_id, R.c.user_id == uid)
                             .values(memory_version=R.c.memory_version + 2))
            return gone > 0

        return await self._write_sync(tx)

    async def forget_user(self, persona_id: int, uid: int) -> dict[str, Any]:
        """Delete everything this persona holds about one person: their messages, the
        character's replies to them, the media made for those replies (their rows; the
        files come back in ``"files"`` for the caller to delete, those no other record
        uses), their memories, the relationship itself, and their platform user row when
        no other persona knows them."""
        def tx(conn: Connection) -> dict[str, Any]:
            conv_ids = select(C.c.id).where(C.c.persona_id == persona_id).scalar_subquery()
            theirs = select(M.c.id, M.c.conversation_id).where(M.c.conversation_id.in_(conv_ids), M.c.user_id == uid)
            rows = conn.execute(theirs).all()
            their_ids = [r[0] for r in rows]
            their_convs = sorted({r[1] for r in rows})
            replies = 0
            asset_ids: set[int] = set()
            for i in range(0, len(their_ids), 500):
                chunk = their_ids[i : i + 500]
                reply_rows = conn.execute(
                    select(M.c.id, M.c.media).where(M.c.role == "assistant", M.c.reply_to_id.in_(chunk))
                ).all()
                for _, media in reply_rows:
                    asset_ids.update(_asset_ids(media))
                replies += conn.execute(delete(M).where(M.c.id.in_([r[0] for r in reply_rows]))).rowcount or 0
                conn.execute(delete(M).where(M.c.id.in_(chunk)))
            # A private chat with no one's messages left goes entirely (greetings too).
            empty_private = select(C.c.id).where(
                C.c.id.in_(their_convs),
                C.c.kind == "private",
                ~select(M.c.id).where(M.c.conversation_id == C.c.id, M.c.role == "user").exists(),
            )
            conn.execute(delete(M).where(M.c.conversation_id.in_(empty_private)))
            files: list[str] = []
            if asset_ids:
                assets = conn.execute(select(MA.c.id, MA.c.path).where(MA.c.id.in_(sorted(asset_ids)))).all()
                conn.execute(delete(MA).where(MA.c.id.in_([a[0] for a in assets])))
                for _, path in assets:
                    # content-addressed files may be shared: keep one another record still names
                    if conn.execute(select(MA.c.id).where(MA.c.path == path).limit(1)).first() is None:
                        files.append(path)
            mems = conn.execute(delete(MEM).where(MEM.c.persona_id == persona_id, MEM.c.user_id == uid)).rowcount
            conn.execute(delete(R).where(R.c.persona_id == persona_id, R.c.user_id == uid))
            user_gone = False
            if conn.execute(select(R.c.id).where(R.c.user_id == uid).limit(1)).first() is None:
                # messages elsewhere (another persona's group chat) keep their text, not the person
                conn.execute(update(M).where(M.c.user_id == uid).values(user_id=None))
                user_gone = (conn.execute(delete(U).where(U.c.id == uid)).rowcount or 0) > 0
            return {"messages": len(their_ids), "replies": replies, "memories": mems or 0,
                    "media": len(asset_ids), "files": files, "user_removed": user_gone}

        counts = await self._write_sync(tx)
        if counts["user_removed"]:
            for key in [k for k, v in self._users.items() if v == uid]:
                self._users.pop(key, None)
        return counts

    # -- what the studio shows ---------------------------------------------------------------

    async def conversations(self, persona_id: int, limit: int = 200) -> list[dict[str, Any]]:
        """A persona's conversations, the latest first."""
        q = (select(C.c.id, C.c.platform, C.c.platform_chat_id, C.c.kind, C.c.title, C.c.last_message_at)
             .where(C.c.persona_id == persona_id)
             .order_by(C.c.last_message_at.desc().nulls_last(), C.c.id.desc()).limit(limit))
        async with self.read() as conn:
            return [dict(r._mapping) for r in (await conn.execute(q)).all()]

    async def conversation(self, conversation_id: int) -> dict[str, Any] | None:
        async with self.read() as conn:
            row = (await conn.execute(select(C).where(C.c.id == conversation_id))).first()
        return dict(row._mapping) if row else None

    async def conversation_id(self, persona_id: int, platform: str, chat_id: str) -> int | None:
        async with self.read() as conn:
            return (await conn.execute(select(C.c.id).where(
                C.c.persona_id == persona_id, C.c.platform == platform, C.c.platform_chat_id == chat_id))).scalar()

    async def page(self, conversation_id: int, limit: int = 50, before_id: int | None = None) -> list[dict[str, Any]]:
        """One page of a conversation, oldest first: the ``limit`` messages before
        ``before_id`` (the latest without it), with who wrote them and, on replies, how
        many alternatives (swipes) their message has. Alternatives not chosen are left out."""
        q = (select(M.c.id, M.c.role, M.c.text, M.c.media, M.c.status, M.c.created_at, M.c.reply_to_id,
                    M.c.user_id, U.c.display_name, U.c.platform_user_id)
             .select_from(M.outerjoin(U, U.c.id == M.c.user_id))
             .where(M.c.conversation_id == conversation_id, M.c.status != "swiped"))
        if before_id is not None:
            q = q.where(M.c.id < before_id)
        q = q.order_by(M.c.id.desc()).limit(limit)
        async with self.read() as conn:
            rows = [dict(r._mapping) for r in (await conn.execute(q)).all()]
            asked = sorted({r["reply_to_id"] for r in rows if r["role"] == "assistant" and r["reply_to_id"]})
            alts = await _text_replies(conn, asked) if asked else {}
        for r in rows:
            ids = alts.get(r["reply_to_id"], []) if r["role"] == "assistant" and not r["media"] else []
            r["alternatives"] = ids if len(ids) > 1 else []
        return list(reversed(rows))

    async def reply_context(self, reply_id: int) -> dict[str, Any] | None:
        """What regenerating a reply needs: the message it answered, its author and chat;
        None unless it is a text reply to a person's message and nothing came after it."""
        async with self.read() as conn:
            reply = (await conn.execute(select(M.c.id, M.c.role, M.c.reply_to_id, M.c.media, M.c.conversation_id)
                                        .where(M.c.id == reply_id))).first()
            if reply is None or reply.role != "assistant" or reply.reply_to_id is None or reply.media:
                return None
            later = (await conn.execute(select(M.c.id).where(
                M.c.conversation_id == reply.conversation_id, M.c.id > reply_id, M.c.status != "swiped").limit(1))).first()
            if later is not None:
                return None
            row = (await conn.execute(
                select(M.c.id.label("incoming_id"), M.c.text, M.c.platform_message_id, M.c.user_id,
                       M.c.conversation_id, C.c.persona_id, C.c.platform, C.c.platform_chat_id.label("chat_id"),
                       C.c.kind.label("chat_kind"), U.c.platform_user_id, U.c.display_name.label("user_name"))
                .select_from(M.join(C, C.c.id == M.c.conversation_id).join(U, U.c.id == M.c.user_id))
                .where(M.c.id == reply.reply_to_id, M.c.role == "user"))).first()
        return dict(row._mapping) if row else None

    async def set_alternative(self, reply_id: int, status: str) -> None:
        async with self.write() as conn:
            await conn.execute(update(M).where(M.c.id == reply_id, M.c.role == "assistant").values(status=status))

    async def choose_alternative(self, reply_id: int) -> bool:
        """Show ``reply_id`` as its message's answer; the other alternatives are kept, hidden."""
        async with self.write() as conn:
            to = (await conn.execute(select(M.c.reply_to_id).where(M.c.id == reply_id, M.c.role == "assistant"))).scalar()
            if to is None:
                return False
            ids = (await _text_replies(conn, [to])).get(to, [])
            if reply_id not in ids:
                return False
            await conn.execute(update(M).where(M.c.id.in_([i for i in ids if i != reply_id])).values(status="swiped"))
            await conn.execute(update(M).where(M.c.id == reply_id).values(status="delivered"))
        return True

    async def edit_message(self, message_id: int, text: str) -> bool:
        async with self.write() as conn:
            res = await conn.execute(update(M).where(M.c.id == message_id).values(text=text))
        return (res.rowcount or 0) > 0

    async def delete_message(self, message_id: int) -> bool:
        async with self.write() as conn:
            res = await conn.execute(delete(M).where(M.c.id == message_id))
        return (res.rowcount or 0) > 0

    async def media_asset(self, asset_id: int) -> dict[str, Any] | None:
        async with self.read() as conn:
            row = (await conn.execute(select(MA).where(MA.c.id == asset_id))).first()
        return dict(row._mapping) if row else None

    async def people(self, persona_id: int, limit: int = 200, offset: int = 0) -> list[dict[str, Any]]:
        """The people a persona knows, the most recently seen first, with how many memories it holds of each."""
        mems = (select(func.count()).select_from(MEM)
                .where(MEM.c.persona_id == persona_id, MEM.c.user_id == R.c.user_id).scalar_subquery())
        q = (select(R.c.user_id, R.c.first_seen, R.c.last_seen, R.c.message_count, R.c.affinity, R.c.facts,
                    R.c.blocked, U.c.platform, U.c.platform_user_id, U.c.display_name, mems.label("memories"))
             .select_from(R.join(U, U.c.id == R.c.user_id)).where(R.c.persona_id == persona_id)
             .order_by(R.c.last_seen.desc()).limit(limit).offset(offset))
        async with self.read() as conn:
            return [dict(r._mapping) for r in (await conn.execute(q)).all()]

    async def daily_counts(self, persona_id: int, since: datetime) -> dict[str, dict[str, int]]:
        """Per day (YYYY-MM-DD, UTC) since ``since``: messages people sent, replies, new people."""
        day = func.date(M.c.created_at)
        msgs = (select(day, M.c.role, func.count()).select_from(M.join(C, C.c.id == M.c.conversation_id))
                .where(C.c.persona_id == persona_id, M.c.created_at >= since, M.c.status != "swiped")
                .group_by(day, M.c.role))
        first = func.date(R.c.first_seen)
        new = (select(first, func.count()).where(R.c.persona_id == persona_id, R.c.first_seen >= since)
               .group_by(first))
        out: dict[str, dict[str, int]] = {}
        async with self.read() as conn:
            for d, role, n in (await conn.execute(msgs)).all():
                key = "received" if role == "user" else "sent"
                out.setdefault(str(d)[:10], {})[key] = out.get(str(d)[:10], {}).get(key, 0) + n
            for d, n in (await conn.execute(new)).all():
                out.setdefault(str(d)[:10], {})["people"] = n
        return out

    async def people_by_platform(self, persona_id: int) -> dict[str, int]:
        q = (select(U.c.platform, func.count()).select_from(R.join(U, U.c.id == R.c.user_id))
             .where(R.c.persona_id == persona_id).group_by(U.c.platform))
        async with self.read() as conn:
            return {p: n for p, n in (await conn.execute(q)).all()}

    # -- the studio's people pages (one person) ---------------------------------------------

    async def person(self, persona_id: int, uid: int) -> dict[str, Any] | None:
        """One person the persona knows (platform user ``uid``): who they are on their
        platform, with the relationship's numbers; None when the persona does not know them."""
        q = (select(R.c.user_id, R.c.first_seen, R.c.last_seen, R.c.message_count, R.c.affinity, R.c.facts,
                    R.c.blocked, U.c.platform, U.c.platform_user_id, U.c.display_name)
             .select_from(R.join(U, U.c.id == R.c.user_id)).where(R.c.persona_id == persona_id, R.c.user_id == uid))
        async with self.read() as conn:
            row = (await conn.execute(q)).first()
        return dict(row._mapping) if row else None


async def _text_replies(conn, incoming_ids: list[int]) -> dict[int, list[int]]:
    """The text replies (alternatives; not media a job delivered) to each message, in order."""
    out: dict[int, list[int]] = {}
    rows = (await conn.execute(select(M.c.id, M.c.reply_to_id, M.c.media)
                               .where(M.c.reply_to_id.in_(incoming_ids), M.c.role == "assistant").order_by(M.c.id))).all()
    for rid, to, media in rows:
        if not media:
            out.setdefault(to, []).append(rid)
    return out


def _asset_ids(media: Any) -> list[int]:
    """The media asset ids a message's ``media`` list points at."""
    out = []
    for item in media or []:
        if isinstance(item, dict) and isinstance(item.get("asset_id"), int):
            out.append(item["asset_id"])
    return out
