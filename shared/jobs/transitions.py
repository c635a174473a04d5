"""Job transitions as conditional UPDATEs: every process applies the same ones.

Each returns whether it won: a message delivered twice, or two processes racing, change the
job once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared import metrics
from shared.db import changed
from shared.dispatch import enqueue_plan
from shared.jobs.notify import job_finished
from shared.jobs.status import JOB_ACTIVE, STEP_ACTIVE, JobStatus, StepStatus
from shared.models import Job, Step, utcnow

# Jobs whose progress counts rows (RowResult), not steps.
ROW_JOB_TYPES = ("batch", "openai_batch")


def create(session: Session, job: Job) -> Job:
    """Store a new job as queued and ask the orchestrator to plan it once committed."""
    job.status = JobStatus.QUEUED
    session.add(job)
    session.flush()
    enqueue_plan(session, job.id)
    return job


def start(session: Session, job: Job) -> bool:
    """queued → running at stage 0; False when another process started (or ended) it."""
    now = utcnow()
    won = changed(session,
        update(Job)
        .where(Job.id == job.id, Job.status == JobStatus.QUEUED, Job.stage == -1)
        .values(status=JobStatus.RUNNING, stage=0, started_at=now, updated_at=now)
    )
    if won:
        session.refresh(job)
    return bool(won)


def refresh_progress(session: Session, job: Job) -> None:
    """Copy the steps' counts and token usage onto the job (row jobs count rows instead)."""
    if job.type in ROW_JOB_TYPES:
        return
    done, failed, prompt, completion = session.execute(
        select(
            func.count().filter(Step.status == StepStatus.SUCCEEDED),
            func.count().filter(Step.status == StepStatus.FAILED),
            func.coalesce(func.sum(Step.prompt_tokens), 0),
            func.coalesce(func.sum(Step.completion_tokens), 0),
        ).where(Step.job_id == job.id)
    ).one()
    job.progress_done, job.progress_failed = done, failed
    job.prompt_tokens, job.completion_tokens = prompt, completion
    session.flush()


def finish(
    session: Session,
    job: Job,
    status: JobStatus,
    *,
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    output_file_id: str | None = None,
    stage: int | None = None,
) -> bool:
    """End an active job with `status`; its webhooks and metrics follow in the same commit.

    With `stage`, only while the job is at that stage, and it moves past it (as advancing does).
    """
    now = utcnow()
    at_stage = () if stage is None else (Job.stage == stage,)
    moved = {} if stage is None else {"stage": stage + 1}
    won = changed(session,
        update(Job)
        .where(Job.id == job.id, Job.status.in_(JOB_ACTIVE), *at_stage)
        .values(
            **moved,
            status=status,
            result=result,
            error=error,
            output_file_id=output_file_id,
            finished_at=now,
            updated_at=now,
        )
    )
    if won:
        session.refresh(job)
        refresh_progress(session, job)
        _ended(session, job)
    return bool(won)


def fail(session: Session, job: Job, error: dict[str, Any]) -> bool:
    """Fail a job that can make no progress (expired, unplannable); its open steps stop."""
    _stop_steps(session, job, STEP_ACTIVE)
    return finish(session, job, JobStatus.FAILED, error=error)


def cancel(session: Session, job: Job) -> bool:
    """Cancel a queued or running job: unsent steps are never sent, running ones are told."""
    now = utcnow()
    won = changed(session,
        update(Job)
        .where(Job.id == job.id, Job.status.in_(JOB_ACTIVE))
        .values(status=JobStatus.CANCELLED, cancel_requested=True, finished_at=now,
                updated_at=now)
    )
    if not won:
        return False
    _stop_steps(session, job, STEP_ACTIVE)
    session.refresh(job)
    _ended(session, job)
    return True


def request_cancel(session: Session, job: Job, plan: dict[str, Any]) -> bool:
    """Mark a running job as cancelling: steps not yet running never run, running ones end."""
    now = utcnow()
    won = changed(session,
        update(Job).where(Job.id == job.id, Job.status == JobStatus.RUNNING)
        .values(cancel_requested=True, updated_at=now, plan=plan)
    )
    if won:
        _stop_steps(session, job, frozenset({StepStatus.PENDING, StepStatus.QUEUED}))
        session.refresh(job)
    return bool(won)


def _stop_steps(session: Session, job: Job, statuses: frozenset[StepStatus]) -> None:
    session.execute(
        update(Step)
        .where(Step.job_id == job.id, Step.status.in_(statuses))
        .values(status=StepStatus.CANCELLED, finished_at=utcnow(), lease_token=None)
    )


def _ended(session: Session, job: Job) -> None:
    job_finished(session, job)
    metrics.record_job_end(session, job)
