"""Celery tasks of the backend pools: deserialise ids, call the logic, leave acks to Celery."""

from __future__ import annotations

from typing import Any

from celery import signals
from sqlalchemy.exc import OperationalError

from shared.celery_app import celery_app
from shared.queues import TASK_RUN_STEP
from workers.runtime import forget_runtime, get_runtime, reset_runtime
from workers.service import run_step


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


@signals.worker_process_init.connect
def _fresh_runtime_after_fork(**_: Any) -> None:
    # Connections and threads do not survive fork: build them in the child.
    forget_runtime()


@signals.worker_ready.connect
def _warm_up(**_: Any) -> None:
    get_runtime()


@signals.worker_shutdown.connect
def _close(**_: Any) -> None:
    reset_runtime()
