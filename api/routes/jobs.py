"""/v1/jobs: create, poll (202 while running, 200 when done), list and cancel."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Response

from api.deps import JobsRead, JobsWrite, SessionDep, SettingsDep
from api.errors import ApiError
from api.schemas.common import error_responses
from api.schemas.jobs import JobCreate, JobList, JobOut
from api.services import files as files_service
from api.services import jobs as service
from api.urls import polling_headers
from shared.jobs.status import JOB_ACTIVE, JobStatus
from shared.jobs.view import job_view

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])



@router.post(
    "",
    status_code=202,
    response_model=JobOut,
    summary="Create a job",
    description="Queue a chat, summarize or analyze job. Answers at once with 202, a Location "
    "to poll and Retry-After.",
    operation_id="CreateJob",
    responses=error_responses(401, 413, 422, 429),
)
def create_job(
    response: Response,
    body: Annotated[JobCreate, Body()],
    caller: JobsWrite,
    session: SessionDep,
    settings: SettingsDep,
) -> JobOut:
    extra: dict[str, Any] = {}
    if body.type == "analyze" and body.input.document.file_id:
        extra = files_service.document_source(
            session, caller.tenant_id, body.input.document.file_id
        )
    job = service.create_job(session, settings, caller.tenant_id, body, **extra)
    polling_headers(response, settings, job.id)
    return job_view(session, settings, job)


@router.get(
    "/{job_id}",
    response_model=JobOut,
    summary="Get a job",
    description="200 with the job once it ended; 202 with Location and Retry-After while it is "
    "queued or running. With fail_on_error=true a failed job answers 500, a cancelled one 409.",
    operation_id="GetJob",
    responses={202: {"model": JobOut, "description": "Still running"},
               **error_responses(401, 404, 409, 500)},
)
def get_job(
    job_id: str,
    response: Response,
    caller: JobsRead,
    session: SessionDep,
    settings: SettingsDep,
    fail_on_error: Annotated[bool, Query(description="Failed → 500, cancelled → 409")] = False,
) -> JobOut:
    job = service.get_job(session, caller.tenant_id, job_id)
    out = job_view(session, settings, job)
    if job.status in JOB_ACTIVE:
        response.status_code = 202
        polling_headers(response, settings, job.id)
    elif fail_on_error and job.status == JobStatus.FAILED:
        message = (job.error or {}).get("message", "the job failed")
        raise ApiError(500, f"job {job.id} failed: {message}", type="internal")
    elif fail_on_error and job.status == JobStatus.CANCELLED:
        raise ApiError(409, f"job {job.id} was cancelled")
    return out


@router.get(
    "",
    response_model=JobList,
    summary="List jobs",
    description="The tenant's jobs, newest first, with cursor pagination.",
    operation_id="ListJobs",
    responses=error_responses(401, 422),
)
def list_jobs(
    caller: JobsRead,
    session: SessionDep,
    settings: SettingsDep,
    status: JobStatus | None = None,
    type: Literal["chat", "summarize", "analyze", "batch", "openai_batch"] | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(max_length=40, description="next_after of a page")] = None,
) -> JobList:
    rows, has_more = service.list_jobs(
        session, caller.tenant_id, status=status, job_type=type, limit=limit, after=after
    )
    return JobList(
        data=[job_view(session, settings, j, with_steps=False) for j in rows],
        has_more=has_more,
        next_after=rows[-1].id if has_more and rows else None,
    )


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    summary="Cancel a job",
    description="Stop a queued or running job; steps not yet sent are never sent. 409 when the "
    "job already ended.",
    operation_id="CancelJob",
    responses=error_responses(401, 404, 409),
)
def cancel_job(
    job_id: str, caller: JobsWrite, session: SessionDep, settings: SettingsDep
) -> JobOut:
    job = service.cancel(session, caller.tenant_id, job_id)
    return job_view(session, settings, job)
