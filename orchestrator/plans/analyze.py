"""Analyze: the analysis per chunk (map), then merged into one typed result (reduce)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from orchestrator.plans.base import (
    Outcome,
    PlanContext,
    PlanError,
    StepSpec,
    first_failure,
    llm_input,
)
from orchestrator.plans.grouping import group_parts, split_text
from shared import prompts
from shared.analysis import json_schema_for
from shared.models import Step

ANSWER_TOKENS = 512
# Merged without another model call: arithmetic does it better.
MERGED_LOCALLY = {"sentiment", "classification", "entities"}


def document_text(job_input: dict[str, Any]) -> str:
    """The document's text (files are extracted before planning)."""
    document = job_input.get("document") or {}
    text = document.get("text")
    if not isinstance(text, str) or not text.strip():
        raise PlanError("the document has no text to analyze")
    return text


class AnalyzePlanner:
    """Typed analyses of documents of any length."""

    def _extra(self, ctx: PlanContext) -> dict[str, Any]:
        analysis = ctx.job.input["analysis"]
        return {
            "analysis": analysis,
            "labels": ctx.job.input.get("labels"),
            "json_schema": json_schema_for(analysis),
        }

    def first(self, ctx: PlanContext) -> list[StepSpec]:
        job_input = ctx.job.input
        chunks = split_text(document_text(job_input), ctx.context_tokens, ANSWER_TOKENS)
        kind = "analyze" if len(chunks) == 1 else "map"
        return [
            StepSpec(
                kind,
                llm_input(
                    prompts.analyze(
                        chunk,
                        job_input["analysis"],
                        job_input.get("labels"),
                        job_input.get("instructions"),
                    ),
                    ctx.job.options,
                    **self._extra(ctx),
                ),
            )
            for chunk in chunks
        ]

    def advance(self, ctx: PlanContext, stage: int, steps: list[Step]) -> Outcome:
        error = first_failure(steps)
        if error:
            return Outcome(error=error)
        partials = [dict((s.result or {}).get("parsed") or {}) for s in steps]
        weights = [max(1, len(str(s.input.get("messages", "")))) for s in steps]
        analysis = ctx.job.input["analysis"]
        if len(steps) == 1 and steps[0].kind in ("analyze", "reduce"):
            return Outcome(result=partials[0])
        if analysis in MERGED_LOCALLY and steps[0].kind == "map":
            return Outcome(result=merge_locally(analysis, partials, weights))
        texts = [json.dumps(p, ensure_ascii=False) for p in partials]
        groups = group_parts(texts, ctx.context_tokens, ANSWER_TOKENS)
        by_text = dict(zip(texts, partials, strict=True))
        return Outcome(
            steps=[
                StepSpec(
                    "reduce",
                    llm_input(
                        prompts.combine_analyses(
                            [by_text[t] for t in group],
                            analysis,
                            ctx.job.input.get("instructions"),
                        ),
                        ctx.job.options,
                        **self._extra(ctx),
                    ),
                )
                for group in groups
            ]
        )


def merge_locally(
    analysis: str, partials: list[dict[str, Any]], weights: list[int]
) -> dict[str, Any]:
    """Sentiment averaged, classification scores averaged, entities unioned, by chunk size."""
    total = float(sum(weights)) or 1.0
    if analysis == "sentiment":
        score = sum(float(p["score"]) * w for p, w in zip(partials, weights, strict=True)) / total
        label = "positive" if score > 0.2 else "negative" if score < -0.2 else "neutral"
        return {"sentiment": label, "score": round(score, 4)}
    if analysis == "classification":
        scores: dict[str, float] = {}
        for p, w in zip(partials, weights, strict=True):
            part_scores = p.get("scores") or {p["label"]: 1.0}
            for label, value in part_scores.items():
                scores[label] = scores.get(label, 0.0) + float(value) * w / total
        votes = Counter(p["label"] for p in partials)
        label = max(scores, key=lambda k: scores[k]) if scores else votes.most_common(1)[0][0]
        return {"label": label, "scores": {k: round(v, 4) for k, v in scores.items()}}
    seen: dict[tuple[str, str], dict[str, str]] = {}
    for p in partials:
        for entity in p.get("entities", []):
            key = (entity["name"].strip().lower(), entity["type"].strip().lower())
            seen.setdefault(key, entity)
    return {"entities": list(seen.values())}
