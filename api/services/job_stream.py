"""A job's live stream: partial chat output and the end pushed over Redis, progress read."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from api.dbgate import DbGate
from api.waiters import JobWaiters, wait_event
from shared.db import read_session
from shared.jobs.channel import job_channel
from shared.jobs.status import job_is_terminal
from shared.models import Job

POLL_S = 0.5
KEEPALIVE_S = 15.0


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _snapshot(sessions: sessionmaker[Session], job_id: str) -> dict[str, Any] | None:
    with read_session(sessions) as session:  # a poll: no write lock
        job = session.get(Job, job_id)
        if job is None:
            return None
        return {
            "id": job.id,
            "status": job.status,
            "backend": job.backend,
            "progress": {"total": job.progress_total, "done": job.progress_done,
                         "failed": job.progress_failed},
        }


async def job_stream(
    waiters: JobWaiters, gate: DbGate, sessions: sessionmaker[Session], job_id: str
) -> AsyncIterator[bytes]:
    """`progress` on every change, `delta` for each streamed piece, `end` when the job ends.

    Deltas and the end arrive on the process's one subscriber (`api.waiters`); progress
    counts are read from the database every POLL_S, and at once when the end is announced.
    """
    channel = job_channel(waiters.settings.broker_key_prefix, job_id)
    with waiters.watch(job_id, channel) as watch:
        last: dict[str, Any] | None = None
        next_poll = quiet_since = time.monotonic()
        while True:
            watch.changed.clear()  # before looking: anything arriving later wakes the wait
            while not watch.deltas.empty():
                quiet_since = time.monotonic()
                yield sse("delta", watch.deltas.get_nowait())
            if watch.ended.is_set() or time.monotonic() >= next_poll:
                watch.ended.clear()
                snap = await gate.run(_snapshot, sessions, job_id)
                next_poll = time.monotonic() + min(POLL_S, waiters.recheck_s)
                if snap is None:
                    return
                if snap != last:
                    last, quiet_since = snap, time.monotonic()
                    yield sse("progress", snap)
                if job_is_terminal(snap["status"]):
                    yield sse("end", snap)
                    return
            if time.monotonic() - quiet_since > KEEPALIVE_S:
                quiet_since = time.monotonic()
                yield b": keep-alive\n\n"
            until = min(next_poll, quiet_since + KEEPALIVE_S)
            await wait_event(watch.changed, max(0.0, until - time.monotonic()))
