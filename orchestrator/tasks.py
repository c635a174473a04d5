"""Celery tasks of the orchestrator: thin wrappers around the engine and the sweep."""

from __future__ import annotations

import threading
from typing import Any

import redis
from celery import signals
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from structlog.contextvars import bound_contextvars

from orchestrator import engine, retention
from orchestrator.sweep import sweep
from orchestrator.webhook_sweep import send_due_deliveries
from shared import metrics
from shared.celery_app import celery_app
from shared.db import make_engine, make_sessionmaker, session_scope
from shared.logging import get_logger
from shared.queues import TASK_PLAN, TASK_STEP_DONE, TASK_SWEEP, llm_queue
from shared.settings import get_settings

log = get_logger(__name__)

_sessions: sessionmaker[Session] | None = None
_redis: redis.Redis | None = None
_lock = threading.Lock()


def sessions() -> sessionmaker[Session]:
    """The orchestrator's session factory, built on first use in this process."""
    global _sessions
    with _lock:
        if _sessions is None:
            _sessions = make_sessionmaker(make_engine(get_settings().database_url))
        return _sessions


def _queue_is_empty(backend: str, lane: str) -> bool:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(get_settings().broker_url)
    key = get_settings().broker_key_prefix + llm_queue(backend, lane)
    return int(_redis.llen(key)) == 0


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
    with bound_contextvars(job_id=job_id), session_scope(sessions()) as session:
        engine.plan_job(session, get_settings(), job_id)


@celery_app.task(name=TASK_STEP_DONE, **_RETRY)
def step_done(step_id: str) -> None:
    """Advance a job after one of its steps ended."""
    with bound_contextvars(step_id=step_id), session_scope(sessions()) as session:
        engine.step_done(session, get_settings(), step_id)


@celery_app.task(name=TASK_SWEEP, **_RETRY)
def sweep_task() -> dict[str, int]:
    """Re-send lost work and expire stuck jobs."""
    with session_scope(sessions()) as session:
        report = sweep(session, get_settings(), _queue_is_empty)
    # Its own transaction: a webhook backlog never holds up the job sweep.
    with session_scope(sessions()) as session:
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
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(settings.broker_url)
    mark = f"{settings.broker_key_prefix}llmjobs:retention-ran"
    try:
        if not _redis.set(mark, "1", nx=True, ex=max(1, int(settings.retention_interval_s))):
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
        with session_scope(sessions()) as session:
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


@signals.worker_process_init.connect
def _after_fork(**_: Any) -> None:
    global _sessions, _redis
    _sessions, _redis = None, None
