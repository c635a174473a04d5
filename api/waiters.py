"""Requests waiting for jobs, woken by one Redis subscription per API process.

Workers and the orchestrator publish a job's id on one channel once its end is committed
(`shared.jobs.channel`); this process's single subscriber wakes the requests waiting on that
job, which re-read the row to answer. The same connection carries the per-job channels of
live chat output that `/v1/jobs/{id}/events` relays, subscribed while someone follows them.
A notice lost while Redis is away costs a waiter at most one re-read interval, never a wrong
answer: the database stays the only source of the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import redis.asyncio as aredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from shared.jobs.channel import ended_channel
from shared.logging import get_logger
from shared.settings import Settings

log = get_logger(__name__)
T = TypeVar("T")
# Reconnect pauses double from the first to the last while Redis stays away.
FIRST_BACKOFF_S, MAX_BACKOFF_S = 0.1, 5.0
# How long one read of the subscription blocks before the loop looks at its state again.
_READ_S = 5.0
_DELTAS_KEPT = 1000


class Watch:
    """One waiting request: `ended` when its job's end was announced (or may have been)."""

    def __init__(self, job_id: str, channel: str | None) -> None:
        self.job_id = job_id
        self.channel = channel
        self.ended = asyncio.Event()
        # Set on anything worth looking at: the end or a live event.
        self.changed = asyncio.Event()
        self.deltas: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=_DELTAS_KEPT)

    def wake(self) -> None:
        self.ended.set()
        self.changed.set()

    def push(self, event: dict[str, Any]) -> None:
        with contextlib.suppress(asyncio.QueueFull):  # a stalled reader loses live text only
            self.deltas.put_nowait(event)
        self.changed.set()


class JobWaiters:
    """The process's subscriber and the registry of waiting requests, keyed by job id."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.recheck_s = settings.wait_recheck_s
        self.client_name = f"{settings.broker_key_prefix}llmjobs-api-waiters-{os.getpid()}"
        self._ended = ended_channel(settings.broker_key_prefix)
        self._watches: dict[str, set[Watch]] = {}
        self._channels: dict[str, set[Watch]] = {}
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()  # kept so the loop does not drop them
        self._send_lock = asyncio.Lock()
        self.connected = asyncio.Event()

    # lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the subscriber (in the app's lifespan, on its event loop)."""
        self._task = asyncio.create_task(self._run(), name="job-waiters")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for watches in list(self._watches.values()):
            for watch in watches:
                watch.wake()

    async def _run(self) -> None:
        backoff = FIRST_BACKOFF_S
        while True:
            client = aredis.Redis.from_url(
                self.settings.broker_url, client_name=self.client_name,
                socket_connect_timeout=5, socket_keepalive=True, health_check_interval=30,
                # Errors reach this loop, which resubscribes and wakes every waiter.
                retry=Retry(NoBackoff(), 0),
            )
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                channels = set(self._channels)
                await pubsub.subscribe(self._ended, *channels)
                self._pubsub = pubsub
                # Followed while the subscription was being made (nothing sent for them).
                for channel in set(self._channels) - channels:
                    self._send("subscribe", channel)
                self.connected.set()
                # Ends announced while we were away were missed: everyone re-reads once.
                self._wake_all()
                backoff = FIRST_BACKOFF_S
                while True:
                    message = await pubsub.get_message(timeout=_READ_S)
                    if message is not None and message.get("type") == "message":
                        self._deliver(message)
            except (aredis.RedisError, OSError) as exc:
                log.warning("job notices unavailable; waiters re-read until Redis is back",
                            error=f"{type(exc).__name__}: {exc}"[:200], retry_in_s=backoff)
            finally:
                self._pubsub = None
                self.connected.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _deliver(self, message: dict[str, Any]) -> None:
        channel = _text(message["channel"])
        if channel == self._ended:
            for watch in self._watches.get(_text(message["data"]), ()):
                watch.wake()
            return
        try:
            event = json.loads(message["data"])
        except ValueError:
            return
        for watch in self._channels.get(channel, ()):
            watch.push(event)

    def _wake_all(self) -> None:
        for watches in self._watches.values():
            for watch in watches:
                watch.wake()

    # registry --------------------------------------------------------------------------
    @contextlib.contextmanager
    def watch(self, job_id: str, channel: str | None = None) -> Iterator[Watch]:
        """Register before the first read, so an end announced after it is never missed."""
        watch = Watch(job_id, channel)
        self._watches.setdefault(job_id, set()).add(watch)
        if channel is not None:
            first = channel not in self._channels
            self._channels.setdefault(channel, set()).add(watch)
            if first:
                self._send("subscribe", channel)
        try:
            yield watch
        finally:
            _discard(self._watches, job_id, watch)
            if channel is not None and _discard(self._channels, channel, watch):
                self._send("unsubscribe", channel)

    def _send(self, command: str, channel: str) -> None:
        # The subscriber's own connection: the reconnect subscribes every registered channel,
        # so a command lost while Redis is away needs no retry here.
        pubsub = self._pubsub
        if pubsub is None:
            return

        async def send() -> None:
            # In order: an unsubscribe overtaking a later subscribe would leave a follower deaf.
            async with self._send_lock:
                with contextlib.suppress(aredis.RedisError, OSError):
                    await getattr(pubsub, command)(channel)

        task = asyncio.create_task(send())
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def wait_until(
        self, job_id: str, read: Callable[[], Awaitable[T]], done: Callable[[T], bool],
        deadline: float,
    ) -> T:
        """`read()` again each time the job's end is announced (or every re-read interval)
        until `done` holds or `deadline` (monotonic) passes; the last value read."""
        with self.watch(job_id) as watch:
            while True:
                watch.ended.clear()  # before the read: a notice during it is kept
                value = await read()
                remaining = deadline - time.monotonic()
                if done(value) or remaining <= 0:
                    return value
                await wait_event(watch.ended, min(remaining, self.recheck_s))


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """True when `event` was set within `timeout` seconds."""
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False
    return True


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _discard(index: dict[str, set[Watch]], key: str, watch: Watch) -> bool:
    """Remove one watch; True when it was the key's last."""
    watches = index.get(key)
    if watches is None:
        return False
    watches.discard(watch)
    if watches:
        return False
    del index[key]
    return True
