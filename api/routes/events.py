"""GET /v1/jobs/{id}/events: server-sent events of a job until it ends."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from api.deps import Caller, SessionDep, require_scope
from api.schemas.common import error_responses
from api.services import jobs as job_service
from api.services.events import job_events

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

ReadCaller = Annotated[Caller, require_scope("jobs:read")]


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
def job_events_route(
    job_id: str, request: Request, session: SessionDep, caller: ReadCaller
) -> StreamingResponse:
    job_service.get_job(session, caller.tenant_id, job_id)  # 404 for other tenants' ids
    state = request.app.state
    return StreamingResponse(
        job_events(state.waiters, state.db_gate, state.sessions, job_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
