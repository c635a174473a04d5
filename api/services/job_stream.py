"""A job's live stream: partial chat output from Redis pub/sub, progress from the database."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aredis
from sqlalchemy.orm import Session, sessionmaker

from api.dbgate import DbGate
from shared.db import read_session
from shared.jobs.channel import job_channel
from shared.jobs.status import job_is_terminal
from shared.models import Job
from shared.settings import Settings

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
    settings: Settings, client: aredis.Redis, gate: DbGate, sessions: sessionmaker[Session],
    job_id: str,
) -> AsyncIterator[bytes]:
    """`progress` on every change, `delta` for each streamed piece, `end` when the job ends."""
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        try:
            await pubsub.subscribe(job_channel(settings.broker_key_prefix, job_id))
            live = True
        except aredis.RedisError:
            live = False  # no partial output then; progress still comes from the database
        last: dict[str, Any] | None = None
        next_poll = quiet_since = time.monotonic()
        while True:
            if time.monotonic() >= next_poll:
                snap = await gate.run(_snapshot, sessions, job_id)
                next_poll = time.monotonic() + POLL_S
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
            wait = max(0.0, next_poll - time.monotonic())
            message = None
            if live:
                message = await pubsub.get_message(timeout=wait)
            else:
                await asyncio.sleep(wait)
            if message and message.get("type") == "message":
                quiet_since = time.monotonic()
                yield sse("delta", json.loads(message["data"]))
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
