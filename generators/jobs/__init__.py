"""Media jobs: a kind, its parameters, an idempotency key, a state, progress, a result.

A job's payload is ``{"params": ..., ...}``: the runner gets ``params``; the rest is the
asking side's own (where the reply goes). The ``jobs`` table is the truth (``db.jobs.JobTable``, handed in by the service as a
:class:`JobStore`); a broker only rings the bell. A :class:`Worker` claims a job with a
lease, runs the kind's runner, renews the lease with heartbeats as progress comes in,
and hands the result to ``on_done`` (which records the media and stores the reply, in
one transaction with the job's completion). A job that fails is queued again while it
has attempts left, unless its input is invalid (:class:`JobInputError`: failed at once).

Two ways to ring the bell, one worker:
- in process (the default): :class:`LocalBell` wakes the worker loop in this process;
- distributed (``VCHAR_QUEUE_URL=redis://...``): ``generators.jobs.distributed`` kicks
  a taskiq task whose only argument is the job id; `vchar worker` consumes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

log = logging.getLogger(__name__)

KINDS = ("image", "voice", "music", "video", "post")
DEFAULT_LEASE = 30.0  # s: a worker silent this long has died; its job runs again elsewhere
HEARTBEAT_EVERY = 5.0


class JobInputError(ValueError):
    """The job cannot work with what it was given: it fails at once, not retried.
    ``code`` tells the asking side which answer to give ("invalid", "refused",
    "unreadable", "unconfigured")."""

    def __init__(self, message: str, code: str = "invalid"):
        super().__init__(message)
        self.code = code


class JobCancelled(Exception):
    """Raised inside a runner's progress call when the job was cancelled (or taken over)."""


class JobStore(Protocol):
    """What the queue needs of the database (``db.jobs.JobTable``)."""

    async def enqueue(self, kind: str, payload: dict, key: str, *, requester: str | None = None,
                      max_attempts: int = 3) -> tuple[Any, bool]: ...
    async def claim(self, worker: str, kinds: Iterable[str], lease: float, job_id: int | None = None) -> Any: ...
    async def heartbeat(self, job_id: int, worker: str, lease: float, progress: float | None = None,
                        stage: str | None = None) -> bool: ...
    async def fail(self, job_id: int, worker: str | None, error: str, *, retry: bool) -> str | None: ...
    async def requeue_expired(self) -> tuple[list[int], list[int]]: ...


class Progress:
    """Handed to a runner: ``await progress(0.5, "singing 2/3")``. Writes are throttled
    (at most one a second, plus every stage change); raises :class:`JobCancelled` when
    the job is no longer this worker's."""

    def __init__(self, store: JobStore, job_id: int, worker: str, lease: float, on_change=None):
        self.store, self.job_id, self.worker, self.lease = store, job_id, worker, lease
        self.fraction, self.stage = 0.0, ""
        self._written = 0.0
        self._on_change = on_change
        self.lost = False

    async def __call__(self, fraction: float, stage: str | None = None) -> None:
        changed = stage is not None and stage != self.stage
        self.fraction = fraction
        if stage is not None:
            self.stage = stage
        if changed or time.monotonic() - self._written >= 1.0:
            await self.beat()
            if changed and self._on_change is not None:
                with contextlib.suppress(Exception):
                    await self._on_change(self.job_id, self.fraction, self.stage)

    async def beat(self) -> None:
        self._written = time.monotonic()
        if not await self.store.heartbeat(self.job_id, self.worker, self.lease, self.fraction, self.stage):
            self.lost = True
            raise JobCancelled(f"job {self.job_id} is no longer ours")


Runner = Callable[[dict[str, Any], Progress], Awaitable[dict[str, Any]]]
OnDone = Callable[[Any, dict[str, Any], str], Awaitable[None]]  # (job, result, worker id)
OnFailed = Callable[[Any, str], Awaitable[None]]  # (job, code: JobInputError.code, or "failed")


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    """Runs jobs of ``kinds``, ``concurrency[kind]`` at a time (1 by default)."""

    def __init__(
        self,
        store: JobStore,
        runners: dict[str, Runner],
        *,
        on_done: OnDone,
        on_failed: OnFailed | None = None,
        on_progress=None,
        kinds: Iterable[str] | None = None,
        concurrency: dict[str, int] | None = None,
        lease: float = DEFAULT_LEASE,
        poll: float = 2.0,
        name: str | None = None,
    ):
        self.store = store
        self.runners = runners
        self.kinds = tuple(kinds) if kinds else tuple(runners)
        unknown = [k for k in self.kinds if k not in runners]
        if unknown:
            raise ValueError(f"no runner for job kinds {unknown}; this worker can run {sorted(runners)}")
        self.on_done, self.on_failed, self.on_progress = on_done, on_failed, on_progress
        self.lease, self.poll = lease, poll
        self.name = name or worker_id()
        self._slots = {k: asyncio.Semaphore((concurrency or {}).get(k, 1)) for k in self.kinds}
        self._bell = asyncio.Event()
        self._running: dict[int, asyncio.Task] = {}
        self._stopping = True  # until run(): nothing is started that no loop would hand back
        self.done = 0

    def ring(self) -> None:
        """A job was queued: look now."""
        self._bell.set()

    async def enqueue_here(self, kind: str, enqueue: Callable[[str | None], Awaitable[tuple[Any, bool]]]) -> tuple[Any, bool]:
        """Queue a job that this worker may run: with a free slot for ``kind``, it is
        inserted already claimed by this worker (``enqueue(self.name)``, one transaction
        instead of an insert and a claim) and started at once; otherwise it is queued
        (``enqueue(None)``) and the worker rung."""
        slot = self._slots.get(kind)
        if slot is None or slot.locked() or self._stopping:
            job, new = await enqueue(None)
            if new:
                self.ring()
            return job, new
        await slot.acquire()  # free: does not wait
        try:
            job, new = await enqueue(self.name)
        except BaseException:
            slot.release()
            raise
        if not new or job.status != "running" or job.worker != self.name:
            slot.release()  # the same request again: that job is already on its way
            return job, new
        task = asyncio.create_task(self._run(job), name=f"job {job.id}")
        self._running[job.id] = task
        task.add_done_callback(lambda t, jid=job.id: (self._running.pop(jid, None), slot.release()))
        return job, new

    async def run_one(self, job_id: int | None = None, kinds: Iterable[str] | None = None) -> bool:
        """Claim one job (``job_id``, or the oldest of ``kinds``) and run it to the end.
        False when there was nothing to claim."""
        kinds = tuple(kinds or self.kinds)
        slot = self._slots.get(kinds[0]) if len(kinds) == 1 else None
        async with slot or contextlib.nullcontext():  # shares the kind's concurrency with the loop
            job = await self.store.claim(self.name, kinds, self.lease, job_id=job_id)
            if job is None:
                return False
            await self._run(job)
        return True

    async def _run(self, job) -> None:
        progress = Progress(self.store, job.id, self.name, self.lease, self.on_progress)
        beating = asyncio.create_task(self._heartbeat(progress), name=f"job {job.id} heartbeat")
        try:
            log.info("job %d (%s) started on %s, attempt %d", job.id, job.kind, self.name, job.attempts)
            result = await self.runners[job.kind](dict(job.payload.get("params") or {}), progress)
        except JobCancelled:
            log.info("job %d stopped: cancelled or taken over", job.id)
            return
        except JobInputError as exc:
            log.warning("job %d (%s) cannot run: %s", job.id, job.kind, exc)
            if await self.store.fail(job.id, self.name, str(exc), retry=False) and self.on_failed is not None:
                await self._safe(self.on_failed(job, exc.code))
            return
        except asyncio.CancelledError:
            # this process is stopping: the job goes back to the queue at once
            with contextlib.suppress(Exception):
                await asyncio.shield(self.store.fail(job.id, self.name, "the worker stopped mid-job", retry=True))
            raise
        except Exception as exc:  # noqa: BLE001 - recorded on the job
            error = f"{type(exc).__name__}: {exc}"
            log.error("job %d (%s) failed on attempt %d: %s", job.id, job.kind, job.attempts, error)
            status = await self.store.fail(job.id, self.name, error, retry=True)
            if status == "failed" and self.on_failed is not None:
                await self._safe(self.on_failed(job, "failed"))
            return
        finally:
            beating.cancel()
        if progress.lost:
            return
        await self.on_done(job, result, self.name)
        self.done += 1
        log.info("job %d (%s) done", job.id, job.kind)

    async def _heartbeat(self, progress: Progress) -> None:
        every = min(HEARTBEAT_EVERY, self.lease / 3)
        with contextlib.suppress(asyncio.CancelledError, JobCancelled):
            while True:
                await asyncio.sleep(every)
                await progress.beat()

    @staticmethod
    async def _safe(coro) -> None:
        try:
            await coro
        except Exception:  # noqa: BLE001
            log.exception("job failure handler failed")

    async def _kind_loop(self, kind: str, stop: asyncio.Event) -> None:
        slots = self._slots[kind]
        while not stop.is_set():
            await slots.acquire()
            try:
                job = await self.store.claim(self.name, (kind,), self.lease)
            except Exception:  # noqa: BLE001 - the database blinked: try again shortly
                log.exception("claiming a %s job failed", kind)
                job = None
            if job is None:
                slots.release()
                await wait_any(stop, self._bell, self.poll)
                self._bell.clear()
                continue
            task = asyncio.create_task(self._run(job), name=f"job {job.id}")
            self._running[job.id] = task
            task.add_done_callback(lambda t, jid=job.id: (self._running.pop(jid, None), slots.release()))

    async def _sweep_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                again, dead = await self.store.requeue_expired()
                if again:
                    log.warning("jobs %s lost their worker; queued again", again)
                    self.ring()
                if dead:
                    log.error("jobs %s lost their worker on every attempt; failed", dead)
            except Exception:  # noqa: BLE001
                log.exception("requeueing expired jobs failed")
            await wait_any(stop, None, max(self.lease / 2, 0.5))

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and run jobs until ``stop``; running jobs are handed back to the queue."""
        self._stopping = False
        loops = [asyncio.create_task(self._kind_loop(k, stop)) for k in self.kinds]
        loops.append(asyncio.create_task(self._sweep_loop(stop)))
        try:
            await stop.wait()
        finally:
            self._stopping = True
            for t in loops:
                t.cancel()
            for t in list(self._running.values()):
                t.cancel()
            await asyncio.gather(*loops, *self._running.values(), return_exceptions=True)


async def wait_any(stop: asyncio.Event, other: asyncio.Event | None, timeout: float) -> None:
    """Until ``stop`` or ``other`` is set, or ``timeout`` seconds pass."""
    waits = [asyncio.ensure_future(stop.wait())]
    if other is not None:
        waits.append(asyncio.ensure_future(other.wait()))
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
