"""`Idempotency-Key` on every POST: one answer per key and tenant for 24 h.

The first request with a key claims it by inserting a row (unique per tenant and key), runs,
and stores its answer (status, headers, body). A repeat with the same fingerprint (method,
path, query and body hash) gets the stored answer and nothing runs; a different fingerprint
gets 409. A duplicate arriving while the first still runs waits for its answer (up to
`idempotency_wait_s`), so concurrent duplicates all end with the same answer and one object.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.dbgate import DbGate
from api.deps import Identity, charge, identify, presented_key, rate_limited
from api.errors import ApiError, error_body
from shared.db import read_session, session_scope
from shared.models import IdempotencyRecord, utcnow
from shared.settings import Settings

# An in-progress claim older than this belongs to a request that died; it may be taken over.
STALE_CLAIM = dt.timedelta(minutes=2)
# Not stored, so the client can retry with the same key: overload and server errors.
_TRANSIENT = {429, 500, 502, 503, 504}
_NOT_STORED_HEADERS = {b"x-request-id", b"set-cookie", b"idempotent-replayed"}
_BOUNDARY = re.compile(rb"boundary=\"?([^\";]+)\"?", re.IGNORECASE)


@dataclass(frozen=True)
class Stored:
    """The state of a claimed key as another request sees it."""

    fingerprint: str
    status: str
    response_status: int | None
    response_headers: list[Any] | None
    response_body: bytes | None


def fingerprint(scope: Scope, body: bytes) -> str:
    """Method, path, query and body hash (a multipart boundary does not count)."""
    content_type = Headers(scope=scope).get("content-type", "").encode("latin-1")
    match = _BOUNDARY.search(content_type)
    if match and content_type.lower().startswith(b"multipart/"):
        body = body.replace(match.group(1), b"BOUNDARY")
    digest = hashlib.sha256()
    for part in (scope["method"], scope["path"], scope.get("query_string", b"").decode()):
        digest.update(part.encode() + b"\n")
    digest.update(body)
    return digest.hexdigest()


def _claim(
    sessions: sessionmaker[Session], settings: Settings, tenant_id: str, key: str, fp: str
) -> Stored | None:
    """Claim the key (None) or return what an earlier request left."""
    now = utcnow()
    expired = now - dt.timedelta(seconds=settings.idempotency_ttl_s)
    with session_scope(sessions) as session:
        session.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.created_at < expired
            )
        )
        row = _load(session, tenant_id, key)
        if row is not None and not (
            row.status == "in_progress" and row.created_at < now - STALE_CLAIM
        ):
            return _stored(row)
        if row is not None:
            session.delete(row)
            session.flush()
    try:
        with session_scope(sessions) as session:
            session.add(IdempotencyRecord(tenant_id=tenant_id, key=key, fingerprint=fp))
        return None
    except IntegrityError:
        # Another request inserted the same key first (PostgreSQL: after it committed).
        with session_scope(sessions) as session:
            row = _load(session, tenant_id, key)
            return _stored(row) if row is not None else _retry_marker(fp)


def _retry_marker(fp: str) -> Stored:
    return Stored(fp, "gone", None, None, None)


def _load(session: Session, tenant_id: str, key: str) -> IdempotencyRecord | None:
    return session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.key == key
        )
    )


def _stored(row: IdempotencyRecord) -> Stored:
    return Stored(row.fingerprint, row.status, row.response_status, row.response_headers,
                  row.response_body)


def _peek(sessions: sessionmaker[Session], tenant_id: str, key: str) -> Stored | None:
    with read_session(sessions) as session:  # a poll: no write lock
        row = _load(session, tenant_id, key)
        return _stored(row) if row is not None else None


def _finish(
    sessions: sessionmaker[Session],
    tenant_id: str,
    key: str,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
) -> None:
    """Store the answer, or release the claim when the answer is worth retrying."""
    with session_scope(sessions) as session:
        row = _load(session, tenant_id, key)
        if row is None:
            return
        if status in _TRANSIENT:
            session.delete(row)
            return
        row.status = "completed"
        row.response_status = status
        row.response_headers = [
            [k.decode("latin-1"), v.decode("latin-1")]
            for k, v in headers
            if k.lower() not in _NOT_STORED_HEADERS
        ]
        row.response_body = body
        row.completed_at = utcnow()


def _release(sessions: sessionmaker[Session], tenant_id: str, key: str) -> None:
    with session_scope(sessions) as session:
        session.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.key == key
            )
        )


async def _send_json(send: Send, status: int, body: dict[str, Any],
                     extra: dict[str, str] | None = None) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(payload)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def _replay(send: Send, stored: Stored) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in stored.response_headers or []]
    headers.append((b"idempotent-replayed", b"true"))
    await send({"type": "http.response.start", "status": stored.response_status or 200,
                "headers": headers})
    await send({"type": "http.response.body", "body": stored.response_body or b""})


class IdempotencyMiddleware:
    """Applies `Idempotency-Key` to every POST of an authenticated caller."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope) if scope["type"] == "http" else None
        if headers is None or scope["method"] != "POST" or "idempotency-key" not in headers:
            await self.app(scope, receive, send)
            return
        key = headers["idempotency-key"].strip()
        if not 1 <= len(key) <= 255:
            await _send_json(send, 422, error_body(
                "invalid_request", "Idempotency-Key must be 1 to 255 characters",
                "Idempotency-Key"))
            return
        state = scope["app"].state
        raw = presented_key(headers)
        identity: Identity | None = None
        if raw:
            identity = await state.db_gate.run(self._identify, state, raw)
        if identity is None:
            await self.app(scope, receive, send)  # the route answers 401
            return
        body = await _read_body(receive)
        await self._handle(scope, receive, send, state, identity, key, body)

    @staticmethod
    def _identify(state: Any, raw: str) -> Identity | None:
        with session_scope(state.sessions) as session:
            return identify(session, state.settings, raw)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, state: Any,
                      identity: Identity, key: str, body: bytes) -> None:
        sessions, settings, gate = state.sessions, state.settings, state.db_gate
        tenant_id = identity.key.tenant_id
        fp = fingerprint(scope, body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.idempotency_wait_s
        delay = 0.05
        while True:
            if loop.time() >= deadline:
                await _send_json(send, 409, error_body(
                    "conflict", "a request with this Idempotency-Key is still being "
                    "processed; retry in a moment", "Idempotency-Key"), {"Retry-After": "1"})
                return
            stored = await gate.run(_claim, sessions, settings, tenant_id, key, fp)
            if stored is None:
                await self._run_and_store(scope, receive, send, gate, sessions, tenant_id, key,
                                          body)
                return
            if stored.status != "gone" and stored.fingerprint != fp:
                await _send_json(send, 409, error_body(
                    "conflict",
                    "this Idempotency-Key was already used with a different request (method, "
                    "path or body); send a new key for a new request", "Idempotency-Key"))
                return
            while stored is not None and stored.status == "in_progress":
                if loop.time() >= deadline:
                    await _send_json(send, 409, error_body(
                        "conflict", "a request with this Idempotency-Key is still being "
                        "processed; retry in a moment", "Idempotency-Key"), {"Retry-After": "1"})
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, 0.25)
                stored = await gate.run(_peek, sessions, tenant_id, key)
            if stored is not None and stored.status == "completed":
                try:
                    decision = await run_in_threadpool(charge, state, scope, identity)
                except ApiError as exc:  # the limiter's store is down and the mode refuses
                    await _send_json(send, exc.status, error_body(exc.type, exc.message),
                                     exc.headers)
                    return
                if decision is not None and not decision.allowed:
                    error = rate_limited(decision)
                    await _send_json(send, 429, error_body(error.type, error.message),
                                     error.headers)
                    return
                await _replay(send, stored)
                return
            # The first request ended without a stored answer (released): claim again.

    async def _run_and_store(self, scope: Scope, receive: Receive, send: Send, gate: DbGate,
                             sessions: sessionmaker[Session], tenant_id: str, key: str,
                             body: bytes) -> None:
        replayed = False

        async def replay_receive() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        start: Message | None = None
        chunks: list[bytes] = []
        streaming = False

        async def capture(message: Message) -> None:
            nonlocal start, streaming
            if message["type"] == "http.response.start":
                start = message
                ctype = Headers(raw=message.get("headers", [])).get("content-type", "")
                streaming = ctype.startswith("text/event-stream")
                if streaming:
                    await send(message)
            elif message["type"] == "http.response.body":
                if streaming:
                    await send(message)
                else:
                    chunks.append(message.get("body", b""))
            else:
                await send(message)

        try:
            await self.app(scope, replay_receive, capture)
        except BaseException:
            await gate.run(_release, sessions, tenant_id, key)
            raise
        if start is None or streaming:
            # A stream cannot be replayed; release the key rather than store half an answer.
            await gate.run(_release, sessions, tenant_id, key)
            return
        payload = b"".join(chunks)
        headers = list(start.get("headers", []))
        await gate.run(_finish, sessions, tenant_id, key, start["status"], headers, payload)
        await send(start)
        await send({"type": "http.response.body", "body": payload})


async def _read_body(receive: Receive) -> bytes:
    """The whole body (the body limit middleware outside has already bounded it)."""
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(parts)
