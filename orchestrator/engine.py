"""The job state machine: plan, dispatch, advance on finished steps, finish, cancel.

Every transition is a conditional UPDATE, so a message delivered twice changes nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from orchestrator.plans import Outcome, PlanContext, PlanError, StepSpec, planner_for
from shared import metrics
from shared.backends import configured_backends
from shared.batching import batch_window
from shared.db import changed
from shared.dispatch import enqueue_step
from shared.ids import new_id
from shared.models import Job, Step, utcnow
from shared.quotas import running_cap_reached
from shared.settings import Settings, get_settings

TERMINAL_STEP = ("succeeded", "failed", "cancelled")
TERMINAL_JOB = ("succeeded", "failed", "cancelled")
# Jobs whose progress counts rows (RowResult), not steps.
ROW_JOB_TYPES = ("batch", "openai_batch")
# Batch lanes send a window of steps per job (shared.batching.batch_window) so cancel is quick
# and jobs share a backend.


def _context(job: Job, settings: Settings) -> PlanContext:
    return PlanContext(job=job, backend=configured_backends(settings).get(job.backend),
                       settings=settings)


def plan_job(session: Session, settings: Settings, job_id: str) -> None:
    """Create a queued job's first steps and send them; nothing if already planned."""
    job = session.get(Job, job_id)
    if job is None or job.status != "queued" or job.stage >= 0:
        return
    if job.run_after is not None and job.run_after > utcnow():
        return
    # Issue 8: a tenant at its running-jobs cap keeps this job queued; it is planned again
    # when one of the tenant's jobs ends (shared.quotas.release_held) or by the sweep.
    if running_cap_reached(session, settings, job.tenant_id):
        return
    try:
        specs = planner_for(job.type).first(_context(job, settings))
    except PlanError as exc:
        _finish(session, job, "failed",
                error={"type": exc.code, "message": exc.message, **exc.details})
        return
    now = utcnow()
    won = changed(session,
        update(Job)
        .where(Job.id == job_id, Job.status == "queued", Job.stage == -1)
        .values(status="running", stage=0, started_at=now, updated_at=now)
    )
    if not won:
        return
    session.refresh(job)
    _add_steps(session, job, 0, specs)
    dispatch_ready(session, job)


def _add_steps(session: Session, job: Job, stage: int, specs: list[StepSpec]) -> None:
    for seq, spec in enumerate(specs):
        session.add(
            Step(
                id=new_id("step"),
                job_id=job.id,
                tenant_id=job.tenant_id,
                kind=spec.kind,
                stage=stage,
                seq=seq,
                lane=spec.lane,
                status="pending",
                backend=job.backend,
                model=job.model,
                input=spec.input,
            )
        )
    if job.type not in ROW_JOB_TYPES:
        job.progress_total = (job.progress_total or 0) + len(specs)
    session.flush()


def dispatch_ready(session: Session, job: Job) -> int:
    """Send pending steps of the job's current stage (a window of them in the batch lane)."""
    pending = list(
        session.scalars(
            select(Step)
            .where(Step.job_id == job.id, Step.stage == job.stage, Step.status == "pending")
            .order_by(Step.seq)
        )
    )
    if not pending:
        return 0
    if pending[0].lane == "batch":
        in_flight = session.scalar(
            select(func.count())
            .select_from(Step)
            .where(Step.job_id == job.id, Step.status.in_(("queued", "running")))
        ) or 0
        settings = get_settings()
        window = batch_window(settings, configured_backends(settings).get(job.backend))
        pending = pending[: max(0, window - in_flight)]
    now = utcnow()
    sent = 0
    for step in pending:
        won = changed(session,
            update(Step)
            .where(Step.id == step.id, Step.status == "pending")
            .values(status="queued", dispatched_at=now)
        )
        if won:
            enqueue_step(session, step.id, step.backend, step.lane)
            sent += 1
    return sent


def step_done(session: Session, settings: Settings, step_id: str) -> None:
    """A step ended: refresh progress, send more work, or advance the job to its next stage."""
    step = session.get(Step, step_id)
    if step is None:
        return
    job = session.get(Job, step.job_id)
    if job is None or job.status != "running":
        return
    _refresh_progress(session, job)
    stage = job.stage
    stage_steps = list(
        session.scalars(
            select(Step).where(Step.job_id == job.id, Step.stage == stage).order_by(Step.seq)
        )
    )
    if any(s.status not in TERMINAL_STEP for s in stage_steps):
        dispatch_ready(session, job)
        from orchestrator.events import job_progress

        job_progress(session, job)
        return
    advance(session, settings, job, stage, stage_steps)


def advance(
    session: Session, settings: Settings, job: Job, stage: int, stage_steps: list[Step]
) -> None:
    """Turn a finished stage into the next stage's steps or the job's end."""
    try:
        outcome = planner_for(job.type).advance(_context(job, settings), stage, stage_steps)
    except PlanError as exc:
        outcome = Outcome(error={"type": exc.code, "message": exc.message, **exc.details})
    won = changed(session,
        update(Job)
        .where(Job.id == job.id, Job.stage == stage, Job.status == "running")
        .values(stage=stage + 1, updated_at=utcnow())
    )
    if not won:
        return
    session.refresh(job)
    if outcome.steps:
        _add_steps(session, job, stage + 1, outcome.steps)
        dispatch_ready(session, job)
    elif outcome.error is not None:
        _finish(session, job, "failed", error=outcome.error, result=outcome.result,
                output_file_id=outcome.output_file_id)
    else:
        _finish(session, job, outcome.status, result=outcome.result or {},
                output_file_id=outcome.output_file_id)


def _refresh_progress(session: Session, job: Job) -> None:
    if job.type in ROW_JOB_TYPES:
        return
    done, failed, prompt, completion = session.execute(
        select(
            func.count().filter(Step.status == "succeeded"),
            func.count().filter(Step.status == "failed"),
            func.coalesce(func.sum(Step.prompt_tokens), 0),
            func.coalesce(func.sum(Step.completion_tokens), 0),
        ).where(Step.job_id == job.id)
    ).one()
    job.progress_done, job.progress_failed = done, failed
    job.prompt_tokens, job.completion_tokens = prompt, completion
    session.flush()


def _finish(
    session: Session,
    job: Job,
    status: str,
    *,
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    output_file_id: str | None = None,
) -> bool:
    now = utcnow()
    won = changed(session,
        update(Job)
        .where(Job.id == job.id, Job.status.in_(("queued", "running")))
        .values(
            status=status,
            result=result,
            error=error,
            output_file_id=output_file_id,
            finished_at=now,
            updated_at=now,
        )
    )
    if won:
        session.refresh(job)
        _refresh_progress(session, job)
        from orchestrator.events import job_finished

        job_finished(session, job)
        metrics.record_job_end(session, job)
    return bool(won)


def cancel_job(session: Session, job: Job) -> bool:
    """Cancel a queued or running job: unsent steps are never sent, running ones are told."""
    now = utcnow()
    won = changed(session,
        update(Job)
        .where(Job.id == job.id, Job.status.in_(("queued", "running")))
        .values(status="cancelled", cancel_requested=True, finished_at=now, updated_at=now)
    )
    if not won:
        return False
    session.execute(
        update(Step)
        .where(Step.job_id == job.id, Step.status.in_(("pending", "queued", "running")))
        .values(status="cancelled", finished_at=now, lease_token=None)
    )
    session.refresh(job)
    from orchestrator.events import job_finished

    job_finished(session, job)
    metrics.record_job_end(session, job)
    return True


def fail_job(session: Session, job: Job, error: dict[str, Any]) -> bool:
    """Fail a job that can make no progress (expired, unplannable)."""
    now = utcnow()
    session.execute(
        update(Step)
        .where(Step.job_id == job.id, Step.status.in_(("pending", "queued", "running")))
        .values(status="cancelled", finished_at=now, lease_token=None)
    )
    return _finish(session, job, "failed", error=error)
