"""Request dependencies as `Annotated` aliases: sessions, settings and the calling tenant."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import Depends, Request
from sqlalchemy import update
from sqlalchemy.orm import Session

from api.errors import ApiError
from shared.keys import authenticate
from shared.models import ApiKey, utcnow
from shared.settings import Settings


def get_settings_dep(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """A session whose transaction commits before the response is sent (then enqueues)."""
    session: Session = request.app.state.sessions()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
# scope="function": commit (and so enqueue) happens before the client gets its answer.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


@dataclass(frozen=True)
class Caller:
    """Who is calling: the key and its tenant."""

    key_id: str
    tenant_id: str
    scopes: tuple[str, ...]


def _presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def get_caller(request: Request, session: SessionDep) -> Caller:
    """Authenticate the API key; 401 when missing or wrong."""
    raw = _presented_key(request)
    if not raw:
        raise ApiError(
            401,
            "missing API key: send Authorization: Bearer <key> or X-API-Key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    key = authenticate(session, raw)
    if key is None:
        raise ApiError(401, "invalid, revoked or expired API key",
                       headers={"WWW-Authenticate": "Bearer"})
    _touch(session, key)
    structlog.contextvars.bind_contextvars(tenant=key.tenant_id)
    return Caller(key.id, key.tenant_id, tuple(key.scopes))


def _touch(session: Session, key: ApiKey) -> None:
    now = utcnow()
    # Written at most once a minute: a write per request would serialise SQLite.
    if key.last_used_at is None or now - key.last_used_at > dt.timedelta(minutes=1):
        session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))


CallerDep = Annotated[Caller, Depends(get_caller)]


def require_scope(scope: str):  # type: ignore[no-untyped-def]
    """A dependency refusing keys without `scope` (403, `permission`)."""

    def check(caller: CallerDep) -> Caller:
        if scope not in caller.scopes and "admin" not in caller.scopes:
            raise ApiError(403, f"this API key lacks the {scope!r} scope")
        return caller

    return Depends(check)
