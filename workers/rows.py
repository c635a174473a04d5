"""Chunk steps of batch jobs: a chunk's rows run concurrently, each stored as soon as it ends.

Rows already stored for the job are never asked again, so a chunk whose worker died resumes
where it stopped. The event loop only talks to the backend; the Celery thread that runs the
step writes finished rows to the database in small batches, and the job's progress with them.
"""

from __future__ import annotations

import asyncio
import queue
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from shared import prompts, storage
from shared.analysis import json_schema_for
from shared.backends import BackendError, PermanentBackendError
from shared.db import session_scope
from shared.lanes import row_slots
from shared.logging import get_logger
from shared.models import Job, RowResult, utcnow
from shared.redaction import redacting_adapter
from shared.settings import Settings
from shared.spreadsheets import Row, SpreadsheetError, TableSpec, read_rows, render_prompt
from workers import leases
from workers.backends.base import Adapter
from workers.execute import InvalidModelAnswer, run_llm_step
from workers.runtime import WorkerRuntime
from workers.service import Heartbeat

log = get_logger(__name__)

# The placeholders render_prompt fills; instructions without one get the cell appended.
PLACEHOLDER = re.compile(r"\{value\}|\{row\[(.+?)\]\}")

DEFAULT_INSTRUCTIONS = {
    "summarize": "Summarize the following text in one or two sentences.",
    "classify": "",
}

# Stored rows are what a resumed chunk skips; a database blip must not lose them.
_db_retry = retry(
    retry=retry_if_exception_type(OperationalError),
    wait=wait_exponential(multiplier=0.2, max=5),
    stop=stop_after_delay(60),
    reraise=True,
)


@dataclass(frozen=True)
class RowOutcome:
    """One row's answer or error, with what it cost."""

    index: int
    output: str | None
    error: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class RowTask:
    """What every row of a chunk shares."""

    instructions: str
    mode: str
    labels: list[str] | None
    options: dict[str, Any]
    model: str | None


# Rows in flight per backend in this process, shared by every chunk step it runs.
_slots: dict[str, asyncio.Semaphore] = {}
_slots_lock = threading.Lock()


def slots_for(backend: str, size: int) -> asyncio.Semaphore:
    """This process's row slots for a backend."""
    with _slots_lock:
        if backend not in _slots:
            _slots[backend] = asyncio.Semaphore(size)
        return _slots[backend]


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


class RowStore:
    """Writes finished rows (duplicates ignored) and the job's progress from counts."""

    def __init__(self, sessions: sessionmaker[Session], job_id: str, step_id: str,
                 progress_every_s: float) -> None:
        self.sessions, self.job_id, self.step_id = sessions, job_id, step_id
        self.progress_every_s = progress_every_s
        self.last_progress = 0.0
        self.stored: list[RowOutcome] = []

    @_db_retry
    def flush(self, outcomes: list[RowOutcome], force_progress: bool = False) -> None:
        """Insert these rows; refresh progress when it is due."""
        due = force_progress or time.monotonic() - self.last_progress >= self.progress_every_s
        if not outcomes and not due:
            return
        with session_scope(self.sessions) as session:
            if outcomes:
                insert_ignoring_duplicates(session, [self._values(o) for o in outcomes])
            if due:
                update_progress(session, self.job_id)
        self.stored.extend(outcomes)
        if due:
            self.last_progress = time.monotonic()

    def _values(self, o: RowOutcome) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "row_index": o.index,
            "step_id": self.step_id,
            "output": o.output,
            "error": o.error,
            "prompt_tokens": o.prompt_tokens,
            "completion_tokens": o.completion_tokens,
            "created_at": utcnow(),
        }


def insert_ignoring_duplicates(session: Session, values: list[dict[str, Any]]) -> None:
    """INSERT row results; a row already stored (by an earlier attempt) is kept as it was."""
    dialect = session.get_bind().dialect.name
    maker = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = maker(RowResult).on_conflict_do_nothing(index_elements=["job_id", "row_index"])
    session.execute(stmt, values)


def update_progress(session: Session, job_id: str) -> None:
    """Set the job's progress and usage from its stored rows (one atomic UPDATE)."""

    def total(*where: Any, column: Any = None) -> Any:
        expr = func.count() if column is None else func.coalesce(func.sum(column), 0)
        return (
            select(expr).select_from(RowResult).where(RowResult.job_id == job_id, *where)
            .scalar_subquery()
        )

    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "running")
        .values(
            progress_done=total(RowResult.error.is_(None)),
            progress_failed=total(RowResult.error.is_not(None)),
            prompt_tokens=total(column=RowResult.prompt_tokens),
            completion_tokens=total(column=RowResult.completion_tokens),
        )
    )


def _drain(results: queue.Queue[RowOutcome]) -> list[RowOutcome]:
    out: list[RowOutcome] = []
    while True:
        try:
            out.append(results.get_nowait())
        except queue.Empty:
            return out


def _load(runtime: WorkerRuntime, claimed: leases.ClaimedStep) -> tuple[list[Row], int]:
    """The chunk's rows not yet answered, and how many were (by an earlier attempt)."""
    indexes = [int(i) for i in claimed.input.get("row_indexes", [])]
    with session_scope(runtime.sessions) as session:
        job = session.get(Job, claimed.job_id)
        if job is None or not job.input_file_id:
            raise SpreadsheetError("the batch job's input file is gone", param="file")
        spec = TableSpec(**job.plan["table"])
        path = storage.path_for(runtime.settings.data_dir, job.tenant_id, job.input_file_id)
        done = set(
            session.scalars(
                select(RowResult.row_index).where(
                    RowResult.job_id == claimed.job_id, RowResult.row_index.in_(indexes)
                )
            )
        )
    todo = [i for i in indexes if i not in done]
    return (read_rows(path, spec, todo) if todo else []), len(done)


def run_rows_step(runtime: WorkerRuntime, claimed: leases.ClaimedStep) -> str:
    """Run a claimed chunk step to the end; a failed row is an error cell, not a failed step."""
    if claimed.input.get("executor") == "openai_chat":
        # OpenAI Batch API lines: the same chunk machinery, other rows (workers/openai_batch.py).
        from workers.openai_batch import run_openai_lines

        return run_openai_lines(runtime, claimed)
    settings = runtime.settings
    try:
        adapter = runtime.adapter(claimed.backend)
        # Issue 8: PII redaction for tenants that want it, before text leaves for a cloud.
        adapter = redacting_adapter(runtime.sessions, runtime.backends, claimed, adapter)
        rows, skipped = _load(runtime, claimed)
    except (PermanentBackendError, OSError, SpreadsheetError, ValueError, KeyError) as exc:
        message = getattr(exc, "message", None) or str(exc)
        _fail(runtime, claimed, message)
        return "failed"
    task = RowTask(
        instructions=str(claimed.input.get("instructions")
                         or DEFAULT_INSTRUCTIONS.get(str(claimed.input.get("mode")), "")),
        mode=str(claimed.input.get("mode") or "summarize"),
        labels=claimed.input.get("labels"),
        options=dict(claimed.input.get("options") or {}),
        model=claimed.model,
    )
    slots = slots_for(claimed.backend, row_slots(settings, runtime.backends.get(claimed.backend)))
    results: queue.Queue[RowOutcome] = queue.Queue()
    future = runtime.submit(run_rows(adapter, task, rows, settings, slots, results.put))
    return drive_chunk(runtime, claimed, future, results, skipped)


def drive_chunk(
    runtime: WorkerRuntime,
    claimed: leases.ClaimedStep,
    future: Future[None],
    results: queue.Queue[RowOutcome],
    skipped: int,
) -> str:
    """Hold the lease while `future` answers rows into `results`, storing them as they come."""
    settings = runtime.settings
    heartbeat = Heartbeat(runtime, claimed.id, claimed.token, future.cancel)
    heartbeat.start()
    store = RowStore(runtime.sessions, claimed.job_id, claimed.id, settings.batch_progress_s)
    cancelled = False
    try:
        while True:
            try:
                future.result(timeout=settings.batch_flush_s)
                break
            except TimeoutError:
                store.flush(_drain(results))
            except CancelledError:
                cancelled = True
                break
    finally:
        heartbeat.stopped.set()
        # Whatever finished is kept, even when the lease was lost: it is never asked again.
        store.flush(_drain(results), force_progress=True)
    if cancelled:
        log.info("chunk stopped: cancelled or taken over", stored=len(store.stored))
        return "cancelled"
    failed = sum(1 for o in store.stored if o.error is not None)
    _complete(runtime, claimed, store.stored, skipped, failed)
    return "succeeded"


@_db_retry
def _complete(runtime: WorkerRuntime, claimed: leases.ClaimedStep, stored: list[RowOutcome],
              skipped: int, failed: int) -> None:
    with session_scope(runtime.sessions) as session:
        leases.complete(
            session,
            claimed.id,
            claimed.token,
            {"rows": len(stored) + skipped, "answered": len(stored), "failed": failed,
             "resumed_rows": skipped},
            sum(o.prompt_tokens for o in stored),
            sum(o.completion_tokens for o in stored),
        )
    log.info("chunk finished", rows=len(stored), failed=failed, resumed_rows=skipped)


@_db_retry
def _fail(runtime: WorkerRuntime, claimed: leases.ClaimedStep, message: str) -> None:
    error = {"type": "batch_input", "message": message, "backend": claimed.backend}
    with session_scope(runtime.sessions) as session:
        leases.fail(session, claimed.id, claimed.token, error)
    log.info("chunk failed", error=message[:300])
