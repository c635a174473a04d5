"""API keys: random, shown once, stored only as a hash, bound to one tenant."""

from __future__ import annotations

import base64
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


def ensure_tenant(session: Session, name: str) -> Tenant:
    """The tenant of that name, created if missing."""
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        tenant = Tenant(id=new_id("ten"), name=name)
        session.add(tenant)
        session.flush()
    return tenant


def create_key(
    session: Session,
    tenant_name: str,
    name: str = "",
    scopes: tuple[str, ...] = DEFAULT_SCOPES,
) -> NewKey:
    """A new key for the tenant (created if missing)."""
    unknown = set(scopes) - set(ALL_SCOPES)
    if unknown:
        raise ValueError(f"unknown scopes: {sorted(unknown)}; known: {list(ALL_SCOPES)}")
    tenant = ensure_tenant(session, tenant_name)
    raw = KEY_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    key = ApiKey(
        id=new_id("key"),
        tenant_id=tenant.id,
        name=name,
        prefix=raw[: len(KEY_PREFIX) + 6],
        key_hash=hash_key(raw),
        scopes=list(scopes),
    )
    session.add(key)
    session.flush()
    return NewKey(key.id, tenant.id, raw, key.prefix, tuple(scopes))


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
