"""The jobs table: the one place a media job's state lives.

A broker (taskiq over Redis) only rings the bell; whoever claims a job here owns it for
its lease, renews the lease with heartbeats, and records the result. Claims are one
``UPDATE ... RETURNING`` (the candidate picked ``FOR UPDATE SKIP LOCKED`` on PostgreSQL;
SQLite's ``BEGIN IMMEDIATE`` serialises writers), so two workers never own one job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from db.models import Job, utcnow
from db.store import Store

J = Job.__table__
ACTIVE = ("queued", "running")
FINISHED = ("done", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class JobRow:
    id: int
    key: str
    kind: str
    status: str
    payload: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    attempts: int
    max_attempts: int
    progress: float
    stage: str
    requester: str | None
    worker: str | None
    lease_until: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def _row(r) -> JobRow:
    m = dict(r._mapping)
    m["stage"] = m.get("stage") or ""
    return JobRow(**{k: m[k] for k in JobRow.__slots__})


def _done(job_id: int, worker: str, result: dict[str, Any]):
    """The job is done with ``result``, if it is still ``worker``'s."""
    return (
        update(J).where(J.c.id == job_id, J.c.worker == worker, J.c.status.in_(ACTIVE))
        .values(status="done", result=result, progress=1.0, stage="done", finished_at=utcnow(), lease_until=None,
                error=None)
    )


class JobTable:
    """Reads and writes of the ``jobs`` table, for the queue and its workers."""

    def __init__(self, store: Store):
        self.store = store

    async def enqueue(self, kind: str, payload: dict[str, Any], key: str, *, requester: str | None = None,
                      max_attempts: int = 3, claimed_by: str | None = None, lease: float = 30.0) -> tuple[JobRow, bool]:
        """Queue a job; the same ``key`` twice is one job. Returns it and whether it is new.

        ``claimed_by``: a worker in this process with a free slot takes the new job in
        the same transaction (running, with its lease), saving a claim; should that
        process die, the lease runs out and the sweeper queues it again like any other."""
        now = utcnow()
        values: dict[str, Any] = dict(key=key, kind=kind, payload=payload, status="queued", requester=requester,
                                      max_attempts=max_attempts, created_at=now, attempts=0, progress=0.0, stage="")
        if claimed_by is not None:
            values.update(status="running", worker=claimed_by, lease_until=now + timedelta(seconds=lease),
                          heartbeat_at=now, started_at=now, attempts=1)

        def tx(conn):
            return conn.execute(J.insert().values(**values).returning(*J.c)).one()

        try:  # one worker-thread hop per transaction on the blocking driver (see Store)
            return _row(await self.store._write_sync(tx)), True
        except IntegrityError:
            existing = await self.by_key(key)
            assert existing is not None
            return existing, False

    async def get(self, job_id: int) -> JobRow | None:
        row = await self.store._read_sync(lambda conn: conn.execute(select(J).where(J.c.id == job_id)).first())
        return _row(row) if row else None

    async def by_key(self, key: str) -> JobRow | None:
        async with self.store.read() as conn:
            row = (await conn.execute(select(J).where(J.c.key == key))).first()
        return _row(row) if row else None

    async def list(self, status: str | None = None, limit: int = 50) -> list[JobRow]:
        q = select(J).order_by(J.c.id.desc()).limit(limit)
        if status:
            q = q.where(J.c.status == status)
        async with self.store.read() as conn:
            return [_row(r) for r in (await conn.execute(q)).all()]

    async def depth(self) -> dict[str, int]:
        """Jobs waiting and running, by kind."""
        async with self.store.read() as conn:
            rows = (await conn.execute(
                select(J.c.kind, J.c.status, func.count()).where(J.c.status.in_(ACTIVE)).group_by(J.c.kind, J.c.status)
            )).all()
        out: dict[str, int] = {}
        for kind, status, n in rows:
            out[f"{kind} {status}"] = n
        return out

    async def claim(self, worker: str, kinds: list[str] | tuple[str, ...], lease: float, job_id: int | None = None) -> JobRow | None:
        """Take the oldest queued job of ``kinds`` (or the job ``job_id``) for ``lease``
        seconds. None when there is none (or it is not queued any more)."""
        now = utcnow()
        pick = select(J.c.id).where(J.c.status == "queued", J.c.kind.in_(list(kinds)))
        if job_id is not None:
            pick = pick.where(J.c.id == job_id)
        pick = pick.order_by(J.c.id).limit(1).with_for_update(skip_locked=True)
        stmt = (
            update(J).where(J.c.id == pick.scalar_subquery(), J.c.status == "queued")
            .values(status="running", worker=worker, lease_until=now + timedelta(seconds=lease), heartbeat_at=now,
                    started_at=func.coalesce(J.c.started_at, now), attempts=J.c.attempts + 1)
            .returning(*J.c)
        )
        row = await self.store._write_sync(lambda conn: conn.execute(stmt).first())
        return _row(row) if row else None

    async def heartbeat(self, job_id: int, worker: str, lease: float, progress: float | None = None,
                        stage: str | None = None) -> bool:
        """Renew the lease (and record progress). False when the job is no longer this
        worker's: cancelled, or its lease ran out and it was handed to someone else."""
        now = utcnow()
        values: dict[str, Any] = {"lease_until": now + timedelta(seconds=lease), "heartbeat_at": now}
        if progress is not None:
            values["progress"] = max(0.0, min(1.0, float(progress)))
        if stage is not None:
            values["stage"] = stage[:100]
        stmt = update(J).where(J.c.id == job_id, J.c.status == "running", J.c.worker == worker).values(**values)
        return await self.store._write_sync(lambda conn: (conn.execute(stmt).rowcount or 0) > 0)

    async def finish(self, job_id: int, worker: str, result: dict[str, Any]) -> bool:
        """Mark the job done with its result, if it is still this worker's."""
        stmt = _done(job_id, worker, result)
        return await self.store._write_sync(lambda c: (c.execute(stmt).rowcount or 0) > 0)

    async def fail(self, job_id: int, worker: str | None, error: str, *, retry: bool) -> str | None:
        """A failed attempt: queued again while attempts remain and ``retry`` (a crash,
        a backend hiccup), else failed with its error kept. Returns the new status, or
        None when the job was not this worker's any more."""
        async with self.store.write() as conn:
            cond = [J.c.id == job_id, J.c.status.in_(ACTIVE)]
            if worker is not None:
                cond.append(J.c.worker == worker)
            row = (await conn.execute(select(J.c.attempts, J.c.max_attempts).where(*cond))).first()
            if row is None:
                return None
            status = "queued" if retry and row.attempts < row.max_attempts else "failed"
            await conn.execute(
                update(J).where(*cond).values(
                    status=status, error=error[:4000], lease_until=None, worker=None if status == "queued" else J.c.worker,
                    finished_at=utcnow() if status == "failed" else None,
                )
            )
        return status

    async def cancel(self, job_id: int) -> bool:
        async with self.store.write() as conn:
            res = await conn.execute(
                update(J).where(J.c.id == job_id, J.c.status.in_(ACTIVE))
                .values(status="cancelled", finished_at=utcnow(), lease_until=None, stage="cancelled")
            )
        return (res.rowcount or 0) > 0

    async def active_for(self, requester: str) -> list[JobRow]:
        async with self.store.read() as conn:
            rows = (await conn.execute(
                select(J).where(J.c.requester == requester, J.c.status.in_(ACTIVE)).order_by(J.c.id)
            )).all()
        return [_row(r) for r in rows]

    async def retry(self, job_id: int) -> bool:
        """An operator's retry of a failed or cancelled job: queued again, attempts reset."""
        async with self.store.write() as conn:
            res = await conn.execute(
                update(J).where(J.c.id == job_id, J.c.status.in_(("failed", "cancelled")))
                .values(status="queued", attempts=0, error=None, finished_at=None, worker=None, progress=0.0, stage="")
            )
        return (res.rowcount or 0) > 0

    async def requeue_expired(self) -> tuple[list[int], list[int]]:
        """Running jobs whose lease ran out (their worker died): queued again, or failed
        when they used up their attempts. Returns (requeued ids, failed ids)."""
        now = utcnow()
        async with self.store.write() as conn:
            rows = (await conn.execute(
                select(J.c.id, J.c.attempts, J.c.max_attempts).where(J.c.status == "running", J.c.lease_until < now)
            )).all()
            again = [r.id for r in rows if r.attempts < r.max_attempts]
            dead = [r.id for r in rows if r.attempts >= r.max_attempts]
            if again:
                await conn.execute(update(J).where(J.c.id.in_(again), J.c.status == "running", J.c.lease_until < now)
                                   .values(status="queued", worker=None, lease_until=None,
                                           error="the worker stopped answering (lease expired)"))
            if dead:
                await conn.execute(update(J).where(J.c.id.in_(dead), J.c.status == "running", J.c.lease_until < now)
                                   .values(status="failed", lease_until=None, finished_at=now,
                                           error="the worker stopped answering on every attempt"))
        return again, dead

    async def complete_with_reply(
        self, job_id: int, worker: str, result: dict[str, Any], *, persona_db_id: int | None, conversation_id: int,
        incoming_id: int | None, text: str, assets: list[dict[str, Any]], records: list[dict[str, Any]],
    ) -> int | None:
        """In one transaction: the job is marked done (only if it is still this worker's),
        its files are recorded as media assets, and the reply carrying them is stored as
        due. Returns the reply's id, or None when the job was not this worker's to finish
        (cancelled, or finished by another worker after a lease ran out)."""
        from db.store import M, MA

        now = utcnow()

        def tx(conn) -> int | None:
            mine = conn.execute(
                select(J.c.id).where(J.c.id == job_id, J.c.worker == worker, J.c.status.in_(ACTIVE))
            ).first()
            if mine is None:
                return None
            media = []
            for asset, record in zip(assets, records):
                aid = conn.execute(
                    MA.insert().values(persona_id=persona_db_id, created_at=now, **asset).returning(MA.c.id)
                ).scalar_one()
                media.append({**record, "asset_id": aid})
            rid = conn.execute(
                M.insert().values(conversation_id=conversation_id, user_id=None, role="assistant", text=text,
                                  reply_to_id=incoming_id, media=media, status="due", created_at=now, next_try_at=now)
                .returning(M.c.id)
            ).scalar_one()
            conn.execute(_done(job_id, worker, {**result, "reply_id": rid}))
            return rid

        return await self.store._write_sync(tx)

    async def running_acks(self, limit: int = 200) -> list[dict[str, Any]]:
        """Running jobs whose acknowledgement reached its chat: job id, kind, stage,
        progress, the acknowledgement's text and platform id, its chat and persona."""
        from db.store import C, M, P

        rows = await self.store._read_sync(lambda conn: conn.execute(
            select(J.c.id, J.c.kind, J.c.stage, J.c.progress, J.c.payload).where(J.c.status == "running")
            .order_by(J.c.id).limit(limit)).all())
        acks = {r.id: (r.payload.get("reply") or {}).get("ack_id") for r in rows}
        ids = [a for a in acks.values() if a]
        if not ids:
            return []
        msgs = await self.store._read_sync(lambda conn: {m.id: m for m in conn.execute(
            select(M.c.id, M.c.text, M.c.platform_message_id, C.c.platform, C.c.platform_chat_id, P.c.slug)
            .join(C, C.c.id == M.c.conversation_id).join(P, P.c.id == C.c.persona_id)
            .where(M.c.id.in_(ids), M.c.platform_message_id.is_not(None))).all()})
        out = []
        for r in rows:
            m = msgs.get(acks[r.id])
            if m is not None:
                out.append({"job": r.id, "kind": r.kind, "stage": r.stage or "", "progress": r.progress,
                            "text": m.text, "message_id": m.platform_message_id, "platform": m.platform,
                            "chat_id": m.platform_chat_id, "persona": m.slug})
        return out

    async def set_reply(self, job_id: int, reply_id: int) -> None:
        """The reply that told the person how a failed job ended."""
        async with self.store.write() as conn:
            row = (await conn.execute(select(J.c.result).where(J.c.id == job_id))).first()
            result = dict(row.result or {}) if row else {}
            result["reply_id"] = reply_id
            await conn.execute(update(J).where(J.c.id == job_id).values(result=result))
