"""Prometheus metrics of every process; api serves them all at GET /metrics.

Processes of one host share a directory (prometheus-client multiprocess mode, see
`shared.metrics_setup`), so the API's scrape includes the orchestrator's and workers' series.
"""

from __future__ import annotations

import datetime as dt

from prometheus_client import Counter, Histogram
from sqlalchemy.orm import Session

from shared.db import after_commit
from shared.models import Job

# Seconds: LLM calls range from a few ms (a cache) to minutes (a long local generation).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400)

JOBS_CREATED = Counter(
    "llmjobs_jobs_created", "Jobs accepted by the API", ["type", "backend"]
)
JOBS_FINISHED = Counter(
    "llmjobs_jobs_finished", "Jobs that ended", ["type", "status", "backend"]
)
JOB_DURATION = Histogram(
    "llmjobs_job_duration_seconds", "Job creation to end", ["type", "status"],
    buckets=_JOB_BUCKETS,
)
STEPS_FINISHED = Counter(
    "llmjobs_steps_finished", "Steps a worker ran to an end", ["backend", "kind", "status"]
)
STEP_DURATION = Histogram(
    "llmjobs_step_duration_seconds", "Claim to stored result of one step, retries included",
    ["backend", "kind", "status"], buckets=_LATENCY_BUCKETS,
)
BACKEND_LATENCY = Histogram(
    "llmjobs_backend_request_seconds", "One call to an LLM backend", ["backend", "outcome"],
    buckets=_LATENCY_BUCKETS,
)
BACKEND_RETRIES = Counter(
    "llmjobs_backend_retries", "Backend calls retried after a transient error", ["backend", "error"]
)
SWEEP_ACTIONS = Counter(
    "llmjobs_sweep_actions", "Work the sweep re-sent, re-advanced or expired", ["action"]
)
RETENTION_PURGED = Counter(
    "llmjobs_retention_purged", "Rows and files removed by the retention purge", ["kind"]
)
# For the webhook delivery worker: outcome = delivered | retry | failed | refused | disabled.
WEBHOOK_DELIVERIES = Counter(
    "llmjobs_webhook_deliveries", "Webhook delivery attempts by outcome", ["outcome"]
)
WEBHOOK_LATENCY = Histogram(
    "llmjobs_webhook_request_seconds", "One POST to a webhook receiver", ["outcome"],
    buckets=_LATENCY_BUCKETS,
)


def job_finished(job_type: str, status: str, backend: str, created_at: dt.datetime | None,
                 finished_at: dt.datetime | None) -> None:
    """Count a job that just ended and observe how long it lived."""
    JOBS_FINISHED.labels(job_type, status, backend).inc()
    if created_at is not None and finished_at is not None:
        JOB_DURATION.labels(job_type, status).observe(
            max(0.0, (finished_at - created_at).total_seconds())
        )


def record_job_end(session: Session, job: Job) -> None:
    """Count a job's end once the transaction that ended it commits."""
    values = (job.type, job.status, job.backend, job.created_at, job.finished_at)
    after_commit(session, lambda: job_finished(*values))


def record_job_created(session: Session, job: Job) -> None:
    """Count a new job once the transaction that stored it commits."""
    labels = (job.type, job.backend)
    after_commit(session, lambda: JOBS_CREATED.labels(*labels).inc())
