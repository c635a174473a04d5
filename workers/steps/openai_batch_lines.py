"""OpenAI Batch API lines as rows of a chunk step: each line one chat completion, stored as it ends.

The chunk loop (lease, heartbeat, storing, resuming) is workers/steps/chunks.py's; this module
only says how a line is read and answered. A line's output is its `chat.completion` body (JSON), its
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

from shared.backends import BackendError
from shared.backends.routing import route_model
from shared.jobs.status import StepStatus
from shared.logging import get_logger
from shared.openai_batch_input import read_span
from shared.openai_compat import ChatCompletionRequest, completion_object
from shared.redaction import redacting_adapter
from shared.settings import Settings
from workers.backends.base import Adapter
from workers.fallback import Chain
from workers.lease import ClaimedStep
from workers.llm import run_llm_step
from workers.runtime import WorkerRuntime
from workers.steps import chunks
from workers.steps.chunks import RowOutcome

log = get_logger(__name__)

Span = tuple[int, int, int]  # line number, byte offset, length


def _load(runtime: WorkerRuntime, claimed: ClaimedStep) -> tuple[list[Span], Path, int]:
    """The chunk's lines not answered yet, the input file's path, and how many were."""
    spans = [(int(n), int(o), int(ln)) for n, o, ln in claimed.input.get("spans", [])]
    loaded = chunks.load(runtime, claimed, [s[0] for s in spans],
                         "the batch's input file is gone")
    return [s for s in spans if s[0] not in loaded.done], loaded.path, len(loaded.done)


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


def run(runtime: WorkerRuntime, claimed: ClaimedStep, _chain: Chain) -> str:
    """Run a claimed chunk of Batch API lines to the end."""
    settings = runtime.settings
    try:
        adapter = runtime.adapter(claimed.backend)
        # PII redaction for tenants that want it, before text leaves for a cloud.
        adapter = redacting_adapter(runtime.sessions, runtime.backends, claimed, adapter)
        spans, path, skipped = _load(runtime, claimed)
    except (BackendError, OSError, ValueError) as exc:
        chunks.fail_chunk(runtime, claimed, getattr(exc, "message", None) or str(exc))
        return StepStatus.FAILED
    slots = chunks.slots_for(runtime, claimed.backend)
    results: queue.Queue[RowOutcome] = queue.Queue()
    expires = float(claimed.input.get("expires_at") or float("inf"))
    future = runtime.submit(
        run_lines(adapter, claimed.backend, path, spans, expires, settings, slots, results.put)
    )
    return chunks.drive(runtime, claimed, future, results, skipped)
