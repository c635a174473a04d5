"""Job notices on Redis pub/sub: a job's live events, and one channel announcing job ends."""

from __future__ import annotations

import threading

import redis
from sqlalchemy.orm import Session

from shared.db import after_commit
from shared.logging import get_logger
from shared.settings import Settings, get_settings

_log = get_logger(__name__)
_lock = threading.Lock()
_clients: dict[str, redis.Redis] = {}


def job_channel(prefix: str, job_id: str) -> str:
    """Channel of one job's partial output and progress events."""
    return f"{prefix}llmjobs:events:{job_id}"


def ended_channel(prefix: str) -> str:
    """The one channel every job's end is announced on (the message is the job id).

    One channel for all jobs: each API process keeps a single subscription however many
    requests wait, and Redis sends each end once per API process, not per waiting request.
    """
    return f"{prefix}llmjobs:ended"


def publisher(settings: Settings) -> redis.Redis:
    """The process's client announcing job ends (processes build it at start-up)."""
    # Kept for the process's life: a job's end must not cost a new connection.
    # Short timeouts: with Redis away, the transaction that ended the job has committed and
    # its caller (an API cancel, the sweep) should not wait long for a notice it may lose.
    with _lock:
        client = _clients.get(settings.broker_url)
        if client is None:
            client = _clients[settings.broker_url] = redis.Redis.from_url(
                settings.broker_url, socket_timeout=1, socket_connect_timeout=1
            )
        return client


def publish_ended(settings: Settings, job_id: str) -> None:
    """Announce that a job ended; a lost notice only delays waiters until their re-read."""
    if not settings.job_end_publish:
        return
    try:
        publisher(settings).publish(ended_channel(settings.broker_key_prefix), job_id)
    except redis.RedisError as exc:
        _log.warning("job end not published; waiters find it by re-reading", job_id=job_id,
                     error=f"{type(exc).__name__}: {exc}"[:200])


def announce_end(session: Session, job_id: str, settings: Settings | None = None) -> None:
    """Publish the job's end once the transaction that ended it commits (never on rollback)."""
    current = settings or get_settings()
    after_commit(session, lambda: publish_ended(current, job_id))
