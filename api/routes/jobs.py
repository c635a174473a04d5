"""/v1/jobs: create, poll or long-poll (202 while running, 200 when done), list and cancel."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import JobsRead, JobsWrite, SessionDep, SettingsDep, leave_db
from api.errors import ApiError
from api.schemas.common import error_responses
from api.schemas.jobs import JobCreate, JobList, JobOut
from api.services import files as files_service
from api.services import jobs as service
from api.services.job_wait import MAX_WAIT_S, wait_for_end
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
    "queued or running. With fail_on_error=true a failed job answers 500, a cancelled one 409. "
    f"With wait=N (0 to {MAX_WAIT_S} seconds; more is refused with 422) the request is held "
    "until the job ends and answers at once when it does; when N seconds pass first it answers "
    "202 as without wait.",
    operation_id="GetJob",
    responses={202: {"model": JobOut, "description": "Still running"},
               **error_responses(401, 404, 409, 422, 500)},
)
async def get_job(
    job_id: str,
    request: Request,
    response: Response,
    caller: JobsRead,
    session: SessionDep,
    settings: SettingsDep,
    fail_on_error: Annotated[bool, Query(description="Failed → 500, cancelled → 409")] = False,
    wait: Annotated[int, Query(
        ge=0, le=MAX_WAIT_S,
        description="Seconds to hold the request while the job is queued or running "
        f"(0 to {MAX_WAIT_S}, below Power Automate's 120 s limit); the answer comes as soon "
        "as the job ends",
    )] = 0,
) -> JobOut:
    job = await run_in_threadpool(service.get_job, session, caller.tenant_id, job_id)
    if wait and job.status in JOB_ACTIVE:
        # Nothing to hold while waiting: the connection and the database slot go back now.
        await leave_db(session)
        state = request.app.state
        job, out = await wait_for_end(
            state.db_gate, state.sessions, state.waiters, settings, caller.tenant_id, job_id,
            wait,
        )
    else:
        out = await run_in_threadpool(job_view, session, settings, job)
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
