"""Key management and the audit log, always within the caller's tenant."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.schemas.admin import AuditEventOut, AuditList, KeyCreate, KeyCreated, KeyOut, KeyRotated
from shared import audit
from shared.keys import (
    LastAdminKey,
    NewKey,
    UnknownKey,
    create_key_in,
    list_keys,
    revoke_key,
    rotate_key,
)
from shared.models import ApiKey, AuditEvent, utcnow

DEADLOCK = "40P01"


def key_out(key: ApiKey) -> KeyOut:
    """The public shape of a key (never its hash)."""
    now = utcnow()
    status = "revoked" if key.revoked_at else (
        "expired" if key.expires_at is not None and key.expires_at <= now else "active"
    )
    return KeyOut(
        id=key.id, name=key.name, prefix=key.prefix, scopes=list(key.scopes), status=status,
        created_at=key.created_at, expires_at=key.expires_at, revoked_at=key.revoked_at,
        last_used_at=key.last_used_at, rate_limit_per_min=key.rate_limit_per_min,
    )


def _created(session: Session, new: NewKey) -> KeyCreated:
    row = session.get(ApiKey, new.id)
    assert row is not None
    return KeyCreated(**key_out(row).model_dump(), secret=new.secret)


def create(session: Session, tenant_id: str, body: KeyCreate) -> KeyCreated:
    """A new key in the caller's tenant."""
    expires = utcnow() + dt.timedelta(seconds=body.expires_in_s) if body.expires_in_s else None
    new = create_key_in(session, tenant_id, body.name, tuple(body.scopes), expires_at=expires,
                        rate_limit_per_min=body.rate_limit_per_min)
    audit.record(session, "key.create", "api_key", new.id)
    return _created(session, new)


def listing(session: Session, tenant_id: str) -> list[KeyOut]:
    """The tenant's keys, newest first."""
    return [key_out(k) for k in list_keys(session, tenant_id)]


def revoke(session: Session, tenant_id: str, key_id: str) -> KeyOut:
    """Revoke a key of the tenant; 404 for unknown ids and other tenants' keys."""
    try:
        key = revoke_key(session, key_id, tenant_id)
    except UnknownKey as exc:
        raise ApiError(404, f"no key {key_id!r}", param="key_id") from exc
    except LastAdminKey as exc:
        raise ApiError(409, str(exc), param="key_id") from exc
    except OperationalError as exc:
        # PostgreSQL broke a lock cycle with a concurrent key change (each request had
        # recorded its own key's use first); this one lost and changed nothing.
        if getattr(exc.orig, "sqlstate", None) != DEADLOCK:
            raise
        raise ApiError(409, "another change to this tenant's keys ran at the same time; "
                       "retry", param="key_id", headers={"Retry-After": "1"}) from exc
    audit.record(session, "key.revoke", "api_key", key.id)
    return key_out(key)


def rotate(session: Session, tenant_id: str, key_id: str, grace_s: int) -> KeyRotated:
    """A replacement key; the old one stops working after the grace period."""
    if session.scalar(select(ApiKey.id).where(ApiKey.id == key_id,
                                              ApiKey.tenant_id == tenant_id)) is None:
        raise ApiError(404, f"no key {key_id!r}", param="key_id")
    try:
        new, old = rotate_key(session, key_id, dt.timedelta(seconds=grace_s), tenant_id)
    except UnknownKey as exc:
        raise ApiError(409, str(exc), param="key_id") from exc
    audit.record(session, "key.rotate", "api_key", old.id)
    return KeyRotated(new=_created(session, new), old=key_out(old))


def audit_page(session: Session, limit: int, after: str | None) -> AuditList:
    """The tenant's audit events, newest first (the session is bound to the tenant)."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit + 1)
    if after:
        query = query.where(AuditEvent.id < after)
    rows = list(session.scalars(query))
    page = rows[:limit]
    return AuditList(
        data=[
            AuditEventOut(id=e.id, action=e.action, object_type=e.object_type,
                          object_id=e.object_id, key_id=e.key_id, request_id=e.request_id,
                          created_at=e.created_at)
            for e in page
        ],
        has_more=len(rows) > limit,
        next_after=page[-1].id if len(rows) > limit and page else None,
    )
