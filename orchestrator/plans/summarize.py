"""Summarize: one call for short text; chunk → map → reduce (hierarchically) for long text."""

from __future__ import annotations

from orchestrator.plans.base import Outcome, PlanContext, StepSpec, first_failure, llm_input
from orchestrator.plans.grouping import group_parts, split_text
from shared import prompts
from shared.models import Step


class SummarizePlanner:
    """Summaries of any length of text."""

    def _answer_tokens(self, ctx: PlanContext) -> int:
        max_words = int(ctx.job.input.get("max_words") or 120)
        return min(ctx.settings.summary_max_tokens, max(64, int(max_words * 1.6)))

    def first(self, ctx: PlanContext) -> list[StepSpec]:
        text = ctx.job.input["text"]
        instructions = ctx.job.input.get("instructions")
        max_words = int(ctx.job.input.get("max_words") or 120)
        chunks = split_text(text, ctx.context_tokens, self._answer_tokens(ctx))
        kind = "summarize" if len(chunks) == 1 else "map"
        return [
            StepSpec(
                kind,
                llm_input(prompts.summarize(chunk, instructions, max_words), ctx.job.options),
            )
            for chunk in chunks
        ]

    def advance(self, ctx: PlanContext, stage: int, steps: list[Step]) -> Outcome:
        error = first_failure(steps)
        if error:
            return Outcome(error=error)
        parts = [str((s.result or {}).get("content", "")).strip() for s in steps]
        if len(steps) == 1 and steps[0].kind in ("summarize", "reduce"):
            return Outcome(result={"summary": parts[0]})
        instructions = ctx.job.input.get("instructions")
        max_words = int(ctx.job.input.get("max_words") or 120)
        groups = group_parts(parts, ctx.context_tokens, self._answer_tokens(ctx))
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
