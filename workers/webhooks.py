"""Celery task of the webhooks pool: one delivery attempt per message, retries via the sweep."""

from __future__ import annotations

from typing import Any

from celery import signals
from sqlalchemy.exc import OperationalError

from shared.celery_app import at_process_start, celery_app
from shared.db import close_process_sessions, open_process_sessions, process_sessions
from shared.queues import TASK_DELIVER_WEBHOOK
from shared.settings import get_settings
from workers.webhook_delivery import deliver


def _start() -> None:
    open_process_sessions(get_settings().database_url)


at_process_start(_start)


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
    return deliver(process_sessions(), get_settings(), delivery_id)


@signals.worker_shutdown.connect
def _close(**_: Any) -> None:
    close_process_sessions()
