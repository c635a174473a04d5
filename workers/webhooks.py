"""Celery task of the webhooks pool: one delivery attempt per message, retries via the sweep."""

from __future__ import annotations

import threading
from typing import Any

from celery import signals
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from shared.celery_app import celery_app
from shared.db import make_engine, make_sessionmaker
from shared.queues import TASK_DELIVER_WEBHOOK
from shared.settings import get_settings
from workers.webhook_delivery import deliver

_sessions: sessionmaker[Session] | None = None
_lock = threading.Lock()


def sessions() -> sessionmaker[Session]:
    """This process's session factory, built on first use."""
    global _sessions
    with _lock:
        if _sessions is None:
            _sessions = make_sessionmaker(make_engine(get_settings().database_url))
        return _sessions


@celery_app.task(
    name=TASK_DELIVER_WEBHOOK,
    # A database hiccup while claiming or recording: retry soon; the sweep covers longer ones.
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=30,
    max_retries=10,
    # An attempt is bounded by its HTTP timeout; this only frees a slot wedged elsewhere.
    time_limit=300,
)
def deliver_task(delivery_id: str) -> str:
    """Attempt one webhook delivery if it is due."""
    return deliver(sessions(), get_settings(), delivery_id)


@signals.worker_process_init.connect
def _after_fork(**_: Any) -> None:
    global _sessions
    _sessions = None
