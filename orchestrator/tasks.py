"""Celery tasks of the orchestrator: thin wrappers around the engine and the sweep."""

from __future__ import annotations

import threading
from typing import Any

import redis
from celery import signals
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from orchestrator import engine
from orchestrator.sweep import sweep
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
    with session_scope(sessions()) as session:
        engine.plan_job(session, get_settings(), job_id)


@celery_app.task(name=TASK_STEP_DONE, **_RETRY)
def step_done(step_id: str) -> None:
    """Advance a job after one of its steps ended."""
    with session_scope(sessions()) as session:
        engine.step_done(session, get_settings(), step_id)


@celery_app.task(name=TASK_SWEEP, **_RETRY)
def sweep_task() -> dict[str, int]:
    """Re-send lost work and expire stuck jobs."""
    with session_scope(sessions()) as session:
        report = sweep(session, get_settings(), _queue_is_empty)
    if any(vars(report).values()):
        log.info("sweep", **vars(report))
    return vars(report)


@signals.worker_process_init.connect
def _after_fork(**_: Any) -> None:
    global _sessions, _redis
    _sessions, _redis = None, None
