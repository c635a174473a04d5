"""`llm-jobs webhooks-worker`: the pool that delivers signed webhooks."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from shared.logging import configure_logging
from shared.queues import WEBHOOK_QUEUE
from shared.settings import get_settings


def webhooks_worker(
    concurrency: Annotated[
        int | None, typer.Option(help="Deliveries at once; default: LLMJOBS_WEBHOOK_CONCURRENCY")
    ] = None,
) -> None:
    """Run the webhook delivery worker (queue "webhooks")."""
    import workers.webhooks  # noqa: F401  (registers the task)
    from shared.celery_app import get_celery

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json, "webhooks")
    get_celery().worker_main(
        [
            "--quiet",  # no banner on stdout: every line is a JSON log record
            "worker",
            "-Q", WEBHOOK_QUEUE,
            "-n", f"webhooks-{os.getpid()}@%h",
            # Deliveries wait on receivers' networks, not on the CPU.
            "--pool", "threads",
            "-c", str(concurrency or settings.webhook_concurrency),
            "--loglevel", settings.log_level,
            "--without-mingle",
            "--without-gossip",
        ]
    )
