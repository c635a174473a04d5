"""Failing a step over to the next backend of its job's fallback chain."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.backends import BackendError, TransientBackendError
from shared.db import changed
from shared.dispatch import enqueue_step
from shared.jobs.status import StepStatus
from shared.models import Job, Step, utcnow


@dataclass(frozen=True)
class Chain:
    """A job's backends in the order to try them, and the model to ask each for."""

    backends: list[str] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.backends)


def chain_of(session: Session, job_id: str) -> Chain:
    """The job's fallback chain (empty: none), as the API stored it in the plan."""
    # The claim loaded the job into this session already: no second query.
    job = session.get(Job, job_id)
    plan = (job.plan if job is not None else None) or {}
    backends = [str(name) for name in plan.get("backends") or []]
    models = {str(k): str(v) for k, v in (plan.get("backend_models") or {}).items()}
    return Chain(backends, models)


def next_backend(chain: Chain, current: str, configured: set[str]) -> str | None:
    """The backend after `current` in the chain; the chain only moves forward, so no loops."""
    if current not in chain.backends:
        return None
    for name in chain.backends[chain.backends.index(current) + 1 :]:
        if name in configured:
            return name
    return None


def is_outage(exc: BackendError) -> bool:
    """Availability failures move a step on; a refusal (400, 401, bad JSON) would repeat."""
    return isinstance(exc, TransientBackendError)


def reroute(
    session: Session, step_id: str, token: str, to_backend: str, model: str | None
) -> bool:
    """Put the running step back in the queue of `to_backend`, if this worker still holds it."""
    lane = session.scalar(select(Step.lane).where(Step.id == step_id)) or "interactive"
    won = changed(
        session,
        update(Step)
        .where(Step.id == step_id, Step.status == StepStatus.RUNNING, Step.lease_token == token)
        .values(
            status=StepStatus.QUEUED,
            backend=to_backend,
            model=model,
            lease_token=None,
            lease_expires_at=None,
            dispatched_at=utcnow(),
        ),
    )
    if won:
        enqueue_step(session, step_id, to_backend, lane)
    return bool(won)


def record_answering_backend(
    session: Session, job_id: str, backend: str, model: str | None
) -> None:
    """The job shows the backend (and model) that actually answered its latest step."""
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.backend != backend)
        .values(backend=backend, model=model)
    )
