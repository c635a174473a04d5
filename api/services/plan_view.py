"""The plan of a job as clients see it: counts by kind and status, however many steps it has."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.schemas.jobs import StepCount
from shared.models import Step

# Map steps are the document's chunks (summarize and analyze plans).
CHUNK_KINDS = ("map",)


def step_counts(session: Session, job_id: str) -> list[StepCount]:
    """One GROUP BY over the job's steps: cheap even for plans of thousands of steps."""
    rows = session.execute(
        select(Step.kind, Step.status, func.count())
        .where(Step.job_id == job_id)
        .group_by(Step.kind, Step.status)
        .order_by(Step.kind, Step.status)
    ).all()
    return [StepCount(kind=kind, status=status, count=count) for kind, status, count in rows]


def chunk_progress(counts: list[StepCount]) -> tuple[int | None, int | None]:
    """(chunks, chunks done) of a plan that split its document, else (None, None)."""
    chunks = sum(c.count for c in counts if c.kind in CHUNK_KINDS)
    if not chunks:
        return None, None
    done = sum(c.count for c in counts if c.kind in CHUNK_KINDS and c.status == "succeeded")
    return chunks, done
