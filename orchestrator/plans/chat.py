"""Chat: one step per answer, the assistant's message is the result (shared.jobs.plan)."""

from __future__ import annotations

from orchestrator.plans.base import Outcome, PlanContext, StepSpec
from shared.jobs.plan import chat_outcome, chat_steps
from shared.models import Step


class ChatPlanner:
    """A chat job is one LLM call; with n > 1, one call per answer."""

    def first(self, ctx: PlanContext) -> list[StepSpec]:
        return chat_steps(ctx.job)

    def advance(self, ctx: PlanContext, stage: int, steps: list[Step]) -> Outcome:
        result, error = chat_outcome(steps)
        return Outcome(result=result, error=error)
