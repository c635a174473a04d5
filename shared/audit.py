"""The audit log: who created, cancelled or deleted what and when (a row + a JSON log line).

Only ids and action names are recorded, never prompt text or secrets. The actor (tenant, key,
request id) travels on the session (`set_actor`), which the API binds after authentication, so
services record an event with one call and no extra parameters.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from shared.ids import new_id
from shared.logging import get_logger
from shared.models import AuditEvent, utcnow

log = get_logger("audit")
ACTOR_KEY = "audit_actor"


def set_actor(
    session: Session, tenant_id: str, key_id: str | None, request_id: str | None = None
) -> None:
    """Who acts through this session (read by `record`)."""
    session.info[ACTOR_KEY] = (tenant_id, key_id, request_id)


def record(
    session: Session,
    action: str,
    object_type: str,
    object_id: str,
    *,
    tenant_id: str | None = None,
    flush: bool = True,
) -> None:
    """Add an audit row in the session's transaction and log it; no-op without a tenant."""
    actor = session.info.get(ACTOR_KEY)
    key_id: str | None = None
    request_id: str | None = None
    if actor is not None:
        actor_tenant, key_id, request_id = actor
        tenant_id = tenant_id or actor_tenant
    if tenant_id is None:
        return
    event = AuditEvent(
        id=new_id("aud"),
        tenant_id=tenant_id,
        key_id=key_id,
        action=action,
        object_type=object_type,
        object_id=object_id,
        request_id=request_id,
        created_at=utcnow(),
    )
    session.add(event)
    if flush:  # not from inside a flush (the flush in progress writes it)
        session.flush()
    log.info(
        "audit",
        audit_id=event.id,
        action=action,
        object_type=object_type,
        object_id=object_id,
        tenant=tenant_id,
        key_id=key_id,
        at=event.created_at.isoformat(),
    )
