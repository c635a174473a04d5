"""The periodic sweep: nothing stays lost when a worker, the broker or the API dies."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from orchestrator.engine import advance, dispatch_ready
from shared.db import changed
from shared.dispatch import enqueue_plan, enqueue_step, enqueue_step_done
from shared.jobs import transitions
from shared.jobs.direct import step_ended
from shared.jobs.status import JOB_ACTIVE, JobStatus, StepStatus, step_is_terminal
from shared.models import Job, Step, utcnow
from shared.settings import Settings

# A step whose worker died this many times fails instead of killing workers forever.
MAX_LEASE_LOSSES = 5


@dataclass
class SweepReport:
    """What one sweep did (logged; asserted in tests)."""

    requeued_steps: int = 0
    resent_steps: int = 0
    resent_plans: int = 0
    advanced_jobs: int = 0
    expired_jobs: int = 0
    failed_steps: int = 0


def sweep(
    session: Session,
    settings: Settings,
    queue_is_empty: Callable[[str, str], bool] = lambda backend, lane: True,
) -> SweepReport:
    """Re-send lapsed and lost work, re-advance stalled jobs, expire old ones."""
    report = SweepReport()
    now = utcnow()
    _requeue_lapsed(session, now, report)
    _resend_lost_steps(session, settings, now, queue_is_empty, report)
    _resend_lost_plans(session, settings, now, report)
    _advance_stalled(session, settings, now, report)
    _expire(session, settings, now, report)
    return report


def _requeue_lapsed(session: Session, now: dt.datetime, report: SweepReport) -> None:
    lapsed = session.scalars(
        select(Step)
        .where(Step.status == StepStatus.RUNNING, Step.lease_expires_at < now)
        .limit(500)
    ).all()
    for step in lapsed:
        if step.attempts >= MAX_LEASE_LOSSES:
            won = changed(session,
                update(Step)
                .where(Step.id == step.id, Step.status == StepStatus.RUNNING,
                       Step.lease_token == step.lease_token)
                .values(
                    status=StepStatus.FAILED,
                    lease_token=None,
                    finished_at=now,
                    error={
                        "type": "worker_lost",
                        "message": f"the worker running this step died {step.attempts} times",
                    },
                )
            )
            if won:
                step_ended(session, step.id)
            report.failed_steps += won
            continue
        won = changed(session,
            update(Step)
            .where(Step.id == step.id, Step.status == StepStatus.RUNNING,
                   Step.lease_token == step.lease_token)
            .values(status=StepStatus.QUEUED, lease_token=None, lease_expires_at=None,
                    dispatched_at=now)
        )
        if won:
            enqueue_step(session, step.id, step.backend, step.lane)
            report.requeued_steps += 1


def _resend_lost_steps(
    session: Session,
    settings: Settings,
    now: dt.datetime,
    queue_is_empty: Callable[[str, str], bool],
    report: SweepReport,
) -> None:
    cutoff = now - dt.timedelta(seconds=settings.queued_resend_after_s)
    stale = session.scalars(
        select(Step).where(Step.status == StepStatus.QUEUED, Step.dispatched_at < cutoff).limit(500)
    ).all()
    for step in stale:
        # A message still waiting in a busy queue is not lost; only re-send into an empty one.
        if not queue_is_empty(step.backend, step.lane):
            continue
        step.dispatched_at = now
        enqueue_step(session, step.id, step.backend, step.lane)
        report.resent_steps += 1


def _resend_lost_plans(
    session: Session, settings: Settings, now: dt.datetime, report: SweepReport
) -> None:
    cutoff = now - dt.timedelta(seconds=settings.queued_resend_after_s)
    jobs = session.scalars(
        select(Job)
        .where(Job.status == JobStatus.QUEUED, Job.stage == -1, Job.updated_at < cutoff)
        .limit(500)
    ).all()
    for job in jobs:
        if job.run_after is not None and job.run_after > now:
            continue
        job.updated_at = now
        enqueue_plan(session, job.id)
        report.resent_plans += 1


def _advance_stalled(
    session: Session, settings: Settings, now: dt.datetime, report: SweepReport
) -> None:
    cutoff = now - dt.timedelta(seconds=settings.queued_resend_after_s)
    jobs = session.scalars(
        select(Job).where(Job.status == JobStatus.RUNNING, Job.updated_at < cutoff).limit(200)
    ).all()
    for job in jobs:
        steps = list(
            session.scalars(
                select(Step).where(Step.job_id == job.id, Step.stage == job.stage)
                .order_by(Step.seq)
            )
        )
        if steps and all(step_is_terminal(s.status) for s in steps):
            if advance(session, settings, job, job.stage, steps) is not None:
                # Its output file is written by the step_done task, outside this transaction.
                job.updated_at = now
                enqueue_step_done(session, steps[-1].id)
            report.advanced_jobs += 1
        elif dispatch_ready(session, job):
            job.updated_at = now


def _expire(session: Session, settings: Settings, now: dt.datetime, report: SweepReport) -> None:
    cutoff = now - dt.timedelta(seconds=settings.job_max_age_s)
    jobs = session.scalars(
        select(Job).where(Job.status.in_(JOB_ACTIVE), Job.created_at < cutoff)
        .limit(200)
    ).all()
    for job in jobs:
        if job.run_after is not None and job.run_after > now:
            continue
        if transitions.fail(
            session,
            job,
            {"type": "expired", "message": "the job did not finish within its maximum age"},
        ):
            report.expired_jobs += 1
