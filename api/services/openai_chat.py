"""POST /v1/chat/completions: a chat job, waited for without holding a thread or a lock."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from api.dbgate import DbGate
from api.errors import ApiError, error_body
from api.schemas.jobs import ChatInput, ChatJobCreate, JobOptions
from api.services import jobs as job_service
from api.waiters import JobWaiters
from shared.backends.routing import ModelNotFound, route_model
from shared.db import read_session
from shared.jobs.status import JobStatus, job_is_terminal
from shared.models import Job
from shared.openai_compat import ChatCompletionRequest, completion_id, completion_object
from shared.settings import Settings

# A comment line every few seconds keeps proxies from closing a quiet stream.
KEEPALIVE_S = 10.0


def create_chat_job(
    session: Session, settings: Settings, tenant_id: str, body: ChatCompletionRequest
) -> Job:
    """Store the chat job (the caller commits it before waiting, so its plan is sent)."""
    try:
        backend, model = route_model(settings, body.model)
    except ModelNotFound as exc:
        raise ApiError(404, f"model {body.model!r}: {exc}", param="model") from exc
    try:
        create = ChatJobCreate(
            type="chat",
            backend=backend,
            model=model,
            input=ChatInput.model_validate({"messages": body.job_messages()}),
            options=JobOptions.model_validate(body.job_options()),
            metadata={"source": "openai.chat.completions"},
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ApiError(400, f"{where}: {first['msg']}", param="messages") from exc
    return job_service.create_job(session, settings, tenant_id, create)


def _read_job(sessions: sessionmaker[Session], job_id: str) -> Job | None:
    with read_session(sessions) as session:  # no write lock
        return session.get(Job, job_id)


def _ended(job: Job | None) -> bool:
    return job is not None and job_is_terminal(job.status)


async def wait_for_job(
    gate: DbGate, sessions: sessionmaker[Session], waiters: JobWaiters, job_id: str,
    deadline: float, tick: float = KEEPALIVE_S,
) -> Job | None:
    """The job once it ended; None when `deadline` (monotonic) or `tick` passed first.

    Woken by the push of the job's end; holds a database slot only for each read.
    """
    until = min(deadline, time.monotonic() + tick)

    async def read() -> Job | None:
        return await gate.run(_read_job, sessions, job_id)

    job = await waiters.wait_until(job_id, read, _ended, until)
    return job if _ended(job) else None


def timeout_error(job_id: str, timeout: float) -> ApiError:
    """504 naming the job, so the client can poll it."""
    return ApiError(
        504,
        f"no answer within {timeout:g} s; the request is still running as job {job_id}: "
        f"poll GET /v1/jobs/{job_id} for the result",
        param=job_id,
    )


def job_error(job: Job) -> ApiError:
    """The job's failure as an OpenAI-style error answer."""
    if job.status == JobStatus.CANCELLED:
        return ApiError(409, f"job {job.id} was cancelled before it answered", param=job.id)
    error = job.error or {}
    message = f"job {job.id} failed: {error.get('message', 'the backend call failed')}"
    status = error.get("status")
    if isinstance(status, int) and 400 <= status < 500 and status != 429:
        return ApiError(400, message, param=job.id)
    return ApiError(502, message, type="backend_unavailable", param=job.id)


def _answers(job: Job) -> list[tuple[str, str]]:
    result = job.result or {}
    choices = result.get("choices") or [result]
    return [
        (str((c.get("message") or {}).get("content", "")), str(c.get("finish_reason", "stop")))
        for c in choices
    ]


def completion(job: Job, model: str) -> dict[str, Any]:
    """The finished job as a `chat.completion` object."""
    return completion_object(
        model=model,
        answers=_answers(job),
        prompt_tokens=job.prompt_tokens,
        completion_tokens=job.completion_tokens,
        id_=completion_id(),
    )


def _sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


def _pieces(text: str) -> list[str]:
    # Word-sized pieces, as a streaming model would send them (whitespace kept).
    out: list[str] = []
    for word in text.split(" "):
        out.append(word if not out else " " + word)
    return [p for p in out if p] or [""]


def chunk_events(job: Job, model: str, include_usage: bool) -> list[str]:
    """The finished answer as `chat.completion.chunk` events, ending with [DONE]."""
    cid, created = completion_id(), int(time.time())

    def chunk(index: int, delta: dict[str, Any], reason: str | None) -> dict[str, Any]:
        return {
            "id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": index, "delta": delta, "finish_reason": reason,
                         "logprobs": None}],
        }

    events = []
    for index, (content, reason) in enumerate(_answers(job)):
        events.append(_sse(chunk(index, {"role": "assistant", "content": ""}, None)))
        events.extend(_sse(chunk(index, {"content": p}, None)) for p in _pieces(content))
        events.append(_sse(chunk(index, {}, reason)))
    if include_usage:
        usage = {
            "prompt_tokens": job.prompt_tokens,
            "completion_tokens": job.completion_tokens,
            "total_tokens": job.prompt_tokens + job.completion_tokens,
        }
        events.append(_sse({"id": cid, "object": "chat.completion.chunk", "created": created,
                            "model": model, "choices": [], "usage": usage}))
    events.append(_sse("[DONE]"))
    return events


async def stream_completion(
    gate: DbGate, sessions: sessionmaker[Session], waiters: JobWaiters, job_id: str, model: str,
    timeout: float, include_usage: bool,
) -> AsyncIterator[str]:
    """Server-sent events: keep-alive comments while the job runs, then the answer."""
    deadline = time.monotonic() + timeout
    job: Job | None = None
    while time.monotonic() < deadline:
        job = await wait_for_job(gate, sessions, waiters, job_id, deadline)
        if job is not None:
            break
        yield ": still running\n\n"
    if job is None:
        err = timeout_error(job_id, timeout)
        yield _sse(error_body(err.type, err.message, err.param))
        return
    if job.status != JobStatus.SUCCEEDED:
        err = job_error(job)
        yield _sse(error_body(err.type, err.message, err.param))
        return
    for event in chunk_events(job, model, include_usage):
        yield event
