"""A step's lease: claimed by one worker, renewed by its heartbeat, released with the result."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from shared.db import changed, session_scope
from shared.ids import new_id
from shared.jobs.direct import step_ended
from shared.jobs.status import JobStatus, StepStatus
from shared.models import Job, Step, utcnow

# A result (or stored rows) is written before the step counts as done; a database blip
# (SQLite's lock held too long, a PostgreSQL disconnect) must not lose it: losing it means
# calling, and paying, the backend again.
db_retry = retry(
    retry=retry_if_exception_type(OperationalError),
    wait=wait_exponential(multiplier=0.2, max=5),
    stop=stop_after_delay(60),
    reraise=True,
)


@dataclass(frozen=True)
class ClaimedStep:
    """What a worker needs to run a step, detached from the session."""

    id: str
    job_id: str
    tenant_id: str
    kind: str
    backend: str
    model: str | None
    input: dict[str, Any]
    token: str
    attempts: int


def claim(session: Session, step_id: str, lease_s: float) -> ClaimedStep | None:
    """Take a queued step; None when it is already running, finished or cancelled."""
    token = new_id("lease")
    now = utcnow()
    won = changed(session,
        update(Step)
        .where(Step.id == step_id, Step.status == StepStatus.QUEUED)
        .values(
            status=StepStatus.RUNNING,
            attempts=Step.attempts + 1,
            lease_token=token,
            lease_expires_at=now + dt.timedelta(seconds=lease_s),
            started_at=now,
        )
    )
    if not won:
        return None
    step = session.get(Step, step_id)
    assert step is not None
    session.refresh(step)
    job = session.get(Job, step.job_id)
    if job is None or job.status != JobStatus.RUNNING:
        step.status, step.lease_token = StepStatus.CANCELLED, None
        return None
    return ClaimedStep(
        id=step.id,
        job_id=step.job_id,
        tenant_id=step.tenant_id,
        kind=step.kind,
        backend=step.backend,
        model=step.model,
        input=dict(step.input),
        token=token,
        attempts=step.attempts,
    )


def renew(session: Session, step_id: str, token: str, lease_s: float) -> bool:
    """Extend the lease; False means the step was cancelled or taken over."""
    return bool(
        changed(session,
            update(Step)
            .where(Step.id == step_id, Step.status == StepStatus.RUNNING, Step.lease_token == token)
            .values(lease_expires_at=utcnow() + dt.timedelta(seconds=lease_s))
        )
    )


def complete(
    session: Session,
    step_id: str,
    token: str,
    result: dict[str, Any],
    prompt_tokens: int,
    completion_tokens: int,
    on_stored: Callable[[Session], Any] | None = None,
) -> bool:
    """Store the result and mark the step succeeded, if this worker still holds it.

    `on_stored` runs once stored, before the job can end in the same transaction.
    """
    return _end(
        session,
        step_id,
        token,
        on_stored,
        status=StepStatus.SUCCEEDED,
        result=result,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )


def fail(
    session: Session, step_id: str, token: str, error: dict[str, Any], prompt_tokens: int = 0,
    completion_tokens: int = 0
) -> bool:
    """Mark the step failed with an error a user can read."""
    return _end(
        session,
        step_id,
        token,
        None,
        status=StepStatus.FAILED,
        error=error,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )


def _end(
    session: Session,
    step_id: str,
    token: str,
    on_stored: Callable[[Session], Any] | None,
    **values: Any,
) -> bool:
    won = changed(session,
        update(Step)
        .where(Step.id == step_id, Step.status == StepStatus.RUNNING, Step.lease_token == token)
        .values(finished_at=utcnow(), lease_token=None, lease_expires_at=None, **values)
    )
    if won:
        if on_stored is not None:
            on_stored(session)
        # A one-step job ends here, in the step's transaction; others hear from the orchestrator.
        step_ended(session, step_id)
    return bool(won)


class Heartbeat(threading.Thread):
    """Renews a step's lease; calls `on_lost` when the step was cancelled or taken over."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        claimed: ClaimedStep,
        *,
        lease_s: float,
        every_s: float,
        on_lost: Callable[[], Any],
    ) -> None:
        super().__init__(name=f"heartbeat-{claimed.id}", daemon=True)
        self.sessions, self.step_id, self.token = sessions, claimed.id, claimed.token
        self.lease_s, self.every_s, self.on_lost = lease_s, every_s, on_lost
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every_s):
            try:
                with session_scope(self.sessions) as session:
                    held = renew(session, self.step_id, self.token, self.lease_s)
            except OperationalError:
                continue  # the database will be back; the lease has slack for a few misses
            if not held:
                self.on_lost()
                return
