"""Steps that are one LLM call (chat, summarize, map, reduce, analyze): result stored, then done."""

from __future__ import annotations

import json
from concurrent.futures import CancelledError

import redis
from sqlalchemy.orm import Session

from shared.backends import BackendError, PermanentBackendError
from shared.db import session_scope
from shared.jobs.channel import job_channel
from shared.jobs.status import StepStatus
from shared.logging import get_logger
from shared.redaction import redacting_adapter
from workers import fallback
from workers import metrics as worker_metrics
from workers.backends.base import DeltaSink
from workers.fallback import Chain
from workers.lease import ClaimedStep, complete, db_retry, fail
from workers.llm import InvalidModelAnswer, StepOutput, run_llm_step
from workers.runtime import WorkerRuntime

log = get_logger(__name__)


def _delta_sink(
    runtime: WorkerRuntime, claimed: ClaimedStep, retries: list[str]
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


def run(runtime: WorkerRuntime, claimed: ClaimedStep, chain: Chain) -> str:
    """Call the backend (retries, admission, fail-over included) and store what it answered."""
    retries: list[str] = []

    def on_retry(exc: BaseException) -> None:
        retries.append(type(exc).__name__)
        worker_metrics.retried(claimed.backend, exc)
        log.info("backend call retried", backend=claimed.backend, error=str(exc)[:200])

    try:
        adapter = worker_metrics.timed(runtime.adapter(claimed.backend), claimed.backend)
        # PII redaction for tenants that want it, before text leaves for a cloud.
        adapter = redacting_adapter(runtime.sessions, runtime.backends, claimed, adapter)
    except PermanentBackendError as exc:
        _store_failure(runtime, claimed, exc, None)
        return StepStatus.FAILED
    successor = fallback.next_backend(chain, claimed.backend, set(runtime.backends))
    future = runtime.submit(
        run_llm_step(
            adapter, claimed.input, claimed.model, runtime.settings, on_retry,
            admission=runtime.admission(claimed.backend, fail_over=successor is not None),
            on_delta=_delta_sink(runtime, claimed, retries),
        )
    )
    heartbeat = runtime.heartbeat(claimed, on_lost=future.cancel)
    heartbeat.start()
    try:
        output = future.result()
    except CancelledError:
        log.info("step cancelled while running")
        return StepStatus.CANCELLED
    except BackendError as exc:
        if successor is not None and fallback.is_outage(exc):
            _fail_over(runtime, claimed, successor, chain.models.get(successor), exc)
            return "failed_over"
        partial = exc.output if isinstance(exc, InvalidModelAnswer) else None
        _store_failure(runtime, claimed, exc, partial)
        return StepStatus.FAILED
    finally:
        heartbeat.stop()
    _store_success(runtime, claimed, output, len(retries), len(chain) > 1)
    return StepStatus.SUCCEEDED


@db_retry
def _fail_over(
    runtime: WorkerRuntime,
    claimed: ClaimedStep,
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


@db_retry
def _store_success(
    runtime: WorkerRuntime,
    claimed: ClaimedStep,
    output: StepOutput,
    retries: int,
    has_fallback: bool = False,
) -> None:
    def answered(session: Session) -> None:
        # Before a one-step job ends with this step, so its end shows who answered.
        fallback.record_answering_backend(session, claimed.job_id, claimed.backend, claimed.model)

    with session_scope(runtime.sessions) as session:
        stored = complete(
            session,
            claimed.id,
            claimed.token,
            {**output.result, "retries": retries, "answered_by": claimed.backend},
            output.prompt_tokens,
            output.completion_tokens,
            on_stored=answered if has_fallback else None,
        )
    log.info("step finished", status=StepStatus.SUCCEEDED if stored else "discarded",
             retries=retries)


@db_retry
def _store_failure(
    runtime: WorkerRuntime,
    claimed: ClaimedStep,
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
        fail(
            session,
            claimed.id,
            claimed.token,
            error,
            partial.prompt_tokens if partial else 0,
            partial.completion_tokens if partial else 0,
        )
    log.info("step failed", error=exc.message[:300])
