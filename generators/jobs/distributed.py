"""Jobs across machines: taskiq over Redis rings the bell, the jobs table keeps the truth.

Each job kind has its own Redis list (taskiq-redis' ``ListQueueBroker``), so a worker
started with ``--kinds image`` only ever takes image messages. A message carries only the
job id; the worker claims the job in the database (``UPDATE ... RETURNING``), so a message
delivered twice, or one for a job another worker already took, does nothing. A message
popped by a worker that is then killed is not lost either: the job's lease runs out, any
worker's sweeper queues it again, and workers also look at the table every few seconds.
That is why the list broker (acknowledged on receipt) is enough here, and why the stream
broker's ten-minute redelivery (which would run a long GPU job twice) is not needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from generators.jobs import KINDS, Worker

log = logging.getLogger(__name__)

TASK = "vchar.run_job"


class QueueUnavailable(RuntimeError):
    """The queue's Redis cannot be reached."""


def _import():
    try:
        from taskiq_redis import ListQueueBroker
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise QueueUnavailable("VCHAR_QUEUE_URL needs taskiq-redis: pip install 'taskiq-redis==1.2.4'") from exc
    return ListQueueBroker


def queue_name(kind: str, prefix: str = "vchar") -> str:
    return f"{prefix}:jobs:{kind}"


class Bells:
    """The producer side, used by `vchar run`: one broker per kind, kicked with a job id."""

    def __init__(self, url: str, kinds: Iterable[str] = KINDS, prefix: str = "vchar"):
        ListQueueBroker = _import()
        self.url = url
        self.brokers = {k: ListQueueBroker(url, queue_name=queue_name(k, prefix)) for k in kinds}
        self.tasks = {k: b.register_task(_noop, task_name=TASK) for k, b in self.brokers.items()}

    async def start(self) -> None:
        await check_reachable(self.url)
        for b in self.brokers.values():
            await b.startup()

    async def ring(self, kind: str, job_id: int) -> None:
        await self.tasks[kind].kiq(job_id)

    async def close(self) -> None:
        for b in self.brokers.values():
            with contextlib.suppress(Exception):
                await b.shutdown()


async def _noop(job_id: int) -> None:  # the producer's view of the task; workers run their own
    return None


async def check_reachable(url: str, timeout: float = 3.0) -> None:
    """Fail at once, saying where, when the queue's Redis does not answer."""
    from redis.asyncio import Redis

    from generators.redact import public_url

    client = Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        await client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means the same to the operator
        raise QueueUnavailable(
            f"the job queue's Redis at {public_url(url)} is not reachable ({type(exc).__name__}); start Redis or fix "
            "VCHAR_QUEUE_URL (unset it to make media in this process)"
        ) from exc
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


async def serve_worker(worker: Worker, url: str, stop: asyncio.Event, prefix: str = "vchar",
                       concurrency: dict[str, int] | None = None) -> None:
    """`vchar worker`: listen on each kind's list and run what arrives, plus the
    worker's own loop (table polling, the expired-lease sweeper) until ``stop``."""
    from taskiq.api import run_receiver_task

    ListQueueBroker = _import()
    await check_reachable(url)
    brokers = []
    receivers = []
    for kind in worker.kinds:
        # BRPOP blocks until a message comes: redis-py 8's 5 s default socket timeout
        # would cut every idle wait short with a TimeoutError
        broker = ListQueueBroker(url, queue_name=queue_name(kind, prefix), socket_timeout=None)

        async def run_job(job_id: int, _kind: str = kind) -> None:
            await worker.run_one(job_id=int(job_id), kinds=(_kind,))

        broker.register_task(run_job, task_name=TASK)
        await broker.startup()
        brokers.append(broker)
        n = (concurrency or {}).get(kind, 1)
        receivers.append(asyncio.create_task(
            run_receiver_task(broker, max_async_tasks=n, max_prefetch=0, run_startup=False), name=f"taskiq {kind}"))
    loop = asyncio.create_task(worker.run(stop), name="job worker")
    try:
        await stop.wait()
    finally:
        for r in receivers:
            r.cancel()
        await asyncio.gather(*receivers, return_exceptions=True)
        await loop
        for b in brokers:
            with contextlib.suppress(Exception):
                await b.shutdown()
