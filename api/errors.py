"""Every error leaves the API in one shape: {"error": {type, message, param, request_id}}."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.context import current_request_id
from shared.logging import get_logger

log = get_logger(__name__)
# The OpenAI-compatible routes answer a body that cannot be parsed with 400, as OpenAI does;
# the native API answers it like any other invalid input, 422.
OPENAI_PATHS = ("/v1/chat/", "/v1/files", "/v1/batches", "/v1/embeddings", "/v1/models")
_METHOD_ORDER = ["GET", "POST", "PUT", "PATCH", "DELETE"]
UNPARSEABLE = "the body could not be parsed: send valid JSON (or multipart form data)"

_STATUS_TYPES = {
    400: "invalid_request",
    401: "authentication",
    403: "permission",
    404: "not_found",
    405: "invalid_request",
    409: "conflict",
    413: "payload_too_large",
    415: "invalid_request",
    422: "invalid_request",
    429: "rate_limited",
    503: "backend_unavailable",
    504: "backend_unavailable",
}


class ApiError(Exception):
    """An error answer with a status, a type and a message saying what to fix."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or _STATUS_TYPES.get(status, "internal")
        self.param = param
        self.headers = headers or {}


def error_body(type_: str, message: str, param: str | None = None) -> dict[str, Any]:
    """The error JSON body."""
    return {
        "error": {
            "type": type_,
            "message": message,
            "param": param,
            "request_id": current_request_id(),
        }
    }


def _loc_to_param(loc: tuple[Any, ...]) -> str | None:
    # Drop "body"/"query" and the discriminator tag pydantic puts in union paths.
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    if len(parts) > 1 and parts[0] in ("chat", "summarize", "analyze"):
        parts = parts[1:]
    return ".".join(parts) or None


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception to the error shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.type, exc.message, exc.param), exc.status, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first: dict[str, Any] = dict(errors[0]) if errors else {"loc": (), "msg": "invalid"}
        param = _loc_to_param(tuple(first.get("loc", ())))
        msg = str(first.get("msg", "invalid request"))
        if first.get("type") == "json_invalid":
            msg = "the body is not valid JSON"
            if is_openai_path(request.url.path):
                return JSONResponse(error_body("invalid_request", msg), 400)
        elif first.get("type") == "union_tag_invalid":
            ctx: dict[str, Any] = dict(first.get("ctx") or {})
            msg = f"unknown type {ctx.get('tag')!r}: expected one of {ctx.get('expected_tags')}"
            param = "type"
        elif first.get("type") == "missing":
            msg = f"{param or 'a field'} is required"
        else:
            msg = f"{param}: {msg}" if param else msg
        if len(errors) > 1:
            msg += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
        return JSONResponse(error_body("invalid_request", msg, param), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        type_ = _STATUS_TYPES.get(status, "internal")
        message = str(exc.detail) if exc.detail else type_
        headers = dict(getattr(exc, "headers", None) or {})
        if status == 400:
            # Only the framework raises this one: a body it could not decode or split.
            message = UNPARSEABLE
            if not is_openai_path(request.url.path):
                status = 422
        elif status == 404 and message == "Not Found":
            message = "no such route"
        elif status == 405:
            allowed = allowed_methods(request, headers.get("Allow", ""))
            headers["Allow"] = ", ".join(allowed)
            message = f"{request.method} is not allowed on this path; allowed: {', '.join(allowed)}"
        return JSONResponse(error_body(type_, message), status, headers=headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", error_type=type(exc).__name__)
        return JSONResponse(
            error_body("internal", "internal error; quote the request_id when reporting it"),
            500,
        )


def is_openai_path(path: str) -> bool:
    """Whether the path is one of the OpenAI-compatible routes."""
    return path.startswith(OPENAI_PATHS)


def allowed_methods(request: Request, fallback: str) -> list[str]:
    """Every method the OpenAPI document lists for this path (one route serves one method)."""
    templates: list[tuple[re.Pattern[str], list[str]]] | None = getattr(
        request.app.state, "allow_templates", None
    )
    if templates is None:
        templates = []
        paths: dict[str, dict[str, Any]] = request.app.openapi().get("paths", {})
        # Literal paths first: /v1/webhooks/callback-secret is not /v1/webhooks/{webhook_id}.
        for template in sorted(paths, key=lambda t: t.count("{")):
            item = paths[template]
            regex = re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template))
            pattern = re.compile(f"^{regex}$")
            methods = [m.upper() for m in item if m.upper() in _METHOD_ORDER]
            templates.append((pattern, sorted(methods, key=_METHOD_ORDER.index)))
        request.app.state.allow_templates = templates
    for pattern, methods in templates:
        if pattern.match(request.url.path):
            return methods
    return [m.strip() for m in fallback.split(",") if m.strip()]
