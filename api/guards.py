"""Checks every API write passes, in one place: quotas on new jobs and the audit log.

A `before_flush` hook on sessions the API bound to a caller (`shared.audit.set_actor`) sees
every object a request creates or deletes, whichever service or route made it, so jobs, files,
webhooks and batches added later are audited and quota-checked without touching them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from api.errors import ApiError
from shared import audit
from shared.models import Job
from shared.quotas import submission_problem
from shared.settings import Settings

SETTINGS_KEY = "llmjobs_settings"
# Tables whose rows are audited, with the object type written in the log.
AUDITED = {
    "jobs": "job",
    "files": "file",
    "webhook_subscriptions": "webhook",
    "batches": "batch",
}


def bind_settings(session: Session, settings: Settings) -> None:
    """Give the hook the settings it needs for quota defaults."""
    session.info[SETTINGS_KEY] = settings


def _object_type(obj: Any) -> str | None:
    return AUDITED.get(getattr(obj, "__tablename__", ""))


@event.listens_for(Session, "before_flush")
def _before_flush(session: Session, _context: Any, _instances: Any) -> None:
    if audit.ACTOR_KEY not in session.info:
        return
    settings: Settings | None = session.info.get(SETTINGS_KEY)
    new_jobs = [obj for obj in session.new if isinstance(obj, Job)]
    if new_jobs and settings is not None:
        problem = submission_problem(session, settings, new_jobs[0].tenant_id)
        if problem:
            raise ApiError(429, problem, param="quota")
    for obj in list(session.new):
        kind = _object_type(obj)
        if kind and getattr(obj, "id", None):
            audit.record(session, f"{kind}.create", kind, obj.id, flush=False)
    for obj in list(session.deleted):
        kind = _object_type(obj)
        if kind:
            audit.record(session, f"{kind}.delete", kind, obj.id, flush=False)
    for obj in list(session.dirty):
        kind = _object_type(obj)
        if kind and hasattr(obj, "deleted_at"):
            history = inspect(obj).attrs.deleted_at.history
            was_live = not history.deleted or history.deleted[0] is None
            if history.added and history.added[0] is not None and was_live:
                audit.record(session, f"{kind}.delete", kind, obj.id, flush=False)
