"""Request dependencies as `Annotated` aliases: sessions, settings and the calling tenant."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, MutableMapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import anyio
import structlog
from fastapi import Depends, Request
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.context import current_request_id
from api.dbgate import DbGate, Slot
from api.errors import ApiError
from api.ratelimit import Decision, LimiterUnavailable, RateLimiter
from shared.audit import set_actor
from shared.db import is_read_session, read_session, session_scope
from shared.keys import authenticate
from shared.logging import get_logger
from shared.models import ApiKey, Tenant, utcnow
from shared.settings import Settings
from shared.tenancy import bind_tenant

log = get_logger(__name__)
T = TypeVar("T")
# Where the RateLimit-* headers of a request wait for the middleware that adds them.
RATELIMIT_SCOPE_KEY = "llmjobs.ratelimit"
_SLOT = "llmjobs_db_slot"
LIMITER_RETRY_AFTER_S = 5


def get_settings_dep(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


# Requests that only read: their session takes no write lock (SQLite), so polling clients
# do not hold up the writers.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session whose transaction commits before the response is sent (then enqueues).

    The request holds a database slot (`api.dbgate`) until then; a route that goes on
    waiting commits early with `leave_db`, which lets the slot go.
    """
    gate: DbGate = request.app.state.db_gate
    async with gate.slot() as slot:
        factory = request.app.state.sessions
        session: Session = (
            read_session(factory) if request.method in READ_METHODS else factory()
        )
        session.info[_SLOT] = slot
        try:
            yield session
        except BaseException:
            # Shielded: a cancelled request (client gone) must still give its connection back.
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(_end, session, False)
            raise
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(_end, session, True)


def _end(session: Session, commit: bool) -> None:
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def release_db_slot(session: Session) -> None:
    """Let the next request use the database; this one has committed and only waits now."""
    slot: Slot | None = session.info.get(_SLOT)
    if slot is not None:
        slot.release()


async def leave_db(session: Session) -> None:
    """End the request's transaction and give its slot back before slow work without the DB.

    The caller is authenticated by then; its key's last use may have been written, and on
    SQLite that write holds the lock until this commit.
    """
    with anyio.CancelScope(shield=True):
        await run_in_threadpool(session.commit)
    release_db_slot(session)


async def commit_in_new_slot(
    request: Request, session: Session, work: Callable[[], T], undo: Callable[[], object]
) -> T:
    """Do `work` on the request's session once a database slot is free again, and commit it.

    For a route that left the database (`leave_db`) to do slow work first. When `work` or the
    commit fails, the transaction is rolled back and `undo` removes what the slow work left.
    """

    def run() -> T:
        try:
            out = work()
            session.commit()
        except BaseException:
            session.rollback()
            undo()
            raise
        return out

    gate: DbGate = request.app.state.db_gate
    return await gate.run(run)


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
# scope="function": commit (and so enqueue) happens before the client gets its answer.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


@dataclass(frozen=True)
class Caller:
    """Who is calling: the key and its tenant."""

    key_id: str
    tenant_id: str
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class Identity:
    """An authenticated key with the limits that apply to it."""

    key: ApiKey
    key_limit: int
    tenant_limit: int


def presented_key(headers: Any) -> str | None:
    """The key sent as `Authorization: Bearer …` or `X-API-Key`."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return str(auth[7:].strip())
    value = headers.get("x-api-key")
    return str(value) if value else None


def identify(session: Session, settings: Settings, raw: str) -> Identity | None:
    """The live key for a secret and its per-minute limits (key's own, else the settings')."""
    key = authenticate(session, raw)
    if key is None:
        return None
    tenant_limit = session.scalar(
        select(Tenant.rate_limit_per_min).where(Tenant.id == key.tenant_id)
    )
    return Identity(
        key,
        key.rate_limit_per_min
        if key.rate_limit_per_min is not None
        else settings.rate_limit_per_key_per_min,
        tenant_limit if tenant_limit is not None else settings.rate_limit_per_tenant_per_min,
    )


def charge(
    request_state: Any, scope: MutableMapping[str, Any], identity: Identity
) -> Decision | None:
    """Charge one request to the key's and tenant's limits; remember the headers to send."""
    limiter: RateLimiter | None = getattr(request_state, "limiter", None)
    if limiter is None:
        return None
    try:
        decision = limiter.hit(
            [
                (f"key:{identity.key.id}", identity.key_limit),
                (f"tenant:{identity.key.tenant_id}", identity.tenant_limit),
            ]
        )
    except LimiterUnavailable as exc:
        raise ApiError(
            503,
            "rate limits cannot be checked right now (their store is unreachable); "
            f"retry in {LIMITER_RETRY_AFTER_S} s",
            headers={"Retry-After": str(LIMITER_RETRY_AFTER_S)},
        ) from exc
    if decision is not None:
        holder = scope.get(RATELIMIT_SCOPE_KEY)
        if isinstance(holder, dict):
            holder.update(decision.headers())
    return decision


def rate_limited(decision: Decision) -> ApiError:
    """The 429 for a refused request."""
    return ApiError(
        429,
        f"rate limit of {decision.limit} requests per minute exceeded; "
        f"retry after {decision.retry_after_s} s",
        headers=decision.headers(),
    )


def get_caller(request: Request, session: SessionDep, settings: SettingsDep) -> Caller:
    """Authenticate the key, bind the session to its tenant, apply rate limits (401/429)."""
    raw = presented_key(request.headers)
    if not raw:
        raise ApiError(
            401,
            "missing API key: send Authorization: Bearer <key> or X-API-Key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    identity = identify(session, settings, raw)
    if identity is None:
        raise ApiError(401, "invalid, revoked or expired API key",
                       headers={"WWW-Authenticate": "Bearer"})
    key = identity.key
    decision = charge(request.app.state, request.scope, identity)
    if decision is not None and not decision.allowed:
        raise rate_limited(decision)
    _touch(session, key, request.app.state.sessions)
    # From here on every query of this request sees only the caller's tenant.
    bind_tenant(session, key.tenant_id)
    set_actor(session, key.tenant_id, key.id, current_request_id())
    structlog.contextvars.bind_contextvars(tenant=key.tenant_id)
    return Caller(key.id, key.tenant_id, tuple(key.scopes))


def _touch(session: Session, key: ApiKey, factory: sessionmaker[Session]) -> None:
    now = utcnow()
    # Written at most once a minute: a write per request would serialise SQLite.
    if key.last_used_at is None or now - key.last_used_at > dt.timedelta(minutes=1):
        statement = update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now)
        if not is_read_session(session):
            session.execute(statement)
            return
        # A read request's transaction must not write (on SQLite it holds no write lock and
        # could not take one reliably): a short transaction of its own records the use.
        try:
            with session_scope(factory) as own:
                own.execute(statement)
        except OperationalError as exc:
            log.warning("could not record the key's last use", error=str(exc)[:200])


CallerDep = Annotated[Caller, Depends(get_caller)]


def require_scope(scope: str):  # type: ignore[no-untyped-def]
    """A dependency refusing keys without `scope` (403, `permission`)."""

    def check(caller: CallerDep) -> Caller:
        if scope not in caller.scopes and "admin" not in caller.scopes:
            raise ApiError(403, f"this API key lacks the {scope!r} scope")
        return caller

    return Depends(check)


# One alias per scope, named for it; every route takes its caller through one of these.
JobsRead = Annotated[Caller, require_scope("jobs:read")]
JobsWrite = Annotated[Caller, require_scope("jobs:write")]
FilesWrite = Annotated[Caller, require_scope("files:write")]
WebhooksManage = Annotated[Caller, require_scope("webhooks:manage")]
Admin = Annotated[Caller, require_scope("admin")]
