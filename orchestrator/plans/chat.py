"""Chat: one step, the assistant's message is the result."""

from __future__ import annotations

from orchestrator.plans.base import Outcome, PlanContext, StepSpec, first_failure, llm_input
from shared.models import Step


class ChatPlanner:
    """A chat job is one LLM call."""

    def first(self, ctx: PlanContext) -> list[StepSpec]:
        return [StepSpec("chat", llm_input(ctx.job.input["messages"], ctx.job.options))]

    def advance(self, ctx: PlanContext, stage: int, steps: list[Step]) -> Outcome:
        error = first_failure(steps)
        if error:
            return Outcome(error=error)
        result = steps[0].result or {}
        return Outcome(
            result={
                "message": {"role": "assistant", "content": result.get("content", "")},
                "finish_reason": result.get("finish_reason", "stop"),
            }
        )
