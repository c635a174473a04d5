"""Celery tasks of the orchestrator: thin wrappers around the engine and the sweep."""

from __future__ import annotations

from typing import Any

import redis
from celery import signals
from sqlalchemy.exc import OperationalError
from structlog.contextvars import bound_contextvars

from orchestrator import engine, retention
from orchestrator.sweep import sweep
from orchestrator.webhook_sweep import send_due_deliveries
from shared import metrics
from shared.celery_app import at_process_start, celery_app
from shared.db import (
    close_process_sessions,
    open_process_sessions,
    process_sessions,
    session_scope,
)
from shared.jobs.channel import publisher
from shared.logging import get_logger
from shared.models import StoredFile
from shared.queues import TASK_PLAN, TASK_STEP_DONE, TASK_SWEEP, llm_queue
from shared.settings import get_settings

log = get_logger(__name__)

_redis: redis.Redis | None = None


def _start() -> None:
    global _redis
    settings = get_settings()
    open_process_sessions(settings.database_url)
    _redis = redis.Redis.from_url(settings.broker_url)
    publisher(settings)  # job ends (finished, cancelled, expired) are announced from here


at_process_start(_start)


def _broker() -> redis.Redis:
    if _redis is None:
        raise RuntimeError("the broker client was not built at process start")
    return _redis


def _queue_is_empty(backend: str, lane: str) -> bool:
    key = get_settings().broker_key_prefix + llm_queue(backend, lane)
    return int(_broker().llen(key)) == 0


# Conflicts and outages of the database are retried with backoff; the sweep is the backstop.
_RETRY: dict[str, Any] = {
    "autoretry_for": (OperationalError,),
    "retry_backoff": True,
    "retry_backoff_max": 30,
    "max_retries": 20,
}


@celery_app.task(name=TASK_PLAN, **_RETRY)
def plan(job_id: str) -> None:
    """Plan a new job and send its first steps."""
    with bound_contextvars(job_id=job_id), session_scope(process_sessions()) as session:
        engine.plan_job(session, get_settings(), job_id)


@celery_app.task(name=TASK_STEP_DONE, **_RETRY)
def step_done(step_id: str) -> None:
    """Advance a job after one of its steps ended."""
    settings = get_settings()
    with bound_contextvars(step_id=step_id):
        with session_scope(process_sessions()) as session:
            pending = engine.step_done(session, settings, step_id)
        if pending is None:
            return
        # Outside any transaction: on SQLite one holds the database's write lock throughout.
        # Killed before the next commit, this message is delivered again and the file rewritten.
        written = pending.write()
        with session_scope(process_sessions()) as session:
            engine.step_done(session, settings, step_id, {written.file_id: written})
            kept = session.get(StoredFile, written.file_id) is not None
        if not kept:
            # The job ended otherwise meanwhile (cancelled): no row will ever point at the file.
            pending.path.unlink(missing_ok=True)


@celery_app.task(name=TASK_SWEEP, **_RETRY)
def sweep_task() -> dict[str, int]:
    """Re-send lost work and expire stuck jobs."""
    with session_scope(process_sessions()) as session:
        report = sweep(session, get_settings(), _queue_is_empty)
    # Its own transaction: a webhook backlog never holds up the job sweep.
    with session_scope(process_sessions()) as session:
        webhooks_sent = send_due_deliveries(session, get_settings())
    if any(vars(report).values()) or webhooks_sent:
        log.info("sweep", webhooks_sent=webhooks_sent, **vars(report))
    for action, count in vars(report).items():
        if count:
            metrics.SWEEP_ACTIONS.labels(action).inc(count)
    purged = _purge_if_due()
    return {**vars(report), "webhooks_sent": webhooks_sent, **purged}


# Batches of one purge run; the rest waits for the next run, so a backlog never stalls sweeps.
_PURGE_BATCHES = 10


def _purge_if_due() -> dict[str, int]:
    """Run the retention purge and the temporary-file cleanup when no orchestrator did within
    the interval (a Redis mark)."""
    settings = get_settings()
    mark = f"{settings.broker_key_prefix}llmjobs:retention-ran"
    try:
        if not _broker().set(mark, "1", nx=True, ex=max(1, int(settings.retention_interval_s))):
            return {}
    except redis.RedisError:
        return {}  # the broker is away; the next sweep tries again
    # A writer killed mid-write leaves its temporary file behind: removed whatever retention.
    temp_files = retention.remove_stale_temp_files(settings.data_dir)
    totals: dict[str, int] = {"purged_temp_files": temp_files} if temp_files else {}
    if temp_files:
        metrics.RETENTION_PURGED.labels("temp_files").inc(temp_files)
    if settings.retention_days <= 0:
        return totals
    for _ in range(_PURGE_BATCHES):
        with session_scope(process_sessions()) as session:
            counts = retention.purge(session, settings).counts()
        for kind, count in counts.items():
            totals[f"purged_{kind}"] = totals.get(f"purged_{kind}", 0) + count
            if count:
                metrics.RETENTION_PURGED.labels(kind).inc(count)
        if not any(counts.values()):
            break
    if any(totals.values()):
        log.info("retention purge", **totals)
    return totals


@signals.worker_shutdown.connect
def _close(**_: Any) -> None:
    global _redis
    if _redis is not None:
        _redis.close()
    _redis = None
    close_process_sessions()
