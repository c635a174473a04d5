"""Queue and task names: the one place they are spelled."""

from __future__ import annotations

ORCHESTRATOR_QUEUE = "orchestrator"
WEBHOOK_QUEUE = "webhooks"

TASK_PLAN = "orchestrator.plan"
TASK_STEP_DONE = "orchestrator.step_done"
TASK_SWEEP = "orchestrator.sweep"
TASK_RUN_STEP = "llm.run_step"
TASK_DELIVER_WEBHOOK = "webhooks.deliver"


def llm_queue(backend: str, lane: str = "interactive") -> str:
    """Queue of a backend's worker pool; batch work has its own, lower-priority lane."""
    return f"llm.{backend}.batch" if lane == "batch" else f"llm.{backend}"
