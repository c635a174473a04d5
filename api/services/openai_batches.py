"""The Batch API over llm-jobs jobs: a batch is one `openai_batch` job, its id the job's twin."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.schemas.openai_batches import (
    Batch,
    BatchCreate,
    BatchError,
    BatchErrors,
    BatchRequestCounts,
    BatchStatus,
)
from api.services.jobs import store_job
from shared.backends import default_backend
from shared.dispatch import enqueue_step_done
from shared.ids import new_id
from shared.jobs import transitions
from shared.jobs.status import JobStatus
from shared.models import Job, RowResult, Step, StoredFile, utcnow
from shared.openai_batch_input import expires_at
from shared.settings import Settings

JOB_TYPE = "openai_batch"


def batch_id(job_id: str) -> str:
    """The batch id of a job: the same unique part, OpenAI's prefix."""
    return "batch_" + job_id.split("_", 1)[1]


def job_id_of(batch: str) -> str | None:
    """The job id behind a batch id; None when it is not one."""
    prefix, _, rest = batch.partition("_")
    return f"job_{rest}" if prefix == "batch" and rest.isalnum() else None


def create_batch(session: Session, settings: Settings, tenant_id: str, body: BatchCreate) -> Job:
    """Queue the batch's job; the orchestrator validates the file (status validating)."""
    file = session.scalar(
        select(StoredFile).where(StoredFile.id == body.input_file_id,
                                 StoredFile.tenant_id == tenant_id)
    )
    if file is None:
        raise ApiError(404, f"no file {body.input_file_id!r}", param="input_file_id")
    if file.purpose != "batch":
        raise ApiError(400, f"file {file.id} was uploaded with purpose {file.purpose!r}; "
                       "upload the JSONL with purpose batch", param="input_file_id")
    backend = default_backend(settings)
    if backend is None:
        raise ApiError(503, "no LLM backend is configured", type="backend_unavailable")
    job = Job(
        id=new_id("job"),
        tenant_id=tenant_id,
        type=JOB_TYPE,
        status=JobStatus.QUEUED,
        backend=backend,  # replaced by the lines' backend once validated
        model=None,
        input={"endpoint": body.endpoint, "completion_window": body.completion_window},
        options={},
        meta=dict(body.metadata or {}),
        input_file_id=file.id,
    )
    return store_job(session, settings, job)


def get_batch_job(session: Session, tenant_id: str, batch: str) -> Job:
    """The tenant's batch; 404 for unknown ids and other tenants' alike."""
    job_id = job_id_of(batch)
    job = None
    if job_id is not None:
        job = session.scalar(select(Job).where(
            Job.id == job_id, Job.tenant_id == tenant_id, Job.type == JOB_TYPE))
    if job is None:
        raise ApiError(404, f"no batch {batch!r}", param="batch_id")
    return job


def list_batches(
    session: Session, tenant_id: str, limit: int, after: str | None
) -> tuple[list[Job], bool]:
    """A page of the tenant's batches, newest first; `after` is a batch id."""
    query = select(Job).where(Job.tenant_id == tenant_id, Job.type == JOB_TYPE)
    if after:
        cursor = job_id_of(after)
        if cursor is None:
            raise ApiError(422, f"after: {after!r} is not a batch id", param="after")
        query = query.where(Job.id < cursor)
    rows = list(session.scalars(query.order_by(Job.id.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def cancel_batch(session: Session, job: Job) -> Job:
    """Cancelling: unsent lines never run, running chunks finish, finished lines are kept."""
    if job.status == JobStatus.QUEUED:
        transitions.cancel(session, job)
        return job
    if job.status != JobStatus.RUNNING:
        status = batch_status(job)
        raise ApiError(409, f"batch {batch_id(job.id)} is already {status}; nothing to cancel")
    if job.cancel_requested:
        return job
    plan = {**(job.plan or {}), "cancelling_at": int(utcnow().timestamp())}
    if not transitions.request_cancel(session, job, plan):
        return job
    # Let the orchestrator look at the stage now: with nothing running it finalizes at once.
    any_step = session.scalar(select(Step.id).where(Step.job_id == job.id).limit(1))
    if any_step:
        enqueue_step_done(session, any_step)
    return job


def batch_status(job: Job) -> BatchStatus:
    """The OpenAI status of a batch job."""
    if job.status == JobStatus.QUEUED:
        return "validating"
    if job.status == JobStatus.RUNNING:
        return "cancelling" if job.cancel_requested else "in_progress"
    if job.status == JobStatus.CANCELLED:
        return "cancelled"
    if job.status == JobStatus.FAILED:
        return "expired" if (job.error or {}).get("type") == "expired" else "failed"
    result_status = (job.result or {}).get("batch_status")
    return "cancelled" if result_status == "cancelled" else "completed"


def _ts(value: Any) -> int | None:
    return int(value.timestamp()) if value is not None else None


def _counts(session: Session, job: Job) -> BatchRequestCounts:
    if job.status != JobStatus.RUNNING:
        done, failed = job.progress_done, job.progress_failed
    else:
        done, failed = session.execute(
            select(func.count().filter(RowResult.error.is_(None)),
                   func.count().filter(RowResult.error.is_not(None)))
            .where(RowResult.job_id == job.id)
        ).one()
    return BatchRequestCounts(total=job.progress_total, completed=done, failed=failed)


def _errors(job: Job, status: BatchStatus) -> BatchErrors | None:
    if status != "failed" or not job.error:
        return None
    data = job.error.get("data")
    if isinstance(data, list):
        return BatchErrors(data=[BatchError.model_validate(e) for e in data])
    return BatchErrors(data=[BatchError(code=str(job.error.get("type", "failed")),
                                        message=str(job.error.get("message", "")))])


def batch_out(session: Session, job: Job) -> Batch:
    """The OpenAI Batch object of a batch job."""
    status = batch_status(job)
    result = job.result or {}
    finished = _ts(job.finished_at)
    return Batch(
        id=batch_id(job.id),
        endpoint=str(job.input.get("endpoint", "/v1/chat/completions")),
        errors=_errors(job, status),
        input_file_id=job.input_file_id or "",
        completion_window=str(job.input.get("completion_window", "24h")),
        status=status,
        output_file_id=result.get("output_file_id"),
        error_file_id=result.get("error_file_id"),
        created_at=int(job.created_at.timestamp()),
        in_progress_at=_ts(job.started_at),
        expires_at=int(expires_at(job).timestamp()),
        finalizing_at=finished if status in ("completed", "expired") or result else None,
        completed_at=finished if status == "completed" else None,
        failed_at=finished if status == "failed" else None,
        expired_at=finished if status == "expired" else None,
        cancelling_at=(job.plan or {}).get("cancelling_at"),
        cancelled_at=finished if status == "cancelled" else None,
        request_counts=_counts(session, job),
        metadata=job.meta or None,
        job_id=job.id,
    )
