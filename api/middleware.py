"""ASGI middleware: request ids on every answer, body size limits before a body is read."""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from typing import Any

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.context import set_request_id
from api.deps import RATELIMIT_SCOPE_KEY
from api.errors import error_body

_log = structlog.get_logger("api.access")
# Probes and scrapes every few seconds would drown the interesting lines.
_QUIET_PATHS = ("/healthz", "/readyz", "/metrics")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
UPLOAD_PATHS = ("/v1/files", "/v1/jobs/batch-summarize")


class RequestIdMiddleware:
    """Echo a sane client X-Request-ID or make one; bind it to logs and errors."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = sent if _VALID_ID.match(sent) else "req_" + secrets.token_hex(12)
        set_request_id(request_id)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)

        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # One access line per request (path only: a query string may carry anything).
            path: str = scope["path"]
            level = logging.DEBUG if path in _QUIET_PATHS else logging.INFO
            _log.log(level, "request", method=scope["method"], path=path, status=status,
                     ms=round((time.perf_counter() - started) * 1000, 1))


class _TooLarge(HTTPException):
    """Raised from `receive`: FastAPI passes HTTP exceptions through body parsing untouched."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the limit of {limit} bytes")


class BodyLimitMiddleware:
    """413 as soon as a body is known to exceed its limit: by Content-Length, or while read."""

    def __init__(self, app: ASGIApp, json_limit: int, upload_limit: int) -> None:
        self.app = app
        self.json_limit = json_limit
        self.upload_limit = upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = self.upload_limit if path.startswith(UPLOAD_PATHS) else self.json_limit
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _reject(send, limit)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _reject(send, limit)


async def _reject(send: Send, limit: int) -> None:
    body: dict[str, Any] = error_body(
        "payload_too_large", f"the request body is larger than the limit of {limit} bytes"
    )
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class RateLimitHeadersMiddleware:
    """Adds the RateLimit-* headers the auth dependency computed to the answer, errors too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        holder: dict[str, str] = {}
        scope[RATELIMIT_SCOPE_KEY] = holder

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start" and holder:
                headers = [
                    (k, v) for k, v in message.get("headers", [])
                    if not k.lower().startswith(b"ratelimit-")
                ]
                headers.extend((k.encode(), v.encode()) for k, v in holder.items()
                               if k != "Retry-After")
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_limits)
