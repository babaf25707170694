"""An asyncio micro-batcher: requests that arrive together and share a shape go to the
model in ONE call.

``submit(item)`` parks the item and returns its result when ready. A flusher task waits
``window_s`` (a few milliseconds; 0 only yields to the event loop once, which still
collects everything submitted in the same tick, such as an ``asyncio.gather``), then
takes every parked item, groups them by ``key(item)`` in order of first arrival, and
runs each group (at most ``max_batch`` at a time) through ``run_batch`` on a
single-thread executor, so the model never runs two calls at once. Items that arrive
while a call runs wait for the next one and are batched together: under load the
batches fill up by themselves, with no added delay when idle beyond ``window_s``.

``run_batch(items)`` returns one entry per item: a result, or an exception instance
for that item alone; if it raises, every item of the group gets the exception.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class BatchStats:
    calls: int = 0
    items: int = 0
    sizes: list[int] = field(default_factory=list)

    def record(self, n: int) -> None:
        self.calls += 1
        self.items += n
        self.sizes.append(n)
        del self.sizes[:-1000]


@dataclass
class _Parked(Generic[T]):
    item: T
    future: asyncio.Future
    key: Hashable
    since: float


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        run_batch: Callable[[list[T]], Sequence[R | BaseException]],
        key: Callable[[T], Hashable],
        executor: Executor,
        *,
        window_s: float = 0.002,
        max_batch: int = 8,
    ):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._run_batch = run_batch
        self._key = key
        self._executor = executor
        self.window_s = window_s
        self.max_batch = max_batch
        self.stats = BatchStats()
        self._pending: list[_Parked[T]] = []
        self._flusher: asyncio.Task | None = None

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._pending.append(_Parked(item, fut, self._key(item), time.monotonic()))
        if self._flusher is None or self._flusher.done() or self._flusher.get_loop() is not loop:
            if self._flusher is not None and not self._flusher.done() and self._flusher.get_loop() is not loop:
                # a flusher from another (finished) event loop: its parked items are gone with it
                self._pending = [p for p in self._pending if p.future.get_loop() is loop]
            self._flusher = loop.create_task(self._flush())
        return await fut

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        if self.window_s > 0:
            await asyncio.sleep(self.window_s)
        else:
            await asyncio.sleep(0)
        while self._pending:
            taken, self._pending = self._pending, []
            groups: dict[Hashable, list[_Parked[T]]] = {}
            for p in taken:
                if not p.future.done():  # a cancelled caller's item is dropped
                    groups.setdefault(p.key, []).append(p)
            for group in groups.values():
                for i in range(0, len(group), self.max_batch):
                    chunk = [p for p in group[i: i + self.max_batch] if not p.future.done()]
                    if chunk:
                        await self._run(loop, chunk)

    async def _run(self, loop: asyncio.AbstractEventLoop, chunk: list[_Parked[T]]) -> None:
        items = [p.item for p in chunk]
        self.stats.record(len(items))
        try:
            results = await loop.run_in_executor(self._executor, self._run_batch, items)
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of the group
            if isinstance(exc, asyncio.CancelledError):
                for p in chunk:
                    if not p.future.done():
                        p.future.cancel()
                raise
            for p in chunk:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        if len(results) != len(chunk):
            err = RuntimeError(f"batch runner returned {len(results)} results for {len(chunk)} items")
            for p in chunk:
                if not p.future.done():
                    p.future.set_exception(err)
            return
        for p, r in zip(chunk, results):
            if p.future.done():
                continue
            if isinstance(r, BaseException):
                p.future.set_exception(r)
            else:
                p.future.set_result(r)

    def pending(self) -> int:
        return len(self._pending)

