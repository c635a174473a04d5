"""/v1/jobs: create, poll or long-poll (202 while running, 200 when done), list and cancel."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import Caller, SessionDep, SettingsDep, release_db_slot, require_scope
from api.errors import ApiError
from api.schemas.common import error_responses
from api.schemas.jobs import JobCreate, JobList, JobOut, JobStatus
from api.services import files as files_service
from api.services import jobs as service
from api.services.job_wait import ACTIVE, MAX_WAIT_S, wait_for_end
from api.urls import base_url

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

ReadCaller = Annotated[Caller, require_scope("jobs:read")]
WriteCaller = Annotated[Caller, require_scope("jobs:write")]


def _polling_headers(response: Response, request: Request, job_id: str, retry_after: int) -> None:
    response.headers["Location"] = f"{base_url(request)}/v1/jobs/{job_id}"
    response.headers["Retry-After"] = str(retry_after)


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
    request: Request,
    response: Response,
    body: Annotated[JobCreate, Body()],
    caller: WriteCaller,
    session: SessionDep,
    settings: SettingsDep,
) -> JobOut:
    extra: dict[str, Any] = {}
    if body.type == "analyze" and body.input.document.file_id:
        extra = files_service.document_source(
            session, caller.tenant_id, body.input.document.file_id
        )
    job = service.create_job(session, settings, caller.tenant_id, body, **extra)
    _polling_headers(response, request, job.id, settings.poll_retry_after_s)
    return service.job_out(session, job, base_url(request))


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
    caller: ReadCaller,
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
    base = base_url(request)
    job = await run_in_threadpool(service.get_job, session, caller.tenant_id, job_id)
    if wait and job.status in ACTIVE:
        # Nothing to hold while waiting: the connection and the database slot go back now.
        await run_in_threadpool(session.commit)
        release_db_slot(session)
        state = request.app.state
        job, out = await wait_for_end(
            state.db_gate, state.sessions, state.waiters, caller.tenant_id, job_id, base, wait
        )
    else:
        out = await run_in_threadpool(service.job_out, session, job, base)
    if job.status in ACTIVE:
        response.status_code = 202
        _polling_headers(response, request, job.id, settings.poll_retry_after_s)
    elif fail_on_error and job.status == "failed":
        message = (job.error or {}).get("message", "the job failed")
        raise ApiError(500, f"job {job.id} failed: {message}", type="internal")
    elif fail_on_error and job.status == "cancelled":
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
    request: Request,
    caller: ReadCaller,
    session: SessionDep,
    status: JobStatus | None = None,
    type: Literal["chat", "summarize", "analyze", "batch", "openai_batch"] | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(max_length=40, description="next_after of a page")] = None,
) -> JobList:
    rows, has_more = service.list_jobs(
        session, caller.tenant_id, status=status, job_type=type, limit=limit, after=after
    )
    base = base_url(request)
    return JobList(
        data=[service.job_out(session, j, base, with_steps=False) for j in rows],
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
    job_id: str, request: Request, caller: WriteCaller, session: SessionDep
) -> JobOut:
    job = service.cancel(session, caller.tenant_id, job_id)
    return service.job_out(session, job, base_url(request))
