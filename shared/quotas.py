"""Per-tenant quotas: tokens per UTC day (checked at submission) and jobs running at once.

The running-jobs cap is enforced where jobs start (`orchestrator.engine.plan_job` and the
API's one-step path, `shared.jobs.direct`, ask `running_cap_reached`): a job over the cap
stays queued for the orchestrator and starts when a slot frees
(`release_held` after a job ends, and the sweep's re-sent plans as a backstop), so queued work
never silently exceeds it.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.dispatch import enqueue_plan
from shared.jobs.status import JobStatus
from shared.models import Job, Tenant, utcnow
from shared.settings import Settings


def _limit(own: int | None, default: int) -> int:
    return own if own is not None else default


def tokens_used_today(session: Session, tenant_id: str) -> int:
    """Prompt + completion tokens of the tenant's jobs created since 00:00 UTC."""
    midnight = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    used = session.scalar(
        select(func.coalesce(func.sum(Job.prompt_tokens + Job.completion_tokens), 0)).where(
            Job.tenant_id == tenant_id, Job.created_at >= midnight
        )
    )
    return int(used or 0)


def submission_problem(session: Session, settings: Settings, tenant_id: str) -> str | None:
    """Why the tenant may not submit more work now (a message naming the quota), or None."""
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        return None
    cap = _limit(tenant.tokens_per_day, settings.tenant_tokens_per_day)
    if cap > 0:
        used = tokens_used_today(session, tenant_id)
        if used >= cap:
            reset = (utcnow() + dt.timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z")
            return (
                f"tokens-per-day quota reached: {used} of {cap} tokens used today (UTC); "
                f"it resets at {reset}"
            )
    return None


def running_cap_reached(session: Session, settings: Settings, tenant_id: str) -> bool:
    """True when the tenant already runs as many jobs as it may; locks the tenant row."""
    tenant = session.get(Tenant, tenant_id)
    if tenant is None or _limit(tenant.max_running_jobs, settings.tenant_max_running_jobs) <= 0:
        # No cap: no lock either, so an uncapped tenant's job creations never queue on its row.
        return False
    # FOR UPDATE serialises concurrent starts of one tenant's jobs on PostgreSQL (SQLite
    # serialises every writer already), so two processes cannot both take the last slot.
    tenant = session.scalar(
        select(Tenant).where(Tenant.id == tenant_id).with_for_update()
        .execution_options(populate_existing=True)
    )
    if tenant is None:
        return False
    cap = _limit(tenant.max_running_jobs, settings.tenant_max_running_jobs)
    if cap <= 0:
        return False
    running = session.scalar(
        select(func.count()).select_from(Job).where(
            Job.tenant_id == tenant_id, Job.status == JobStatus.RUNNING
        )
    )
    return int(running or 0) >= cap


def release_held(session: Session, settings: Settings, tenant_id: str) -> int:
    """Ask to plan the tenant's oldest held jobs now that a slot may be free."""
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        return 0
    cap = _limit(tenant.max_running_jobs, settings.tenant_max_running_jobs)
    if cap <= 0:
        return 0
    held = session.scalars(
        select(Job.id)
        .where(Job.tenant_id == tenant_id, Job.status == JobStatus.QUEUED, Job.stage == -1)
        .order_by(Job.created_at, Job.id)
        .limit(cap)
    ).all()
    for job_id in held:
        enqueue_plan(session, job_id)
    return len(held)
