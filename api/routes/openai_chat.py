"""POST /v1/chat/completions, OpenAI-compatible: runs a chat job and waits for its answer."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Body, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.dbgate import DbGate
from api.deps import JobsWrite, SessionDep, SettingsDep, leave_db
from api.schemas.common import error_responses
from api.schemas.openai_chat import ChatCompletion, ChatCompletionRequest
from api.services import openai_chat as service
from api.waiters import JobWaiters
from shared.jobs.status import JobStatus

router = APIRouter(prefix="/v1", tags=["openai"])



@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    summary="Create a chat completion",
    description="OpenAI-compatible chat: runs as a chat job (visible in /v1/jobs) on the "
    "backend that `model` names (`backend/model`, or a model routed by configuration) and "
    "answers when it ends. With `stream: true` the answer comes as server-sent "
    "`chat.completion.chunk` events ending with `data: [DONE]`. When no answer comes within "
    "the configured wait, 504 names the job id (in `param`) to poll.",
    operation_id="CreateChatCompletion",
    responses={
        200: {
            "content": {
                "text/event-stream": {
                    # One server-sent event, as OpenAPI 3.2's itemSchema describes them.
                    "schema": {
                        "type": "object",
                        "properties": {
                            "event": {"type": "string"},
                            "data": {
                                "type": "string",
                                "description": "A chat.completion.chunk as JSON; the last "
                                "event is `[DONE]`",
                            },
                        },
                        "required": ["data"],
                    }
                }
            },
            "description": "The completion (or its chunks when streaming)",
        },
        **error_responses(400, 401, 404, 409, 413, 422, 429),
        502: {"model": error_responses(400)[400]["model"], "description": "Backend failed"},
        504: {"model": error_responses(400)[400]["model"], "description": "Still running"},
    },
)
async def create_chat_completion(
    request: Request,
    body: Annotated[ChatCompletionRequest, Body()],
    caller: JobsWrite,
    session: SessionDep,
    settings: SettingsDep,
) -> ChatCompletion | StreamingResponse:
    job = await run_in_threadpool(
        service.create_chat_job, session, settings, caller.tenant_id, body
    )
    job_id = job.id
    # The rest is waiting, which must hold neither a transaction nor a database slot.
    await leave_db(session)
    sessions: sessionmaker[Session] = request.app.state.sessions
    gate: DbGate = request.app.state.db_gate
    waiters: JobWaiters = request.app.state.waiters
    timeout = settings.openai_chat_timeout_s
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            service.stream_completion(
                gate, sessions, waiters, job_id, body.model, timeout, include_usage
            ),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Job-ID": job_id},
        )
    deadline = time.monotonic() + timeout
    done = None
    while done is None and time.monotonic() < deadline:
        done = await service.wait_for_job(gate, sessions, waiters, job_id, deadline, timeout)
    if done is None:
        raise service.timeout_error(job_id, timeout)
    if done.status != JobStatus.SUCCEEDED:
        raise service.job_error(done)
    return ChatCompletion.model_validate(service.completion(done, body.model))
