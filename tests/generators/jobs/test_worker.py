"""The job queue on the real database: claims, leases, retries, cancellation, results once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, select, update

from db.jobs import JobTable
from db.models import Job, Message, utcnow
from generators.jobs import JobInputError, Worker
from tests.db.test_store import _persona, _say


def _worker(table, runner, done, failed=None, **kw):
    async def on_done(job, result, worker):
        done.append((job.id, result, worker))

    async def on_failed(job, code):
        if failed is not None:
            failed.append((job.id, code))

    return Worker(table, {"image": runner}, on_done=on_done, on_failed=on_failed, **kw)


async def test_the_same_request_twice_is_one_job(store):
    table = JobTable(store)
    a, new_a = await table.enqueue("image", {"x": 1}, "mira:tg:1:42:image")
    b, new_b = await table.enqueue("image", {"x": 2}, "mira:tg:1:42:image")
    assert new_a and not new_b and a.id == b.id and b.payload == {"x": 1}


async def test_one_job_is_claimed_by_one_worker(store):
    table = JobTable(store)
    job, _ = await table.enqueue("image", {}, "k1")
    claims = await asyncio.gather(*(table.claim(f"w{i}", ["image"], 30) for i in range(6)))
    winners = [c for c in claims if c is not None]
    assert len(winners) == 1 and winners[0].id == job.id and winners[0].status == "running"
    assert await table.claim("late", ["voice"], 30) is None  # other kinds are not touched


async def test_a_job_runs_with_progress_and_its_result_is_handed_on(store):
    table = JobTable(store)
    stages = []

    async def runner(params, progress):
        await progress(0.3, "composing")
        stages.append((await table.get(job.id)).stage)
        await progress(0.7, "singing 2/3")
        stages.append((await table.get(job.id)).stage)
        return {"files": [], "n": params["n"]}

    job, _ = await table.enqueue("image", {"params": {"n": 7}}, "k2")
    done = []
    assert await _worker(table, runner, done).run_one()
    assert stages == ["composing", "singing 2/3"]
    [(jid, result, worker)] = done
    assert jid == job.id and result["n"] == 7
    assert (await table.get(job.id)).attempts == 1


async def test_invalid_input_fails_at_once_and_a_crash_is_retried_then_failed(store):
    table = JobTable(store)
    failed, done = [], []

    async def bad_input(params, progress):
        raise JobInputError("the prompt is empty", "invalid")

    job, _ = await table.enqueue("image", {}, "bad")
    await _worker(table, bad_input, done, failed).run_one()
    row = await table.get(job.id)
    assert (row.status, row.attempts, row.error) == ("failed", 1, "the prompt is empty")
    assert failed == [(job.id, "invalid")]

    calls = []

    async def crashes(params, progress):
        calls.append(1)
        raise RuntimeError("CUDA out of memory")

    job2, _ = await table.enqueue("image", {}, "crash", max_attempts=3)
    w = _worker(table, crashes, done, failed)
    while await w.run_one():
        pass
    row = await table.get(job2.id)
    assert len(calls) == 3 and row.status == "failed" and "CUDA out of memory" in row.error
    assert failed[-1] == (job2.id, "failed") and done == []


async def test_a_dead_workers_job_runs_again_and_its_late_result_is_dropped(store):
    table = JobTable(store)
    pid = await _persona(store)
    inc = await _say(store, pid, "/selfie", mid="m1")
    job, _ = await table.enqueue("image", {}, "lease")
    first = await table.claim("dead-worker", ["image"], lease=30)
    async with store.write() as conn:  # its heartbeats stopped: the lease runs out
        await conn.execute(update(Job.__table__).where(Job.__table__.c.id == job.id)
                           .values(lease_until=utcnow() - timedelta(seconds=1)))
    assert await table.requeue_expired() == ([job.id], [])
    second = await table.claim("live-worker", ["image"], lease=30)
    assert first.id == second.id and second.attempts == 2

    async def finish(worker):
        return await table.complete_with_reply(
            job.id, worker, {"files": []}, persona_db_id=pid, conversation_id=inc.conversation_id,
            incoming_id=inc.message_id, text="Here you go!", assets=[], records=[])

    assert await finish("live-worker") is not None
    assert await finish("dead-worker") is None  # it woke up late: its result is dropped
    async with store.read() as conn:
        n = (await conn.execute(select(func.count()).select_from(Message.__table__)
                                .where(Message.__table__.c.role == "assistant"))).scalar_one()
    assert n == 1 and (await table.get(job.id)).status == "done"


async def test_a_cancelled_job_stops_and_hands_on_nothing(store):
    table = JobTable(store)
    started = asyncio.Event()

    async def slow(params, progress):
        started.set()
        for i in range(200):
            await progress(i / 200, f"step {i}")
            await asyncio.sleep(0.02)
        return {"files": []}

    job, _ = await table.enqueue("image", {}, "slow")
    done = []
    run = asyncio.create_task(_worker(table, slow, done).run_one())
    await started.wait()
    assert await table.cancel(job.id)
    await asyncio.wait_for(run, 10)
    assert done == [] and (await table.get(job.id)).status == "cancelled"


async def test_the_worker_loop_runs_jobs_as_they_are_queued(store):
    table = JobTable(store)
    done = []

    async def quick(params, progress):
        return {"files": [], "i": params["i"]}

    w = _worker(table, quick, done, concurrency={"image": 2}, poll=5.0)
    stop = asyncio.Event()
    loop = asyncio.create_task(w.run(stop))
    for i in range(4):
        await table.enqueue("image", {"params": {"i": i}}, f"q{i}")
        w.ring()
    for _ in range(200):
        if len(done) == 4:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await loop
    assert sorted(r["i"] for _, r, _ in done) == [0, 1, 2, 3]


async def test_a_free_local_slot_takes_a_new_job_in_its_insert_and_a_busy_one_queues_it(store):
    table = JobTable(store)
    gate, done = asyncio.Event(), []

    async def runner(params, progress):
        await gate.wait()
        return {"files": [], "n": params["n"]}

    w = _worker(table, runner, done, concurrency={"image": 1}, poll=0.05)
    stop = asyncio.Event()
    loop = asyncio.create_task(w.run(stop))
    await asyncio.sleep(0)

    def enqueue(n):
        return lambda by: table.enqueue("image", {"params": {"n": n}}, f"here-{n}", claimed_by=by, lease=30)

    first, new = await w.enqueue_here("image", enqueue(1))
    assert new and first.status == "running" and first.worker == w.name and first.attempts == 1
    again, new_again = await w.enqueue_here("image", enqueue(1))  # the same request: the same job, not run twice
    assert not new_again and again.id == first.id
    second, _ = await w.enqueue_here("image", enqueue(2))  # the one slot is busy: queued for the loop
    assert second.status == "queued"
    gate.set()
    for _ in range(200):
        if len(done) == 2:
            break
        await asyncio.sleep(0.02)
    assert sorted(r["n"] for _, r, _ in done) == [1, 2]
    stop.set()
    await loop


async def test_a_job_taken_at_insert_by_a_process_that_died_runs_again(store):
    table = JobTable(store)
    job, _ = await table.enqueue("image", {"params": {}}, "orphan", claimed_by="gone:1", lease=30)
    async with store.write() as conn:  # that process is gone: its lease runs out
        await conn.execute(update(Job.__table__).where(Job.__table__.c.id == job.id)
                           .values(lease_until=utcnow() - timedelta(seconds=1)))
    again, dead = await table.requeue_expired()
    assert again == [job.id] and not dead
    done = []

    async def runner(params, progress):
        return {"files": []}

    assert await _worker(table, runner, done).run_one()
    assert [d[0] for d in done] == [job.id] and (await table.get(job.id)).attempts == 2
