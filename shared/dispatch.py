"""Sending messages after commit: the only way rows and broker messages stay consistent."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.orm import Session

from shared.celery_app import get_celery
from shared.db import after_commit
from shared.queues import (
    ORCHESTRATOR_QUEUE,
    TASK_DELIVER_WEBHOOK,
    TASK_PLAN,
    TASK_RUN_STEP,
    TASK_STEP_DONE,
    WEBHOOK_QUEUE,
    llm_queue,
)


class Dispatcher(Protocol):
    """Sends task messages; implementations talk to the broker."""

    def send(self, task: str, args: list[str], queue: str) -> None: ...


class CeleryDispatcher:
    """Dispatcher over the shared Celery app."""

    def send(self, task: str, args: list[str], queue: str) -> None:
        get_celery().send_task(task, args=args, queue=queue)


_dispatcher: Dispatcher = CeleryDispatcher()


def set_dispatcher(dispatcher: Dispatcher) -> None:
    """Replace the dispatcher (processes without a broker, tests of pure logic)."""
    global _dispatcher
    _dispatcher = dispatcher


def enqueue_plan(session: Session, job_id: str) -> None:
    """Ask the orchestrator to plan a job, once this transaction commits."""
    after_commit(session, lambda: _dispatcher.send(TASK_PLAN, [job_id], ORCHESTRATOR_QUEUE))


def enqueue_step(session: Session, step_id: str, backend: str, lane: str) -> None:
    """Send a step to its backend's pool, once this transaction commits."""
    queue = llm_queue(backend, lane)
    after_commit(session, lambda: _dispatcher.send(TASK_RUN_STEP, [step_id], queue))


def enqueue_step_done(session: Session, step_id: str) -> None:
    """Tell the orchestrator a step ended, once this transaction commits."""
    after_commit(
        session, lambda: _dispatcher.send(TASK_STEP_DONE, [step_id], ORCHESTRATOR_QUEUE)
    )


def enqueue_delivery(session: Session, delivery_id: str) -> None:
    """Ask a webhooks worker to attempt a delivery, once this transaction commits."""
    after_commit(
        session, lambda: _dispatcher.send(TASK_DELIVER_WEBHOOK, [delivery_id], WEBHOOK_QUEUE)
    )
