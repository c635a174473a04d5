"""What follows a job's end or progress: log it and queue webhook deliveries in the same commit."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.db import changed
from shared.jobs.channel import announce_end
from shared.jobs.status import JobStatus
from shared.jobs.view import job_view
from shared.logging import get_logger
from shared.models import Job, utcnow
from shared.models.webhooks import WebhookProgressMark
from shared.quotas import release_held
from shared.settings import get_settings
from shared.webhooks.events import CALLBACK_EVENTS, add_delivery, event_body, subscribers

log = get_logger(__name__)


def _job_data(session: Session, job: Job) -> dict[str, Any]:
    # The same view GET /v1/jobs/{id} answers with, so subscribers see the same job object.
    return job_view(session, get_settings(), job, with_steps=False).model_dump(mode="json")


def _emit(session: Session, job: Job, event_type: str, with_callback: bool) -> int:
    subs = subscribers(session, job.tenant_id, event_type)
    callback = job.callback_url if with_callback and event_type in CALLBACK_EVENTS else None
    if not subs and not callback:
        return 0
    body = event_body(event_type, _job_data(session, job), utcnow())
    for sub in subs:
        add_delivery(session, tenant_id=job.tenant_id, event_type=event_type, payload=body,
                     job_id=job.id, subscription_id=sub.id)
    if callback:
        add_delivery(session, tenant_id=job.tenant_id, event_type=event_type, payload=body,
                     job_id=job.id, callback_url=callback)
    session.flush()
    return len(subs) + (1 if callback else 0)


def job_finished(session: Session, job: Job) -> None:
    """Record a job's end and queue its webhooks (called inside the transaction that ended it)."""
    log.info(
        "job finished",
        job_id=job.id,
        tenant=job.tenant_id,
        status=job.status,
        type=job.type,
        backend=job.backend,
    )
    # Waiting requests (chat completions, ?wait=, job events) answer on this push.
    announce_end(session, job.id)
    queued = _emit(session, job, f"job.{job.status}", with_callback=True)
    # A slot of the tenant's running-jobs cap freed up; start what it held back.
    release_held(session, get_settings(), job.tenant_id)
    if queued:
        log.info("webhooks queued", job_id=job.id, deliveries=queued)


def job_progress(session: Session, job: Job) -> None:
    """Queue a `job.progress` event, at most once per job per throttle interval."""
    if job.status != JobStatus.RUNNING or not subscribers(session, job.tenant_id, "job.progress"):
        return
    now = utcnow()
    if not _take_progress_slot(session, job.id, now):
        return
    _emit(session, job, "job.progress", with_callback=False)


def _take_progress_slot(session: Session, job_id: str, now: dt.datetime) -> bool:
    interval = dt.timedelta(seconds=get_settings().webhook_progress_interval_s)
    # A conditional UPDATE: of two concurrent step_done calls only one wins the slot.
    won = changed(session,
        update(WebhookProgressMark)
        .where(WebhookProgressMark.job_id == job_id, WebhookProgressMark.sent_at <= now - interval)
        .values(sent_at=now)
    )
    if won:
        return True
    if session.scalar(select(WebhookProgressMark.job_id).where(
            WebhookProgressMark.job_id == job_id)) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(WebhookProgressMark(job_id=job_id, sent_at=now))
    except IntegrityError:
        return False
    return True
