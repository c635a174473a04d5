"""Celery tasks of the backend pools: deserialise ids, call the logic, leave acks to Celery."""

from __future__ import annotations

from typing import Any

from celery import signals
from sqlalchemy.exc import OperationalError

from shared.celery_app import at_process_start, celery_app
from shared.db import close_process_sessions, open_process_sessions
from shared.jobs.channel import publisher
from shared.queues import TASK_RUN_STEP
from shared.settings import get_settings
from workers.runtime import get_runtime, start_runtime, stop_runtime
from workers.steps.registry import run_step


@celery_app.task(
    name=TASK_RUN_STEP,
    # A database outage while claiming: try again shortly; the sweep covers longer ones.
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=30,
    max_retries=10,
    # The step has its own deadline; this only stops a wedged call from holding a slot forever.
    soft_time_limit=None,
)
def run_step_task(step_id: str) -> str:
    """Run one step of a job on this worker's backend."""
    return run_step(get_runtime(), step_id)


def _start() -> None:
    settings = get_settings()
    start_runtime(settings, open_process_sessions(settings.database_url))
    publisher(settings)  # one-step jobs end here, and their ends are announced from here


at_process_start(_start)


@signals.worker_shutdown.connect
def _close(**_: Any) -> None:
    stop_runtime()
    close_process_sessions()
