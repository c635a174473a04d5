"""GET /v1/jobs/{id}/events: server-sent events of a job until it ends."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from api.deps import JobsRead, SessionDep
from api.schemas.common import error_responses
from api.services import jobs as job_service
from api.services.job_stream import job_stream

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

@router.get(
    "/{job_id}/events",
    summary="Follow a job",
    description="Server-sent events until the job ends: `progress` (status and counts, on "
    "every change), `delta` (partial chat output as the backend streams it: `content`, "
    "`step_id`, `attempt`; drop earlier attempts' text when `attempt` grows), then `end`.",
    operation_id="JobEvents",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **error_responses(401, 404)},
)
def job_stream_route(
    job_id: str, request: Request, session: SessionDep, caller: JobsRead
) -> StreamingResponse:
    job_service.get_job(session, caller.tenant_id, job_id)  # 404 for other tenants' ids
    state = request.app.state
    return StreamingResponse(
        job_stream(state.waiters, state.db_gate, state.sessions, job_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
