"""Summarize: one call for short text; chunk → map → reduce (hierarchically) for long text.

The first stage and the one-step result are shared.jobs.plan's (the direct path uses them).
"""

from __future__ import annotations

from orchestrator.plans.base import Outcome, PlanContext, StepSpec, first_failure, llm_input
from shared import prompts
from shared.documents.grouping import group_parts
from shared.jobs.plan import summarize_steps, summary_answer_tokens, summary_outcome
from shared.models import Step


class SummarizePlanner:
    """Summaries of any length of text."""

    def first(self, ctx: PlanContext) -> list[StepSpec]:
        return summarize_steps(ctx.job, ctx.context_tokens, ctx.settings)

    def advance(self, ctx: PlanContext, stage: int, steps: list[Step]) -> Outcome:
        if first_failure(steps) or (len(steps) == 1 and steps[0].kind in ("summarize", "reduce")):
            result, error = summary_outcome(steps)
            return Outcome(result=result, error=error)
        parts = [str((s.result or {}).get("content", "")).strip() for s in steps]
        instructions = ctx.job.input.get("instructions")
        max_words = int(ctx.job.input.get("max_words") or 120)
        answer = summary_answer_tokens(ctx.job, ctx.settings)
        groups = group_parts(parts, ctx.context_tokens, answer)
        return Outcome(
            steps=[
                StepSpec(
                    "reduce",
                    llm_input(
                        prompts.combine_summaries(group, instructions, max_words),
                        ctx.job.options,
                    ),
                )
                for group in groups
            ]
        )
