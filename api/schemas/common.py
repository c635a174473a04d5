"""Shapes shared by every route: the error body and list pages."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

ErrorType = Literal[
    "invalid_request",
    "authentication",
    "permission",
    "not_found",
    "conflict",
    "rate_limited",
    "payload_too_large",
    "backend_unavailable",
    "internal",
]


class ErrorDetail(BaseModel):
    type: ErrorType
    message: str
    param: str | None = None
    request_id: str | None = None


class ErrorResponse(BaseModel):
    """The one error shape every route answers with."""

    error: ErrorDetail


def error_responses(*codes: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI `responses` entries for the listed error codes."""
    text = {
        400: "Bad request",
        401: "Missing or wrong API key",
        404: "Not found (or another tenant's)",
        409: "Conflict with the object's state",
        413: "Body too large",
        422: "Invalid input",
        429: "Rate limited",
        500: "Failed (with fail_on_error)",
    }
    return {c: {"model": ErrorResponse, "description": text.get(c, "Error")} for c in codes}


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class CheckResult(BaseModel):
    ok: bool
    required: bool = True
    detail: str | None = None
    latency_ms: float | None = None
    breaker: Literal["closed", "open", "half_open"] | None = Field(
        None, description="Backends: circuit breaker state, shared by every worker"
    )
    breaker_failures: int | None = Field(None, description="Backends: consecutive failures")
    queue_depth: int | None = Field(None, description="Backends: steps waiting in its queues")


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, CheckResult] = Field(default_factory=dict)
