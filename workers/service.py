"""One step from claim to stored result, with a heartbeat holding its lease meanwhile."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import CancelledError
from typing import Any

import redis
import structlog
from sqlalchemy.exc import OperationalError
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from shared.backends import BackendError, PermanentBackendError
from shared.db import session_scope
from shared.jobs.channel import job_channel
from shared.logging import get_logger
from shared.redaction import redacting_adapter
from workers import fallback, leases
from workers import metrics as worker_metrics
from workers.backends.base import DeltaSink
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
        chain = fallback.chain_of(session, claimed.job_id) if claimed else fallback.Chain()
    if claimed is None:
        return "skipped"
    structlog.contextvars.bind_contextvars(
        step_id=claimed.id, job_id=claimed.job_id, tenant=claimed.tenant_id
    )
    started = time.monotonic()  # metrics (issue 9)
    try:
        outcome = _run_claimed(runtime, claimed, chain)
        worker_metrics.step_ended(claimed.backend, claimed.kind, outcome,
                                  time.monotonic() - started)  # metrics (issue 9)
        return outcome
    finally:
        structlog.contextvars.unbind_contextvars("step_id", "job_id", "tenant")


def _delta_sink(
    runtime: WorkerRuntime, claimed: leases.ClaimedStep, retries: list[str]
) -> DeltaSink | None:
    """Publishes a chat step's partial output on the job's channel (best effort)."""
    if claimed.kind != "chat" or not runtime.settings.stream_chat:
        return None
    channel = job_channel(runtime.settings.broker_key_prefix, claimed.job_id)

    async def publish(piece: str) -> None:
        # `attempt` lets a listener drop the partial text of an attempt that was retried.
        event = {"type": "delta", "step_id": claimed.id, "attempt": len(retries) + 1,
                 "backend": claimed.backend, "content": piece}
        try:
            await runtime.redis.publish(channel, json.dumps(event))
        except redis.RedisError:
            pass  # live output is a convenience; the stored result is what counts

    return publish


def _run_claimed(
    runtime: WorkerRuntime, claimed: leases.ClaimedStep, chain: fallback.Chain
) -> str:
    if claimed.kind == "rows":
        # A batch chunk: many rows, each its own call, stored as they end (workers/rows.py).
        from workers.rows import run_rows_step

        return run_rows_step(runtime, claimed)
    retries: list[str] = []

    def on_retry(exc: BaseException) -> None:
        retries.append(type(exc).__name__)
        worker_metrics.retried(claimed.backend, exc)  # metrics (issue 9)
        log.info("backend call retried", backend=claimed.backend, error=str(exc)[:200])

    try:
        # metrics (issue 9): each backend call timed by outcome
        adapter = worker_metrics.timed(runtime.adapter(claimed.backend), claimed.backend)
        # Issue 8: PII redaction for tenants that want it, before text leaves for a cloud.
        adapter = redacting_adapter(runtime.sessions, runtime.backends, claimed, adapter)
    except PermanentBackendError as exc:
        _store_failure(runtime, claimed, exc, None)
        return "failed"
    successor = fallback.next_backend(chain, claimed.backend, set(runtime.backends))
    future = runtime.submit(
        run_llm_step(
            adapter, claimed.input, claimed.model, runtime.settings, on_retry,
            guard=runtime.guard(claimed.backend, fail_over=successor is not None),
            on_delta=_delta_sink(runtime, claimed, retries),
        )
    )
    heartbeat = Heartbeat(runtime, claimed.id, claimed.token, future.cancel)
    heartbeat.start()
    try:
        output = future.result()
    except CancelledError:
        log.info("step cancelled while running")
        return "cancelled"
    except BackendError as exc:
        if successor is not None and fallback.is_outage(exc):
            _fail_over(runtime, claimed, successor, chain.models.get(successor), exc)
            return "failed_over"
        partial = exc.output if isinstance(exc, InvalidModelAnswer) else None
        _store_failure(runtime, claimed, exc, partial)
        return "failed"
    finally:
        heartbeat.stopped.set()
    _store_success(runtime, claimed, output, len(retries), len(chain) > 1)
    return "succeeded"


@_db_retry
def _fail_over(
    runtime: WorkerRuntime,
    claimed: leases.ClaimedStep,
    successor: str,
    model: str | None,
    exc: BackendError,
) -> None:
    with session_scope(runtime.sessions) as session:
        moved = fallback.reroute(
            session, claimed.id, claimed.token, successor, model or claimed.model
        )
    log.warning("step failed over", backend=claimed.backend, to=successor, moved=moved,
                error=exc.message[:200])


@_db_retry
def _store_success(
    runtime: WorkerRuntime,
    claimed: leases.ClaimedStep,
    output: StepOutput,
    retries: int,
    has_fallback: bool = False,
) -> None:
    with session_scope(runtime.sessions) as session:
        stored = leases.complete(
            session,
            claimed.id,
            claimed.token,
            {**output.result, "retries": retries, "answered_by": claimed.backend},
            output.prompt_tokens,
            output.completion_tokens,
        )
        if stored and has_fallback:
            fallback.record_answering_backend(
                session, claimed.job_id, claimed.backend, claimed.model
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
