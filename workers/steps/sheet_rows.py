"""Chunk steps of spreadsheet jobs: each row of the chunk is one call, its answer one cell."""

from __future__ import annotations

import asyncio
import queue
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared import prompts
from shared.analysis import json_schema_for
from shared.backends import BackendError, PermanentBackendError
from shared.jobs.status import StepStatus
from shared.logging import get_logger
from shared.redaction import redacting_adapter
from shared.settings import Settings
from shared.spreadsheets import Row, SpreadsheetError, TableSpec, read_rows, render_prompt
from workers.backends.base import Adapter
from workers.fallback import Chain
from workers.lease import ClaimedStep
from workers.llm import InvalidModelAnswer, run_llm_step
from workers.runtime import WorkerRuntime
from workers.steps import chunks
from workers.steps.chunks import RowOutcome

log = get_logger(__name__)

# The placeholders render_prompt fills; instructions without one get the cell appended.
PLACEHOLDER = re.compile(r"\{value\}|\{row\[(.+?)\]\}")

DEFAULT_INSTRUCTIONS = {
    "summarize": "Summarize the following text in one or two sentences.",
    "classify": "",
}


@dataclass(frozen=True)
class RowTask:
    """What every row of a chunk shares."""

    instructions: str
    mode: str
    labels: list[str] | None
    options: dict[str, Any]
    model: str | None


def row_text(instructions: str, row: Row) -> str:
    """The row's prompt: the template filled in, or the instructions followed by the cell."""
    if PLACEHOLDER.search(instructions):
        return render_prompt(instructions, row)
    return f"{instructions}\n\nText:\n{row.value}".strip()


async def answer_row(adapter: Adapter, task: RowTask, row: Row, settings: Settings) -> RowOutcome:
    """Ask the backend about one row (retries and, for labels, one repair attempt included)."""
    step_input: dict[str, Any] = {
        "messages": prompts.batch_row(row_text(task.instructions, row), task.mode, task.labels),
        "options": task.options,
    }
    if task.mode == "classify":
        step_input.update(
            analysis="classification",
            labels=task.labels,
            json_schema=json_schema_for("classification"),
        )
    try:
        out = await run_llm_step(adapter, step_input, task.model, settings)
    except InvalidModelAnswer as exc:
        return RowOutcome(row.index, None, exc.message, exc.output.prompt_tokens,
                          exc.output.completion_tokens)
    except BackendError as exc:
        return RowOutcome(row.index, None, exc.message)
    except Exception as exc:  # noqa: BLE001 - one odd row becomes an error cell, not a lost chunk
        log.exception("row failed unexpectedly", row=row.index)
        return RowOutcome(row.index, None, f"internal error: {type(exc).__name__}")
    if task.mode == "classify":
        value = str(out.result["parsed"]["label"])
    else:
        value = str(out.result.get("content", "")).strip()
    return RowOutcome(row.index, value, None, out.prompt_tokens, out.completion_tokens)


async def run_rows(
    adapter: Adapter,
    task: RowTask,
    rows: list[Row],
    settings: Settings,
    slots: asyncio.Semaphore,
    deliver: Callable[[RowOutcome], None],
) -> None:
    """Answer the rows concurrently (bounded by `slots`), delivering each as it ends."""

    async def one(row: Row) -> None:
        async with slots:
            outcome = await answer_row(adapter, task, row, settings)
        deliver(outcome)

    await asyncio.gather(*(one(row) for row in rows))


def _load(runtime: WorkerRuntime, claimed: ClaimedStep) -> tuple[list[Row], int]:
    """The chunk's rows not yet answered, and how many were (by an earlier attempt)."""
    indexes = [int(i) for i in claimed.input.get("row_indexes", [])]
    loaded = chunks.load(runtime, claimed, indexes, "the batch job's input file is gone")
    spec = TableSpec(**loaded.plan["table"])
    todo = [i for i in indexes if i not in loaded.done]
    return (read_rows(loaded.path, spec, todo) if todo else []), len(loaded.done)


def run(runtime: WorkerRuntime, claimed: ClaimedStep, _chain: Chain) -> str:
    """Run a claimed chunk step to the end; a failed row is an error cell, not a failed step."""
    try:
        adapter = runtime.adapter(claimed.backend)
        # PII redaction for tenants that want it, before text leaves for a cloud.
        adapter = redacting_adapter(runtime.sessions, runtime.backends, claimed, adapter)
        rows, skipped = _load(runtime, claimed)
    except (PermanentBackendError, OSError, SpreadsheetError, ValueError, KeyError) as exc:
        message = getattr(exc, "message", None) or str(exc)
        chunks.fail_chunk(runtime, claimed, message)
        return StepStatus.FAILED
    task = RowTask(
        instructions=str(claimed.input.get("instructions")
                         or DEFAULT_INSTRUCTIONS.get(str(claimed.input.get("mode")), "")),
        mode=str(claimed.input.get("mode") or "summarize"),
        labels=claimed.input.get("labels"),
        options=dict(claimed.input.get("options") or {}),
        model=claimed.model,
    )
    slots = chunks.slots_for(runtime, claimed.backend)
    results: queue.Queue[RowOutcome] = queue.Queue()
    future = runtime.submit(run_rows(adapter, task, rows, runtime.settings, slots, results.put))
    return chunks.drive(runtime, claimed, future, results, skipped)
