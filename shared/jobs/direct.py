"""One-step jobs skip the orchestrator.

A chat with one answer, or a summary of a text that fits one call: the API writes the job
(running) and its only step (queued) in one transaction and sends the step to its backend's
queue; the worker that stores the step's result ends the job in that same transaction.
Anything else (several steps, a future `run_after`, a tenant at its running-jobs cap) is
planned by the orchestrator as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from shared.backends import configured_backends
from shared.dispatch import enqueue_step, enqueue_step_done
from shared.ids import new_id
from shared.jobs import transitions
from shared.jobs.plan import (
    StepSpec,
    chat_outcome,
    chat_steps,
    summarize_steps,
    summary_outcome,
)
from shared.jobs.status import JobStatus, StepStatus
from shared.models import Job, Step, utcnow
from shared.quotas import running_cap_reached
from shared.settings import Settings

Outcome = Callable[[list[Step]], tuple[dict[str, Any] | None, dict[str, Any] | None]]

# Job types whose one-step plan the API may write itself, with how a job's steps plan it
# and how its ended steps make its result: the same functions the orchestrator's planner uses.
ONE_STEP: dict[str, tuple[Callable[[Job, Settings], list[StepSpec]], Outcome]] = {
    "chat": (lambda job, settings: chat_steps(job), chat_outcome),
    "summarize": (lambda job, settings: summarize_steps(job, _context(job, settings), settings),
                  summary_outcome),
}


def _context(job: Job, settings: Settings) -> int:
    # The orchestrator sizes chunks from the same window (its PlanContext.context_tokens).
    backend = configured_backends(settings).get(job.backend)
    return backend.context_tokens if backend else settings.context_tokens


def direct_step(session: Session, settings: Settings, job: Job) -> StepSpec | None:
    """The job's only step when it may skip the orchestrator, else None."""
    kind = ONE_STEP.get(job.type)
    if kind is None:
        return None
    if job.run_after is not None and job.run_after > utcnow():
        return None
    try:
        specs = kind[0](job, settings)
    except (KeyError, ValueError):
        return None  # unplannable here: the orchestrator fails it with its own message
    if len(specs) != 1:
        return None
    # Locks the tenant row, so concurrent starts count each other (as in the orchestrator).
    if running_cap_reached(session, settings, job.tenant_id):
        return None
    return specs[0]


def create(session: Session, settings: Settings, job: Job) -> Job:
    """Store a new job: running with its one step queued, else queued for the orchestrator."""
    spec = direct_step(session, settings, job)
    if spec is None:
        return transitions.create(session, job)
    now = utcnow()
    job.created_at = job.created_at or now  # started no earlier than created
    job.status, job.stage, job.started_at, job.progress_total = JobStatus.RUNNING, 0, now, 1
    session.add(job)
    step = Step(
        id=new_id("step"),
        job_id=job.id,
        tenant_id=job.tenant_id,
        kind=spec.kind,
        stage=0,
        seq=0,
        lane=spec.lane,
        status=StepStatus.QUEUED,
        backend=job.backend,
        model=job.model,
        input=spec.input,
        dispatched_at=now,
    )
    session.add(step)
    session.flush()
    enqueue_step(session, step.id, step.backend, step.lane)
    return job


def is_one_step(job: Job, step: Step) -> bool:
    """True for a job whose whole plan is this one step (written by the API or planned)."""
    return job.type in ONE_STEP and job.progress_total == 1 and step.stage == 0 == job.stage


def end_with_step(session: Session, job: Job, step: Step) -> bool:
    """End a one-step job from its ended step, in the caller's transaction; False if it was not
    running at stage 0 any more."""
    result, error = ONE_STEP[job.type][1]([step])
    if error is not None:
        return transitions.finish(session, job, JobStatus.FAILED, error=error, stage=0)
    return transitions.finish(session, job, JobStatus.SUCCEEDED, result=result or {}, stage=0)


def step_ended(session: Session, step_id: str) -> None:
    """A step just ended in this transaction: end its one-step job, or tell the orchestrator."""
    # Fresh rows: the caller changed them with UPDATE statements its session may not have seen.
    step = session.get(Step, step_id, populate_existing=True)
    job = session.get(Job, step.job_id, populate_existing=True) if step is not None else None
    if step is not None and job is not None and is_one_step(job, step):
        if job.status == JobStatus.RUNNING:
            end_with_step(session, job, step)
        return
    enqueue_step_done(session, step_id)
