"""What every chunk step shares: rows answered concurrently, each stored as soon as it ends.

Rows already stored for the job are never asked again, so a chunk whose worker died resumes
where it stopped. The event loop only talks to the backend; the Celery thread that runs the
step writes finished rows to the database in small batches, and the job's progress with them.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from shared import storage
from shared.db import session_scope
from shared.jobs.status import JobStatus, StepStatus
from shared.lanes import row_slots
from shared.logging import get_logger
from shared.models import Job, RowResult, utcnow
from workers.lease import ClaimedStep, complete, db_retry, fail
from workers.runtime import WorkerRuntime

log = get_logger(__name__)


@dataclass(frozen=True)
class RowOutcome:
    """One row's answer or error, with what it cost."""

    index: int
    output: str | None
    error: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class ChunkInput:
    """The job's input file and plan, and which of the chunk's rows are stored already."""

    path: Path
    plan: dict[str, Any]
    done: set[int]


class InputGone(ValueError):
    """The job's input file (or the job) is no longer there."""


# Rows in flight per backend in this process, shared by every chunk step it runs.
_slots: dict[str, asyncio.Semaphore] = {}
_slots_lock = threading.Lock()


def slots_for(runtime: WorkerRuntime, backend: str) -> asyncio.Semaphore:
    """This process's row slots for a backend."""
    size = row_slots(runtime.settings, runtime.backends.get(backend))
    with _slots_lock:
        if backend not in _slots:
            _slots[backend] = asyncio.Semaphore(size)
        return _slots[backend]


def load(runtime: WorkerRuntime, claimed: ClaimedStep, indexes: list[int],
         missing: str) -> ChunkInput:
    """Read the job's input file location and the rows answered by an earlier attempt."""
    with session_scope(runtime.sessions) as session:
        job = session.get(Job, claimed.job_id)
        if job is None or not job.input_file_id:
            raise InputGone(missing)
        path = storage.path_for(runtime.settings.data_dir, job.tenant_id, job.input_file_id)
        done = set(session.scalars(
            select(RowResult.row_index).where(
                RowResult.job_id == claimed.job_id, RowResult.row_index.in_(indexes)
            )
        ))
        return ChunkInput(path, dict(job.plan or {}), done)


class RowStore:
    """Writes finished rows (duplicates ignored) and the job's progress from counts."""

    def __init__(self, sessions: sessionmaker[Session], job_id: str, step_id: str,
                 progress_every_s: float) -> None:
        self.sessions, self.job_id, self.step_id = sessions, job_id, step_id
        self.progress_every_s = progress_every_s
        self.last_progress = 0.0
        self.stored: list[RowOutcome] = []

    @db_retry
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
        .where(Job.id == job_id, Job.status == JobStatus.RUNNING)
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


def drive(
    runtime: WorkerRuntime,
    claimed: ClaimedStep,
    future: Future[None],
    results: queue.Queue[RowOutcome],
    skipped: int,
) -> str:
    """Hold the lease while `future` answers rows into `results`, storing them as they come."""
    settings = runtime.settings
    heartbeat = runtime.heartbeat(claimed, on_lost=future.cancel)
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
        heartbeat.stop()
        # Whatever finished is kept, even when the lease was lost: it is never asked again.
        store.flush(_drain(results), force_progress=True)
    if cancelled:
        log.info("chunk stopped: cancelled or taken over", stored=len(store.stored))
        return StepStatus.CANCELLED
    failed = sum(1 for o in store.stored if o.error is not None)
    _complete(runtime, claimed, store.stored, skipped, failed)
    return StepStatus.SUCCEEDED


@db_retry
def _complete(runtime: WorkerRuntime, claimed: ClaimedStep, stored: list[RowOutcome],
              skipped: int, failed: int) -> None:
    with session_scope(runtime.sessions) as session:
        complete(
            session,
            claimed.id,
            claimed.token,
            {"rows": len(stored) + skipped, "answered": len(stored), "failed": failed,
             "resumed_rows": skipped},
            sum(o.prompt_tokens for o in stored),
            sum(o.completion_tokens for o in stored),
        )
    log.info("chunk finished", rows=len(stored), failed=failed, resumed_rows=skipped)


@db_retry
def fail_chunk(runtime: WorkerRuntime, claimed: ClaimedStep, message: str) -> None:
    """The chunk cannot run at all (input gone or unreadable, backend not configured)."""
    error = {"type": "batch_input", "message": message, "backend": claimed.backend}
    with session_scope(runtime.sessions) as session:
        fail(session, claimed.id, claimed.token, error)
    log.info("chunk failed", error=message[:300])
