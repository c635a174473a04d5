"""API keys: random, shown once, stored only as a hash, bound to one tenant."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.ids import new_id
from shared.models import ApiKey, Tenant, utcnow

KEY_PREFIX = "lj_live_"
ALL_SCOPES = ("jobs:write", "jobs:read", "files:write", "webhooks:manage", "admin")
DEFAULT_SCOPES = ("jobs:write", "jobs:read", "files:write", "webhooks:manage")
DEFAULT_ROTATION_GRACE = dt.timedelta(hours=24)


def hash_key(raw: str) -> str:
    """SHA-256 of a key: keys carry 256 random bits, so a fast hash is safe to look up by."""
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class NewKey:
    """A created key; `secret` exists only here and is never stored."""

    id: str
    tenant_id: str
    secret: str
    prefix: str
    scopes: tuple[str, ...]
    expires_at: dt.datetime | None = None
    rate_limit_per_min: int | None = None


class UnknownKey(LookupError):
    """No such key in that tenant (or it is already revoked)."""


def ensure_tenant(session: Session, name: str) -> Tenant:
    """The tenant of that name, created if missing."""
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        tenant = Tenant(id=new_id("ten"), name=name)
        session.add(tenant)
        session.flush()
    return tenant


def check_scopes(scopes: tuple[str, ...]) -> None:
    """Refuse unknown scope names (ValueError naming the known ones)."""
    unknown = set(scopes) - set(ALL_SCOPES)
    if unknown:
        raise ValueError(f"unknown scopes: {sorted(unknown)}; known: {list(ALL_SCOPES)}")
    if not scopes:
        raise ValueError(f"give at least one scope; known: {list(ALL_SCOPES)}")


def create_key(
    session: Session,
    tenant_name: str,
    name: str = "",
    scopes: tuple[str, ...] = DEFAULT_SCOPES,
    *,
    expires_at: dt.datetime | None = None,
    rate_limit_per_min: int | None = None,
) -> NewKey:
    """A new key for the tenant (created if missing)."""
    check_scopes(scopes)
    tenant = ensure_tenant(session, tenant_name)
    return create_key_in(
        session, tenant.id, name, scopes, expires_at=expires_at,
        rate_limit_per_min=rate_limit_per_min,
    )


def create_key_in(
    session: Session,
    tenant_id: str,
    name: str = "",
    scopes: tuple[str, ...] = DEFAULT_SCOPES,
    *,
    expires_at: dt.datetime | None = None,
    rate_limit_per_min: int | None = None,
) -> NewKey:
    """A new key for an existing tenant, by id."""
    check_scopes(scopes)
    if rate_limit_per_min is not None and rate_limit_per_min < 0:
        raise ValueError("rate_limit_per_min must be 0 (unlimited) or more")
    raw = KEY_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    key = ApiKey(
        id=new_id("key"),
        tenant_id=tenant_id,
        name=name,
        prefix=raw[: len(KEY_PREFIX) + 6],
        key_hash=hash_key(raw),
        scopes=list(scopes),
        expires_at=expires_at,
        rate_limit_per_min=rate_limit_per_min,
    )
    session.add(key)
    session.flush()
    return NewKey(
        key.id, tenant_id, raw, key.prefix, tuple(scopes), expires_at, rate_limit_per_min
    )


def authenticate(session: Session, raw: str) -> ApiKey | None:
    """The live key matching a presented secret, or None."""
    if not raw.startswith(KEY_PREFIX):
        return None
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(raw)))
    if key is None or key.revoked_at is not None:
        return None
    if key.expires_at is not None and key.expires_at <= utcnow():
        return None
    return key


def list_keys(session: Session, tenant_id: str | None = None) -> list[ApiKey]:
    """Keys, newest first; of one tenant when given."""
    query = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    if tenant_id is not None:
        query = query.where(ApiKey.tenant_id == tenant_id)
    return list(session.scalars(query))


def _get(session: Session, key_id: str, tenant_id: str | None) -> ApiKey:
    query = select(ApiKey).where(ApiKey.id == key_id)
    if tenant_id is not None:
        query = query.where(ApiKey.tenant_id == tenant_id)
    key = session.scalar(query)
    if key is None:
        raise UnknownKey(f"no key {key_id!r}")
    return key


class LastAdminKey(Exception):
    """Revoking this key would leave its tenant without a working admin key."""


def _is_live(key: ApiKey, now: dt.datetime) -> bool:
    return key.revoked_at is None and (key.expires_at is None or key.expires_at > now)


def _lifetime(key: ApiKey) -> dt.datetime:
    return key.expires_at or dt.datetime.max.replace(tzinfo=dt.UTC)


def _keeps_an_admin(session: Session, key: ApiKey, now: dt.datetime) -> bool:
    """True when another live admin key of the tenant lasts at least as long as `key`."""
    others = session.scalars(
        select(ApiKey)
        .where(ApiKey.tenant_id == key.tenant_id, ApiKey.id != key.id,
               ApiKey.revoked_at.is_(None))
        .execution_options(populate_existing=True)
    )
    # An admin key expiring sooner does not count: revoking the longer-lived one would
    # leave the tenant without admin once it expires (the rotated-away key of a rotation).
    return any("admin" in o.scopes and _is_live(o, now) and _lifetime(o) >= _lifetime(key)
               for o in others)


def revoke_key(session: Session, key_id: str, tenant_id: str | None = None) -> ApiKey:
    """Revoke a key at once; revoking twice keeps the first time.

    Raises LastAdminKey rather than revoke the tenant's last working admin key.
    """
    key = _get(session, key_id, tenant_id)
    if key.revoked_at is None and "admin" in key.scopes:
        # The tenant row's lock serialises admin-key revocations of one tenant on PostgreSQL
        # (SQLite's write transactions are serialised already), so two admins revoking each
        # other's keys at once cannot both count the other's key as the one that remains.
        session.execute(select(Tenant.id).where(Tenant.id == key.tenant_id).with_for_update())
        session.refresh(key)
    now = utcnow()
    if key.revoked_at is None:
        if "admin" in key.scopes and _is_live(key, now) and not _keeps_an_admin(
            session, key, now
        ):
            raise LastAdminKey(
                f"key {key_id!r} is its tenant's last working admin key (no other admin key "
                "lasts as long); create another admin key first, then revoke this one"
            )
        key.revoked_at = now
        session.flush()
    return key


def rotate_key(
    session: Session,
    key_id: str,
    grace: dt.timedelta = DEFAULT_ROTATION_GRACE,
    tenant_id: str | None = None,
) -> tuple[NewKey, ApiKey]:
    """A new key like the old one; the old stays valid for `grace`, then expires."""
    old = _get(session, key_id, tenant_id)
    now = utcnow()
    if old.revoked_at is not None or (old.expires_at is not None and old.expires_at <= now):
        raise UnknownKey(f"key {key_id!r} is revoked or expired; create a new key instead")
    new = create_key_in(
        session,
        old.tenant_id,
        old.name,
        tuple(old.scopes),
        expires_at=old.expires_at,
        rate_limit_per_min=old.rate_limit_per_min,
    )
    # Never extend the old key's life: the grace period only shortens it.
    ends = now + max(grace, dt.timedelta(0))
    if old.expires_at is None or old.expires_at > ends:
        old.expires_at = ends
    session.flush()
    return new, old
