"""Multi-step jobs: plan them, send ready steps, advance on finished steps.

The job transitions themselves are `shared.jobs.transitions`; every one is a conditional
UPDATE, so a message delivered twice changes nothing.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from orchestrator.plans import (
    FileWrite,
    Outcome,
    PlanContext,
    PlanError,
    StepSpec,
    WrittenFile,
    planner_for,
)
from shared.backends import configured_backends
from shared.db import changed
from shared.dispatch import enqueue_step
from shared.ids import new_id
from shared.jobs import transitions
from shared.jobs.notify import job_progress
from shared.jobs.status import JobStatus, StepStatus, step_is_terminal
from shared.jobs.transitions import ROW_JOB_TYPES
from shared.lanes import batch_window
from shared.models import Job, Step, utcnow
from shared.quotas import running_cap_reached
from shared.settings import Settings, get_settings

# Batch lanes send a window of steps per job (shared.lanes.batch_window) so cancel is quick
# and jobs share a backend.


def _context(
    job: Job, settings: Settings, written: dict[str, WrittenFile] | None = None
) -> PlanContext:
    return PlanContext(job=job, backend=configured_backends(settings).get(job.backend),
                       settings=settings, written=dict(written or {}))


def plan_job(session: Session, settings: Settings, job_id: str) -> None:
    """Create a queued job's first steps and send them; nothing if already planned."""
    job = session.get(Job, job_id)
    if job is None or job.status != JobStatus.QUEUED or job.stage >= 0:
        return
    if job.run_after is not None and job.run_after > utcnow():
        return
    # A tenant at its running-jobs cap keeps this job queued; it is planned again
    # when one of the tenant's jobs ends (shared.quotas.release_held) or by the sweep.
    if running_cap_reached(session, settings, job.tenant_id):
        return
    try:
        specs = planner_for(job.type).first(_context(job, settings))
    except PlanError as exc:
        transitions.finish(session, job, JobStatus.FAILED,
                           error={"type": exc.code, "message": exc.message, **exc.details})
        return
    if not transitions.start(session, job):
        return
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
                status=StepStatus.PENDING,
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
            .where(Step.job_id == job.id, Step.stage == job.stage,
                   Step.status == StepStatus.PENDING)
            .order_by(Step.seq)
        )
    )
    if not pending:
        return 0
    if pending[0].lane == "batch":
        in_flight = session.scalar(
            select(func.count())
            .select_from(Step)
            .where(Step.job_id == job.id,
                   Step.status.in_((StepStatus.QUEUED, StepStatus.RUNNING)))
        ) or 0
        settings = get_settings()
        window = batch_window(settings, configured_backends(settings).get(job.backend))
        pending = pending[: max(0, window - in_flight)]
    now = utcnow()
    sent = 0
    for step in pending:
        won = changed(session,
            update(Step)
            .where(Step.id == step.id, Step.status == StepStatus.PENDING)
            .values(status=StepStatus.QUEUED, dispatched_at=now)
        )
        if won:
            enqueue_step(session, step.id, step.backend, step.lane)
            sent += 1
    return sent


def step_done(
    session: Session,
    settings: Settings,
    step_id: str,
    written: dict[str, WrittenFile] | None = None,
) -> FileWrite | None:
    """A step ended: refresh progress, send more work, or advance the job to its next stage.

    Returns the output file to write (after this transaction) before the stage can end.
    """
    step = session.get(Step, step_id)
    if step is None:
        return None
    job = session.get(Job, step.job_id)
    if job is None or job.status != JobStatus.RUNNING:
        return None
    transitions.refresh_progress(session, job)
    stage = job.stage
    stage_steps = list(
        session.scalars(
            select(Step).where(Step.job_id == job.id, Step.stage == stage).order_by(Step.seq)
        )
    )
    if not all(step_is_terminal(s.status) for s in stage_steps):
        dispatch_ready(session, job)
        job_progress(session, job)
        return None
    return advance(session, settings, job, stage, stage_steps, written)


def advance(
    session: Session,
    settings: Settings,
    job: Job,
    stage: int,
    stage_steps: list[Step],
    written: dict[str, WrittenFile] | None = None,
) -> FileWrite | None:
    """Turn a finished stage into the next stage's steps or the job's end.

    Returns the output file to write first, when the stage needs one not written yet.
    """
    ctx = _context(job, settings, written)
    try:
        outcome = planner_for(job.type).advance(ctx, stage, stage_steps)
    except PlanError as exc:
        outcome = Outcome(error={"type": exc.code, "message": exc.message, **exc.details})
    if outcome.file_write is not None:
        return outcome.file_write
    won = changed(session,
        update(Job)
        .where(Job.id == job.id, Job.stage == stage, Job.status == JobStatus.RUNNING)
        .values(stage=stage + 1, updated_at=utcnow())
    )
    if not won:
        return None
    session.refresh(job)
    if outcome.steps:
        _add_steps(session, job, stage + 1, outcome.steps)
        dispatch_ready(session, job)
    elif outcome.error is not None:
        transitions.finish(session, job, JobStatus.FAILED, error=outcome.error,
                           result=outcome.result, output_file_id=outcome.output_file_id)
    else:
        transitions.finish(session, job, JobStatus(outcome.status), result=outcome.result or {},
                           output_file_id=outcome.output_file_id)
    return None
