"""A step's lease: claimed by one worker, renewed by its process's keeper, ended with its result."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from shared.db import changed, session_scope
from shared.ids import new_id
from shared.jobs.direct import step_ended
from shared.jobs.status import JobStatus, StepStatus
from shared.models import Job, Step, Tenant, utcnow

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
    # The tenant's redaction setting, read in the claim's transaction.
    redact_pii: bool | None = None


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
    step = session.get(Step, step_id, populate_existing=True)
    assert step is not None
    row = session.execute(
        select(Job, Tenant.redact_pii).join(Tenant, Tenant.id == Job.tenant_id)
        .where(Job.id == step.job_id)
    ).first()
    job, redact_pii = (row[0], bool(row[1])) if row is not None else (None, None)
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
        redact_pii=redact_pii,
    )


def renew(session: Session, held: dict[str, str], lease_s: float) -> set[str]:
    """Extend the leases of `held` (step id -> token) in one UPDATE; returns the ids still held.

    A step missing from the answer was cancelled or taken over.
    """
    if not held:
        return set()
    mine = or_(*(and_(Step.id == step_id, Step.lease_token == token)
                 for step_id, token in held.items()))
    rows = session.execute(
        update(Step)
        .where(Step.status == StepStatus.RUNNING, mine)
        .values(lease_expires_at=utcnow() + dt.timedelta(seconds=lease_s))
        .returning(Step.id)
        .execution_options(synchronize_session=False)
    )
    return {str(step_id) for step_id in rows.scalars()}


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


class HeldLease:
    """One step's place in its process's lease keeper, from `start` to `stop`."""

    def __init__(self, keeper: LeaseKeeper, claimed: ClaimedStep, on_lost: Callable[[], Any]):
        self.keeper, self.claimed, self.on_lost = keeper, claimed, on_lost

    def start(self) -> None:
        self.keeper.add(self)

    def stop(self) -> None:
        self.keeper.remove(self)


class LeaseKeeper:
    """Renews the leases of every step its process runs: one transaction per tick for all.

    A thread per step would cost a transaction per step per tick; a process runs up to its
    concurrency in steps at once. `on_lost` is called for a step cancelled or taken over.
    """

    def __init__(self, sessions: sessionmaker[Session], *, lease_s: float, every_s: float):
        self.sessions, self.lease_s, self.every_s = sessions, lease_s, every_s
        self._held: dict[str, HeldLease] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, claimed: ClaimedStep, on_lost: Callable[[], Any]) -> HeldLease:
        """A handle that keeps `claimed`'s lease from `start()` until `stop()`."""
        return HeldLease(self, claimed, on_lost)

    def add(self, held: HeldLease) -> None:
        with self._lock:
            self._held[held.claimed.id] = held
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lease-keeper",
                                                daemon=True)
                self._thread.start()

    def remove(self, held: HeldLease) -> None:
        with self._lock:
            if self._held.get(held.claimed.id) is held:
                del self._held[held.claimed.id]

    def close(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(self.every_s):
            self.tick()

    def tick(self) -> None:
        """Renew every held lease once; tell the steps that lost theirs."""
        with self._lock:
            held = dict(self._held)
        if not held:
            return
        try:
            with session_scope(self.sessions) as session:
                kept = renew(session, {sid: h.claimed.token for sid, h in held.items()},
                             self.lease_s)
        except OperationalError:
            return  # the database will be back; the lease has slack for a few misses
        for step_id, handle in held.items():
            if step_id in kept:
                continue
            with self._lock:
                # Stopped meanwhile (the step ended itself): not lost.
                lost = self._held.get(step_id) is handle
                if lost:
                    del self._held[step_id]
            if lost:
                handle.on_lost()
