"""OpenAI Batch API lines as rows of a chunk step: each line one chat completion, stored as it ends.

The chunk loop (lease, heartbeat, storing, resuming) is workers/rows.py's; this module only
says how a line is read and answered. A line's output is its `chat.completion` body (JSON), its
error the backend's status and error body, so the output files can be written in OpenAI's form.
"""

from __future__ import annotations

import asyncio
import json
import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select

from shared import storage
from shared.backends import BackendError
from shared.backends.routing import route_model
from shared.db import session_scope
from shared.lanes import row_slots
from shared.logging import get_logger
from shared.models import Job, RowResult
from shared.openai_batch_input import read_span
from shared.openai_compat import ChatCompletionRequest, completion_object
from shared.redaction import redacting_adapter
from shared.settings import Settings
from workers import leases
from workers.backends.base import Adapter
from workers.execute import run_llm_step
from workers.rows import RowOutcome, _fail, drive_chunk, slots_for
from workers.runtime import WorkerRuntime

log = get_logger(__name__)

Span = tuple[int, int, int]  # line number, byte offset, length


def _load(runtime: WorkerRuntime, claimed: leases.ClaimedStep) -> tuple[list[Span], Path, int]:
    """The chunk's lines not answered yet, the input file's path, and how many were."""
    spans = [(int(n), int(o), int(ln)) for n, o, ln in claimed.input.get("spans", [])]
    with session_scope(runtime.sessions) as session:
        job = session.get(Job, claimed.job_id)
        if job is None or not job.input_file_id:
            raise ValueError("the batch's input file is gone")
        path = storage.path_for(runtime.settings.data_dir, job.tenant_id, job.input_file_id)
        done = set(session.scalars(
            select(RowResult.row_index).where(
                RowResult.job_id == claimed.job_id,
                RowResult.row_index.in_([s[0] for s in spans]),
            )
        ))
    return [s for s in spans if s[0] not in done], path, len(done)


def _error(status: int | None, message: str, type_: str, param: str | None = None) -> str:
    if status is None:
        return json.dumps({"code": type_, "message": message})
    body = {"error": {"message": message, "type": type_, "param": param, "code": None}}
    return json.dumps({"status_code": status, "body": body})


async def answer_line(
    adapter: Adapter, backend: str, line: dict[str, Any], number: int, settings: Settings
) -> RowOutcome:
    """One line's chat completion (n calls for n answers), or its error."""
    try:
        request = ChatCompletionRequest.model_validate(line.get("body"))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        return RowOutcome(number, None, _error(400, f"{where}: {first['msg']}",
                                               "invalid_request_error", where))
    _, model = route_model(settings, request.model)  # the backend was checked at validation
    step_input = {"messages": request.job_messages(), "options": request.job_options()}
    try:
        outs = await asyncio.gather(
            *(run_llm_step(adapter, step_input, model, settings) for _ in range(request.n))
        )
    except BackendError as exc:
        kind = "invalid_request_error" if exc.status and exc.status < 500 else "server_error"
        return RowOutcome(number, None, _error(exc.status or 502, exc.message, kind))
    body = completion_object(
        model=request.model,
        answers=[(str(o.result.get("content", "")), str(o.result.get("finish_reason", "stop")))
                 for o in outs],
        prompt_tokens=sum(o.prompt_tokens for o in outs),
        completion_tokens=sum(o.completion_tokens for o in outs),
    )
    return RowOutcome(number, json.dumps(body), None, body["usage"]["prompt_tokens"],
                      body["usage"]["completion_tokens"])


async def run_lines(
    adapter: Adapter,
    backend: str,
    path: Path,
    spans: list[Span],
    expires_at: float,
    settings: Settings,
    slots: asyncio.Semaphore,
    deliver: Callable[[RowOutcome], None],
) -> None:
    """Answer the lines concurrently (bounded by `slots`), delivering each as it ends."""

    async def one(number: int, offset: int, length: int) -> None:
        async with slots:
            if time.time() >= expires_at:
                return  # past the window: left unanswered, reported as batch_expired
            line = await asyncio.to_thread(read_span, path, offset, length)
            try:
                outcome = await answer_line(adapter, backend, line, number, settings)
            except Exception as exc:  # noqa: BLE001 - one odd line is an error, not a lost chunk
                log.exception("batch line failed unexpectedly", line=number)
                outcome = RowOutcome(number, None, _error(500, f"internal error: {exc!r}",
                                                          "server_error"))
        deliver(outcome)

    await asyncio.gather(*(one(*span) for span in spans))


def run_openai_lines(runtime: WorkerRuntime, claimed: leases.ClaimedStep) -> str:
    """Run a claimed chunk of Batch API lines to the end."""
    settings = runtime.settings
    try:
        adapter = runtime.adapter(claimed.backend)
        # Issue 8: PII redaction for tenants that want it, before text leaves for a cloud.
        adapter = redacting_adapter(runtime.sessions, runtime.backends, claimed, adapter)
        spans, path, skipped = _load(runtime, claimed)
    except (BackendError, OSError, ValueError) as exc:
        _fail(runtime, claimed, getattr(exc, "message", None) or str(exc))
        return "failed"
    slots = slots_for(claimed.backend, row_slots(settings, runtime.backends.get(claimed.backend)))
    results: queue.Queue[RowOutcome] = queue.Queue()
    expires = float(claimed.input.get("expires_at") or float("inf"))
    future = runtime.submit(
        run_lines(adapter, claimed.backend, path, spans, expires, settings, slots, results.put)
    )
    return drive_chunk(runtime, claimed, future, results, skipped)
