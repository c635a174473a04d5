"""Chat: one step, the assistant's message is the result."""

from __future__ import annotations

from orchestrator.plans.base import Outcome, PlanContext, StepSpec, first_failure, llm_input
from shared.models import Step


class ChatPlanner:
    """A chat job is one LLM call."""

    def first(self, ctx: PlanContext) -> list[StepSpec]:
        # n > 1 (OpenAI's `n`): one step per answer, run in parallel.
        n = int(ctx.job.options.get("n") or 1)
        return [StepSpec("chat", llm_input(ctx.job.input["messages"], ctx.job.options))
                for _ in range(n)]

    def advance(self, ctx: PlanContext, stage: int, steps: list[Step]) -> Outcome:
        error = first_failure(steps)
        if error:
            return Outcome(error=error)
        answers = [
            {
                "message": {"role": "assistant", "content": (s.result or {}).get("content", "")},
                "finish_reason": (s.result or {}).get("finish_reason", "stop"),
            }
            for s in steps
        ]
        result = dict(answers[0])
        if len(answers) > 1:
            result["choices"] = answers
        return Outcome(result=result)
