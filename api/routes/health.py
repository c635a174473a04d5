"""Liveness and readiness."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.schemas.common import CheckResult, Health, Readiness
from api.services.backend_status import backend_status
from shared.backends import configured_backends
from shared.backends.probe import check_reachable

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="Process is up",
            operation_id="Healthz")
def healthz() -> Health:
    return Health()


def _timed(check: object) -> tuple[bool, str | None, float]:
    start = time.perf_counter()
    try:
        check()  # type: ignore[operator]
        return True, None, (time.perf_counter() - start) * 1000
    except Exception as exc:  # readiness reports any failure as "down", with its reason
        return False, f"{type(exc).__name__}: {exc}"[:300], (time.perf_counter() - start) * 1000


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Dependencies are reachable",
    description="Database, broker and each configured backend; 503 when a required one is down.",
    operation_id="Readyz",
    responses={503: {"model": Readiness, "description": "Not ready"}},
)
def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    checks: dict[str, CheckResult] = {}

    def db() -> None:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def broker() -> None:
        state.redis.ping()

    for name, fn in (("database", db), ("broker", broker)):
        ok, detail, ms = _timed(fn)
        checks[name] = CheckResult(ok=ok, detail=detail, latency_ms=round(ms, 1))
    configured = configured_backends(state.settings)
    status = backend_status(state.settings, state.redis, list(configured))
    for name, config in configured.items():
        ok, detail, ms = _timed(lambda c=config: check_reachable(c))
        checks[f"backend:{name}"] = CheckResult(
            ok=ok, required=False, detail=detail, latency_ms=round(ms, 1),
            breaker=status[name].breaker,
            breaker_failures=status[name].breaker_failures,
            queue_depth=status[name].queue_depth,
        )
    ready = all(c.ok for c in checks.values() if c.required)
    body = Readiness(status="ready" if ready else "not_ready", checks=checks)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ready else 503)
