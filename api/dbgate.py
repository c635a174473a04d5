"""At most N requests of an API process use the database at once; the rest wait in the loop.

A request's transaction spans several worker-thread calls (its dependencies, its route, its
commit), and between two of them it holds a pooled connection — on SQLite also the write
lock. Threads come from one bounded pool (40). Without a gate, a burst of requests fills
every thread with callers blocked on that lock or on the connection pool, and the request
holding them can never get the thread it needs to finish: the process stalls until the
clients time out. With the gate, waiting requests wait in the event loop, where waiting costs
no thread, and every request that holds a slot can always get a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import ParamSpec, TypeVar

from starlette.concurrency import run_in_threadpool

P = ParamSpec("P")
T = TypeVar("T")


class Slot:
    """One admitted request; `release` lets the next one in before the request ends."""

    def __init__(self, semaphore: asyncio.Semaphore) -> None:
        self._semaphore = semaphore
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._semaphore.release()


class DbGate:
    """A semaphore around database work, created inside the running event loop."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("the database gate needs at least one slot")
        self.size = size
        self._semaphore = asyncio.Semaphore(size)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        await self._semaphore.acquire()
        slot = Slot(self._semaphore)
        try:
            yield slot
        finally:
            slot.release()

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn` in a worker thread once a slot is free (for work done in one call)."""
        async with self.slot():
            return await run_in_threadpool(fn, *args, **kwargs)
