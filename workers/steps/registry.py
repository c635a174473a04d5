"""Running a step: claim it, hand it to the runner of its kind, record how it ended."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from shared.db import session_scope
from workers import fallback
from workers import metrics as worker_metrics
from workers.fallback import Chain
from workers.lease import ClaimedStep, claim
from workers.runtime import WorkerRuntime
from workers.steps import openai_batch_lines, sheet_rows, single_call

# Claims a step's work to the end; returns what happened (for logs, metrics and tests).
StepRunner = Callable[[WorkerRuntime, ClaimedStep, Chain], str]

# Chunk steps are kind "rows"; their input's `executor` says whose rows they are.
RUNNERS: dict[tuple[str, str | None], StepRunner] = {
    ("rows", None): sheet_rows.run,
    ("rows", "openai_chat"): openai_batch_lines.run,
}


def runner_for(claimed: ClaimedStep) -> StepRunner:
    """The runner of a step's kind; every other kind is a single LLM call."""
    key = (claimed.kind, claimed.input.get("executor"))
    return RUNNERS.get(key, single_call.run)


def run_step(runtime: WorkerRuntime, step_id: str) -> str:
    """Claim, run and store one step; returns what happened (for logs and tests)."""
    settings = runtime.settings
    with session_scope(runtime.sessions) as session:
        claimed = claim(session, step_id, settings.step_lease_s)
        chain = fallback.chain_of(session, claimed.job_id) if claimed else Chain()
    if claimed is None:
        return "skipped"
    structlog.contextvars.bind_contextvars(
        step_id=claimed.id, job_id=claimed.job_id, tenant=claimed.tenant_id
    )
    started = time.monotonic()
    try:
        outcome = runner_for(claimed)(runtime, claimed, chain)
        worker_metrics.step_ended(claimed.backend, claimed.kind, outcome,
                                  time.monotonic() - started)
        return outcome
    finally:
        structlog.contextvars.unbind_contextvars("step_id", "job_id", "tenant")
