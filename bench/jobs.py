"""The job queue's own cost, and what a killed worker costs.

    .venv/bin/python bench/jobs.py [--jobs 1000] [--redis redis://127.0.0.1:6379/14]

Prints, on SQLite (a file, as `vchar run` uses it) and the real Redis:
- overhead per job against calling the runner directly: in process (the insert that a
  free local slot claims at once, the run, done) and through Redis (taskiq message, claim, done);
- enqueue-to-start p50 / p99 with 2 workers taking jobs from Redis;
- jobs per second for N instant jobs through the in-process worker;
- the kill test: 2 `worker` processes, one killed with SIGKILL mid-run and replaced;
  jobs started, lost (never done), and results delivered twice (two replies for one job).
Targets: overhead <= 5 ms in process and <= 20 ms through Redis; lost 0; doubled 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db.jobs import JobTable  # noqa: E402
from db.migrate import upgrade_async  # noqa: E402
from db.store import Store  # noqa: E402
from generators.jobs import Worker  # noqa: E402


async def instant(params, progress):
    return {"files": [], "t": time.perf_counter()}


async def _store(url: str) -> Store:
    await upgrade_async(url)
    return Store.from_url(url)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def overhead_in_process(url: str, n: int = 200) -> float:
    store = await _store(url)
    table = JobTable(store)
    done = asyncio.Queue()

    async def on_done(job, result, worker):
        await table.finish(job.id, worker, result)
        done.put_nowait(job.id)

    w = Worker(table, {"image": instant}, on_done=on_done, poll=5.0)
    stop = asyncio.Event()
    loop = asyncio.create_task(w.run(stop))
    t0 = time.perf_counter()
    for _ in range(n):
        await instant({}, None)
    direct = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for i in range(n):  # as persona.media.MediaJobs submits a job to the worker in its own process
        await w.enqueue_here("image", lambda by, i=i: table.enqueue("image", {"params": {}}, f"ip-{i}", claimed_by=by,
                                                                     lease=w.lease))
        await done.get()
    queued = (time.perf_counter() - t0) / n
    stop.set()
    await loop
    await store.close()
    return (queued - direct) * 1000


async def _redis_workers(url: str, queue: str, names: list[str], on_start=None):
    from generators.jobs.distributed import serve_worker

    store = await _store(url)
    table = JobTable(store)
    done = asyncio.Queue()

    async def runner(params, progress):
        if on_start is not None:
            on_start(params, time.perf_counter())
        return {"files": []}

    async def on_done(job, result, worker):
        await table.finish(job.id, worker, result)
        done.put_nowait(job.id)

    stop = asyncio.Event()
    tasks = [asyncio.create_task(serve_worker(Worker(table, {"image": runner}, on_done=on_done, name=n, poll=5.0),
                                              queue, stop, prefix="vchar-bench")) for n in names]
    await asyncio.sleep(0.5)  # receivers listening
    return store, table, done, stop, tasks


async def overhead_redis(url: str, queue: str, n: int = 200) -> float:
    from generators.jobs.distributed import Bells

    store, table, done, stop, tasks = await _redis_workers(url, queue, ["r1"])
    bells = Bells(queue, kinds=("image",), prefix="vchar-bench")
    await bells.start()
    t0 = time.perf_counter()
    for _ in range(n):
        await instant({}, None)
    direct = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for i in range(n):
        job, _ = await table.enqueue("image", {"params": {}}, f"rd-{i}")
        await bells.ring("image", job.id)
        await done.get()
    queued = (time.perf_counter() - t0) / n
    stop.set()
    await asyncio.gather(*tasks)
    await bells.close()
    await store.close()
    return (queued - direct) * 1000


async def start_latency(url: str, queue: str, n: int = 200) -> tuple[float, float]:
    from generators.jobs.distributed import Bells

    enq: dict[int, float] = {}
    started: dict[int, float] = {}

    def on_start(params, t):
        started[params["i"]] = t

    store, table, done, stop, tasks = await _redis_workers(url, queue, ["s1", "s2"], on_start)
    bells = Bells(queue, kinds=("image",), prefix="vchar-bench")
    await bells.start()
    for i in range(n):
        enq[i] = time.perf_counter()
        job, _ = await table.enqueue("image", {"params": {"i": i}}, f"lat-{i}")
        await bells.ring("image", job.id)
        await asyncio.sleep(0.005)  # a steady trickle, not one burst
    for _ in range(n):
        await asyncio.wait_for(done.get(), 60)
    stop.set()
    await asyncio.gather(*tasks)
    await bells.close()
    await store.close()
    lat = [(started[i] - enq[i]) * 1000 for i in range(n)]
    return pct(lat, 50), pct(lat, 99)


async def throughput(url: str, n: int) -> float:
    store = await _store(url)
    table = JobTable(store)
    count = 0
    finished = asyncio.Event()

    async def on_done(job, result, worker):
        nonlocal count
        await table.finish(job.id, worker, result)
        count += 1
        if count == n:
            finished.set()

    for i in range(n):
        await table.enqueue("image", {"params": {}}, f"tp-{i}")
    w = Worker(table, {"image": instant}, on_done=on_done, concurrency={"image": 4}, poll=5.0)
    stop = asyncio.Event()
    t0 = time.perf_counter()
    loop = asyncio.create_task(w.run(stop))
    await asyncio.wait_for(finished.wait(), 600)
    dt = time.perf_counter() - t0
    stop.set()
    await loop
    await store.close()
    return n / dt


# -- the kill test: worker processes -------------------------------------------------------------

async def worker_process(url: str, queue: str, name: str) -> None:
    """One worker process: each job takes 0.2 s and, when done, stores its reply."""
    from generators.jobs.distributed import serve_worker

    store = Store.from_url(url)
    table = JobTable(store)

    async def slow(params, progress):
        for k in range(4):
            await progress(k / 4, f"step {k + 1}/4")
            await asyncio.sleep(0.05)
        return {"files": []}

    async def on_done(job, result, worker):
        p = job.payload["reply"]
        await table.complete_with_reply(job.id, worker, result, persona_db_id=None, conversation_id=p["conversation"],
                                        incoming_id=None, text=f"job {job.id}", assets=[], records=[])

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    w = Worker(table, {"image": slow}, on_done=on_done, name=name, lease=1.0, poll=1.0)
    await serve_worker(w, queue, stop, prefix="vchar-bench")
    await store.close()


async def kill_test(url: str, queue: str, n: int = 60) -> dict[str, int]:
    from sqlalchemy import func, select

    from db.models import Job, Message
    from generators.jobs.distributed import Bells

    store = await _store(url)
    table = JobTable(store)
    pid = await store.ensure_persona("bench", "Bench", {"name": "Bench"}, None)
    inc = await store.store_incoming(pid, platform="bench", chat_id="c", chat_kind="private", chat_title=None,
                                     user_id="u", user_name="U", text="go", platform_message_id="1")
    bells = Bells(queue, kinds=("image",), prefix="vchar-bench")
    await bells.start()

    async def spawn(name):
        return await asyncio.create_subprocess_exec(sys.executable, __file__, "--worker", url, queue, name,
                                                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)

    procs = [await spawn("k1"), await spawn("k2")]
    await asyncio.sleep(3.0)  # both listening
    for i in range(n):
        job, _ = await table.enqueue("image", {"params": {}, "reply": {"conversation": inc.conversation_id}},
                                     f"kill-{i}", max_attempts=5)
        await bells.ring("image", job.id)
    await asyncio.sleep(2.0)
    procs[0].kill()  # SIGKILL, mid-job
    await procs[0].wait()
    procs.append(await spawn("k3"))
    J, M = Job.__table__, Message.__table__
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        async with store.read() as conn:
            left = (await conn.execute(select(func.count()).select_from(J).where(J.c.status != "done"))).scalar_one()
        if left == 0:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(2.0)  # anything late would land now
    for p in procs[1:]:
        p.send_signal(signal.SIGTERM)
        await p.wait()
    async with store.read() as conn:
        started = (await conn.execute(select(func.count()).select_from(J).where(J.c.attempts > 0))).scalar_one()
        lost = (await conn.execute(select(func.count()).select_from(J).where(J.c.status != "done"))).scalar_one()
        retried = (await conn.execute(select(func.count()).select_from(J).where(J.c.attempts > 1))).scalar_one()
        per_job = (await conn.execute(select(M.c.text, func.count()).where(M.c.role == "assistant")
                                      .group_by(M.c.text))).all()
    await bells.close()
    await store.close()
    return {"jobs": n, "started": started, "run again after the kill": retried, "lost": lost,
            "doubled": sum(1 for _, c in per_job if c > 1)}


async def main(args) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(args.redis)
    await client.flushdb()
    await client.aclose()
    with tempfile.TemporaryDirectory() as tmp:
        def url(name):
            return f"sqlite+aiosqlite:///{Path(tmp) / name}.db"

        ip = await overhead_in_process(url("ip"))
        rd = await overhead_redis(url("rd"), args.redis)
        p50, p99 = await start_latency(url("lat"), args.redis)
        tp = await throughput(url("tp"), args.jobs)
        kill = await kill_test(url("kill"), args.redis)
    print("vchar job queue (SQLite file, Redis on 127.0.0.1; instant jobs unless said)")
    print(f"  overhead per job, in process      {ip:7.2f} ms   (target <= 5 ms)")
    print(f"  overhead per job, through Redis   {rd:7.2f} ms   (target <= 20 ms)")
    print(f"  enqueue to start, 2 workers       p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    print(f"  {args.jobs} instant jobs, in process    {tp:7.1f} jobs/s")
    print("  kill test (2 worker processes, one SIGKILLed mid-run and replaced, 0.2 s jobs): "
          + ", ".join(f"{k} {v}" for k, v in kill.items()))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        asyncio.run(worker_process(*sys.argv[2:5]))
        sys.exit(0)
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--redis", default=os.environ.get("VCHAR_BENCH_REDIS", "redis://127.0.0.1:6379/14"))
    asyncio.run(main(ap.parse_args()))
