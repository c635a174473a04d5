"""The Celery app shared by every process, configured for at-least-once delivery."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from celery import Celery, signals

from shared.queues import ORCHESTRATOR_QUEUE, TASK_SWEEP
from shared.settings import get_settings


def configure(app: Celery) -> None:
    """Apply broker settings; called at process start-up, not at import."""
    settings = get_settings()
    app.conf.update(
        broker_url=settings.broker_url,
        # Plain redis:// only (TLS and socket URLs keep kombu's own choice): see the module.
        broker_transport=(
            "shared.broker_transport:Transport"
            if settings.broker_url.startswith("redis://") else None
        ),
        # Results live in the database; Celery's result backend is not used.
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # A message is acked only after its task ran, and re-delivered if the worker died.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One message at a time per process, so a slow step never holds others hostage.
        worker_prefetch_multiplier=1,
        task_default_queue=ORCHESTRATOR_QUEUE,
        task_create_missing_queues=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        # Above the longest step (deadline + slack); the sweep re-sends lost steps far sooner.
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            "socket_keepalive": True,
            "health_check_interval": 10,
            "global_keyprefix": settings.broker_key_prefix,
        },
        worker_hijack_root_logger=False,
        # Task events are for Flower, which turns them on in the workers while it runs; sent
        # all the time they cost four Redis publishes per task on the hot path.
        worker_send_task_events=False,
        task_send_sent_event=False,
        beat_schedule={
            "sweep": {
                "task": TASK_SWEEP,
                "schedule": settings.sweep_interval_s,
                "options": {"queue": ORCHESTRATOR_QUEUE, "expires": settings.sweep_interval_s},
            }
        },
        timezone="UTC",
    )


celery_app = Celery("llm_jobs")
celery_app.conf.update(task_default_queue=ORCHESTRATOR_QUEUE)


def get_celery() -> Celery:
    """The configured app (configures it the first time)."""
    if not celery_app.conf.get("llmjobs_configured"):
        configure(celery_app)
        celery_app.conf.llmjobs_configured = True
    return celery_app


def _forks_children(worker: Any) -> bool:
    """True when the worker's pool runs tasks in forked children (prefork), not in itself."""
    pool = getattr(worker, "pool_cls", None)
    name = pool if isinstance(pool, str) else getattr(pool, "__module__", "")
    return name in ("prefork", "processes") or "prefork" in name


def at_process_start(build: Callable[[], None]) -> None:
    """Run `build` once in every process that runs tasks, before its first task.

    A prefork child gets `worker_process_init`; thread and solo pools run tasks in the worker
    process itself, which only `worker_init` reaches. Connections and threads do not survive a
    fork, so nothing is built in a prefork parent.
    """
    built_in: list[int] = []

    def once() -> None:
        if os.getpid() not in built_in:
            built_in.append(os.getpid())
            build()

    def on_worker_init(sender: Any = None, **_: Any) -> None:
        if not _forks_children(sender):
            once()

    signals.worker_init.connect(on_worker_init, weak=False)
    signals.worker_process_init.connect(lambda **_: once(), weak=False)
