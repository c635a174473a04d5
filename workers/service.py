"""One step from claim to stored result, with a heartbeat holding its lease meanwhile."""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError
from typing import Any

import structlog
from sqlalchemy.exc import OperationalError
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from shared.backends import BackendError, PermanentBackendError
from shared.db import session_scope
from shared.logging import get_logger
from workers import leases
from workers.execute import InvalidModelAnswer, StepOutput, run_llm_step
from workers.runtime import WorkerRuntime

log = get_logger(__name__)

# The result is stored before the step counts as done; a database blip must not lose it
# (losing it means calling, and paying, the backend again).
_db_retry = retry(
    retry=retry_if_exception_type(OperationalError),
    wait=wait_exponential(multiplier=0.2, max=5),
    stop=stop_after_delay(60),
    reraise=True,
)


class Heartbeat(threading.Thread):
    """Renews a step's lease; notices when the step was cancelled or taken over."""

    def __init__(self, runtime: WorkerRuntime, step_id: str, token: str, on_lost: Any) -> None:
        super().__init__(name=f"heartbeat-{step_id}", daemon=True)
        self.runtime, self.step_id, self.token, self.on_lost = runtime, step_id, token, on_lost
        self.stopped = threading.Event()

    def run(self) -> None:
        settings = self.runtime.settings
        while not self.stopped.wait(settings.heartbeat_s):
            try:
                with session_scope(self.runtime.sessions) as session:
                    held = leases.renew(session, self.step_id, self.token, settings.step_lease_s)
            except OperationalError:
                continue  # the database will be back; the lease has slack for a few misses
            if not held:
                self.on_lost()
                return


def run_step(runtime: WorkerRuntime, step_id: str) -> str:
    """Claim, run and store one step; returns what happened (for logs and tests)."""
    settings = runtime.settings
    with session_scope(runtime.sessions) as session:
        claimed = leases.claim(session, step_id, settings.step_lease_s)
    if claimed is None:
        return "skipped"
    structlog.contextvars.bind_contextvars(
        step_id=claimed.id, job_id=claimed.job_id, tenant=claimed.tenant_id
    )
    try:
        return _run_claimed(runtime, claimed)
    finally:
        structlog.contextvars.unbind_contextvars("step_id", "job_id", "tenant")


def _run_claimed(runtime: WorkerRuntime, claimed: leases.ClaimedStep) -> str:
    retries: list[str] = []

    def on_retry(exc: BaseException) -> None:
        retries.append(type(exc).__name__)
        log.info("backend call retried", backend=claimed.backend, error=str(exc)[:200])

    try:
        adapter = runtime.adapter(claimed.backend)
    except PermanentBackendError as exc:
        _store_failure(runtime, claimed, exc, None)
        return "failed"
    future = runtime.submit(
        run_llm_step(adapter, claimed.input, claimed.model, runtime.settings, on_retry)
    )
    heartbeat = Heartbeat(runtime, claimed.id, claimed.token, future.cancel)
    heartbeat.start()
    try:
        output = future.result()
    except CancelledError:
        log.info("step cancelled while running")
        return "cancelled"
    except BackendError as exc:
        partial = exc.output if isinstance(exc, InvalidModelAnswer) else None
        _store_failure(runtime, claimed, exc, partial)
        return "failed"
    finally:
        heartbeat.stopped.set()
    _store_success(runtime, claimed, output, len(retries))
    return "succeeded"


@_db_retry
def _store_success(
    runtime: WorkerRuntime, claimed: leases.ClaimedStep, output: StepOutput, retries: int
) -> None:
    with session_scope(runtime.sessions) as session:
        stored = leases.complete(
            session,
            claimed.id,
            claimed.token,
            {**output.result, "retries": retries},
            output.prompt_tokens,
            output.completion_tokens,
        )
    log.info("step finished", status="succeeded" if stored else "discarded", retries=retries)


@_db_retry
def _store_failure(
    runtime: WorkerRuntime,
    claimed: leases.ClaimedStep,
    exc: BackendError,
    partial: StepOutput | None,
) -> None:
    error = {
        "type": "backend_error" if not isinstance(exc, InvalidModelAnswer) else "invalid_answer",
        "message": exc.message,
        "backend": claimed.backend,
        "status": exc.status,
    }
    with session_scope(runtime.sessions) as session:
        leases.fail(
            session,
            claimed.id,
            claimed.token,
            error,
            partial.prompt_tokens if partial else 0,
            partial.completion_tokens if partial else 0,
        )
    log.info("step failed", error=exc.message[:300])
