"""The posts table: the content calendar and its publishing leases.

A due approved post is claimed with one ``UPDATE ... RETURNING`` (the candidates picked
``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serialises
writers), so two service processes never publish one post. Before each part goes on the
wire its number is written down (``sending_part``); when the platform confirms it, its
message id. A claim whose lease ran out is taken over: published if no send had started,
``unconfirmed`` if one may have left (the operator decides; it is never posted twice).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from db.models import Post, utcnow
from db.store import Store

T = Post.__table__
EDITABLE = ("draft", "pending", "approved", "failed", "unconfirmed", "rejected", "missed")
STATES = ("draft", "pending", "approved", "publishing", "published", "failed", "unconfirmed", "rejected", "missed")


@dataclass(frozen=True, slots=True)
class PostRow:
    id: int
    persona_id: int
    platform: str
    channel: str
    chat_id: str | None
    status: str
    due_at: datetime
    zone: str | None
    slot_key: str | None
    content: dict[str, Any]
    job_id: int | None
    worker: str | None
    lease_until: datetime | None
    attempts: int
    next_try_at: datetime | None
    parts_sent: int
    sending_part: int | None
    message_ids: list[Any] | None
    reactions: dict[str, Any] | None
    approved_by: str | None
    notified: bool
    claimed_at: datetime | None
    posted_at: datetime | None
    error: str | None
    created_at: datetime | None

    @property
    def text(self) -> str:
        return str(self.content.get("text") or "")

    @property
    def format(self) -> str:
        return str(self.content.get("format") or "text")


def _row(r) -> PostRow:
    m = dict(r._mapping)
    m["content"] = m.get("content") or {}
    return PostRow(**{k: m[k] for k in PostRow.__slots__})


class PostTable:
    def __init__(self, store: Store):
        self.store = store

    async def add(self, *, persona_db_id: int, platform: str, channel: str, chat_id: str, due_at: datetime,
                  content: dict[str, Any], status: str, zone: str | None = None, slot_key: str | None = None) -> PostRow | None:
        """A new post; None when the persona already has one for ``slot_key``."""
        now = utcnow()
        values = dict(persona_id=persona_db_id, platform=platform, channel=channel, chat_id=chat_id, due_at=due_at,
                      content=content, status=status, zone=zone, slot_key=slot_key, attempts=0, parts_sent=0,
                      notified=False, created_at=now, updated_at=now)
        try:
            return _row(await self.store._write_sync(lambda c: c.execute(T.insert().values(**values).returning(*T.c)).one()))
        except IntegrityError:
            return None

    async def get(self, post_id: int) -> PostRow | None:
        row = await self.store._read_sync(lambda c: c.execute(select(T).where(T.c.id == post_id)).first())
        return _row(row) if row else None

    async def list(self, *, persona_db_id: int | None = None, status: str | list[str] | None = None,
                   start: datetime | None = None, end: datetime | None = None, limit: int = 200) -> list[PostRow]:
        q = select(T).order_by(T.c.due_at, T.c.id).limit(limit)
        if persona_db_id is not None:
            q = q.where(T.c.persona_id == persona_db_id)
        if status:
            q = q.where(T.c.status.in_([status] if isinstance(status, str) else list(status)))
        if start is not None:
            q = q.where(T.c.due_at >= start)
        if end is not None:
            q = q.where(T.c.due_at < end)
        return [_row(r) for r in await self.store._read_sync(lambda c: c.execute(q).all())]

    async def recent_texts(self, persona_db_id: int, since: datetime) -> list[str]:
        q = select(T.c.content).where(T.c.persona_id == persona_db_id, T.c.due_at >= since,
                                      T.c.status.notin_(["rejected"]))
        return [str((r[0] or {}).get("text") or "") for r in await self.store._read_sync(lambda c: c.execute(q).all())]

    async def counts(self, persona_db_id: int | None = None) -> dict[str, int]:
        q = select(T.c.status, func.count()).group_by(T.c.status)
        if persona_db_id is not None:
            q = q.where(T.c.persona_id == persona_db_id)
        return {s: n for s, n in await self.store._read_sync(lambda c: c.execute(q).all())}

    async def change(self, post_id: int, *, from_states: tuple[str, ...] | list[str] = EDITABLE, **values: Any) -> PostRow | None:
        """Set ``values`` on the post if it is in one of ``from_states``; the new row, or None."""
        values["updated_at"] = utcnow()
        stmt = update(T).where(T.c.id == post_id, T.c.status.in_(list(from_states))).values(**values).returning(*T.c)
        row = await self.store._write_sync(lambda c: c.execute(stmt).first())
        return _row(row) if row else None

    async def set_content(self, post_id: int, content: dict[str, Any], **values: Any) -> PostRow | None:
        return await self.change(post_id, content=content, **values)

    # -- publishing -----------------------------------------------------------------------

    async def claim_due(self, worker: str, lease: float, *, now: datetime | None = None, limit: int = 20) -> list[PostRow]:
        """Take up to ``limit`` approved posts whose time has come, for ``lease`` seconds."""
        now = now or utcnow()
        ready = and_(T.c.status == "approved", T.c.due_at <= now,
                     or_(T.c.next_try_at.is_(None), T.c.next_try_at <= now))
        pick = select(T.c.id).where(ready).order_by(T.c.due_at, T.c.id).limit(limit).with_for_update(skip_locked=True)
        stmt = (
            update(T).where(T.c.id.in_(pick.scalar_subquery()), T.c.status == "approved")
            .values(status="publishing", worker=worker, lease_until=now + timedelta(seconds=lease), claimed_at=now,
                    attempts=T.c.attempts + 1, updated_at=now)
            .returning(*T.c)
        )
        rows = await self.store._write_sync(lambda c: c.execute(stmt).all())
        return sorted((_row(r) for r in rows), key=lambda p: (p.due_at, p.id))

    async def renew(self, post_id: int, worker: str, lease: float) -> bool:
        stmt = (update(T).where(T.c.id == post_id, T.c.status == "publishing", T.c.worker == worker)
                .values(lease_until=utcnow() + timedelta(seconds=lease)))
        return await self.store._write_sync(lambda c: (c.execute(stmt).rowcount or 0) > 0)

    async def take_over_expired(self, *, now: datetime | None = None) -> tuple[list[int], list[int]]:
        """Claims whose process died: back to approved when no send had started, else
        unconfirmed. Returns (requeued ids, unconfirmed ids)."""
        now = now or utcnow()
        expired = and_(T.c.status == "publishing", T.c.lease_until < now)

        def tx(c):
            back = c.execute(update(T).where(expired, T.c.sending_part.is_(None), T.c.parts_sent == 0)
                             .values(status="approved", worker=None, lease_until=None, updated_at=now)
                             .returning(T.c.id)).scalars().all()
            # a part may have left (or some did): the rest is not sent blindly
            unsure = c.execute(update(T).where(expired).values(
                status="unconfirmed", worker=None, lease_until=None, updated_at=now,
                error="the process publishing it stopped; a part may have been posted: check the channel, "
                      "then publish-now or reject").returning(T.c.id)).scalars().all()
            return list(back), list(unsure)

        return await self.store._write_sync(tx)

    def _mine(self, post_id: int, worker: str):
        return and_(T.c.id == post_id, T.c.status == "publishing", T.c.worker == worker)

    async def sending(self, post_id: int, worker: str, part: int) -> bool:
        """Part ``part`` is about to go on the wire. False: the post is not ours any more."""
        stmt = update(T).where(self._mine(post_id, worker)).values(sending_part=part, updated_at=utcnow())
        return await self.store._write_sync(lambda c: (c.execute(stmt).rowcount or 0) > 0)

    async def part_sent(self, post_id: int, worker: str, part: int, message_id: str | None) -> None:
        def tx(c):
            row = c.execute(select(T.c.message_ids).where(self._mine(post_id, worker))).first()
            if row is None:
                return
            ids = list(row[0] or []) + [message_id]
            c.execute(update(T).where(self._mine(post_id, worker)).values(
                parts_sent=part + 1, sending_part=None, message_ids=ids, updated_at=utcnow(),
                platform_post_id=func.coalesce(T.c.platform_post_id, message_id)))

        await self.store._write_sync(tx)

    async def not_sent(self, post_id: int, worker: str) -> None:
        """The part in flight was refused before it was posted (the platform said no)."""
        stmt = update(T).where(self._mine(post_id, worker)).values(sending_part=None)
        await self.store._write_sync(lambda c: c.execute(stmt))

    async def finish(self, post_id: int, worker: str, status: str, *, error: str | None = None,
                     retry_in: float | None = None) -> bool:
        """End a claim: published, failed, unconfirmed, missed, or (``retry_in``) approved
        again for a later try."""
        now = utcnow()
        values: dict[str, Any] = {"status": status, "worker": None, "lease_until": None, "updated_at": now,
                                  "error": error[:4000] if error else None}
        if status == "published":
            values["posted_at"] = now
        if retry_in is not None:
            values.update(status="approved", next_try_at=now + timedelta(seconds=retry_in))
        stmt = update(T).where(self._mine(post_id, worker)).values(**values)
        return await self.store._write_sync(lambda c: (c.execute(stmt).rowcount or 0) > 0)

    async def set_reactions(self, platform: str, chat_ids: list[str], message_id: str, counts: dict[str, int]) -> int | None:
        """Store the reaction counts of a published post's message; the post's id, or None
        when the message is not one of ours."""
        def tx(c):
            rows = c.execute(select(T.c.id, T.c.message_ids).where(
                T.c.platform == platform, T.c.chat_id.in_(chat_ids), T.c.status == "published")
                .order_by(T.c.id.desc()).limit(2000)).all()
            for pid, ids in rows:
                if str(message_id) in [str(i) for i in ids or []]:
                    c.execute(update(T).where(T.c.id == pid).values(reactions=counts, updated_at=utcnow()))
                    return pid
            return None

        return await self.store._write_sync(tx)

    async def mark_notified(self, post_id: int) -> bool:
        """True the first time only: the operator is told about a failure once."""
        stmt = update(T).where(T.c.id == post_id, T.c.notified.is_(False)).values(notified=True)
        return await self.store._write_sync(lambda c: (c.execute(stmt).rowcount or 0) > 0)
