"""What happens when a job ends: metrics and subscriber notifications hang off this."""

from __future__ import annotations

from sqlalchemy.orm import Session

from shared.logging import get_logger
from shared.models import Job

log = get_logger(__name__)


def job_finished(session: Session, job: Job) -> None:
    """Record a job's end (called inside the transaction that ended it)."""
    log.info(
        "job finished",
        job_id=job.id,
        tenant=job.tenant_id,
        status=job.status,
        type=job.type,
        backend=job.backend,
    )
