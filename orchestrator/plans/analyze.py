"""Analyze: extract the document, the analysis per chunk (map), merged into one typed result."""

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
from shared import prompts, storage
from shared.analysis import InvalidAnswer, json_schema_for, validate_answer
from shared.documents import ExtractionError, extract_text
from shared.documents.grouping import group_parts, split_text
from shared.models import Step
from shared.settings import Settings
from shared.tokens import messages_tokens

ANSWER_TOKENS = 512
# Merged without another model call: arithmetic does it better.
MERGED_LOCALLY = {"sentiment", "classification", "entities"}


def prompt_tokens(messages: list[dict[str, str]]) -> int:
    """Tokens the fixed part of a prompt takes."""
    return messages_tokens(messages)


def answer_tokens(options: dict[str, Any]) -> int:
    """Tokens reserved for the model's answer."""
    return int(options.get("max_tokens") or ANSWER_TOKENS)


def plan_chunks(
    text: str, job_input: dict[str, Any], context_tokens: int, options: dict[str, Any]
) -> list[str]:
    """The document's chunks, sized from the context window, the real prompt and the answer."""
    empty_prompt = prompts.analyze(
        "",
        job_input["analysis"],
        job_input.get("labels"),
        job_input.get("instructions"),
        job_input.get("result_schema"),
    )
    try:
        return split_text(
            text, context_tokens, answer_tokens(options), prompt_tokens(empty_prompt)
        )
    except ValueError as exc:  # the prompt and answer leave no room for the document
        raise PlanError(str(exc), code="context_too_small") from exc


def document_text(
    job_input: dict[str, Any], tenant_id: str, plan: dict[str, Any], settings: Settings
) -> str:
    """The document's text: given inline, or extracted from the tenant's stored file."""
    document = job_input.get("document") or {}
    file_id = document.get("file_id")
    if file_id:
        filename = str((plan.get("document") or {}).get("filename") or file_id)
        path = storage.path_for(settings.data_dir, tenant_id, file_id)
        if not path.is_file():
            raise PlanError(
                f"file {file_id} was deleted before the job could read it; upload it again",
                code="file_missing",
            )
        try:
            return extract_text(path, filename, max_chars=settings.max_text_chars)
        except ExtractionError as exc:
            raise PlanError(
                f"{filename} cannot be analyzed ({exc.reason}): {exc}",
                code="extraction_failed",
                details={"reason": exc.reason, "file_id": file_id},
            ) from exc
    text = document.get("text")
    if not isinstance(text, str) or not text.strip():
        raise PlanError("the document has no text to analyze")
    return text


class AnalyzePlanner:
    """Typed analyses of documents of any length."""

    def _extra(self, ctx: PlanContext) -> dict[str, Any]:
        job_input = ctx.job.input
        analysis = job_input["analysis"]
        extra: dict[str, Any] = {
            "analysis": analysis,
            "labels": job_input.get("labels"),
            "json_schema": json_schema_for(analysis, job_input.get("result_schema")),
        }
        if job_input.get("result_schema") is not None:
            extra["result_schema"] = job_input["result_schema"]
        return extra

    def first(self, ctx: PlanContext) -> list[StepSpec]:
        job_input = ctx.job.input
        text = document_text(job_input, ctx.job.tenant_id, ctx.job.plan or {}, ctx.settings)
        chunks = plan_chunks(text, job_input, ctx.context_tokens, ctx.job.options)
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
                        job_input.get("result_schema"),
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
        job_input = ctx.job.input
        analysis = job_input["analysis"]
        if len(steps) == 1 and steps[0].kind in ("analyze", "reduce"):
            return self._final(ctx, partials[0])
        if analysis in MERGED_LOCALLY and steps[0].kind == "map":
            merged = merge_locally(analysis, partials, weights, job_input.get("labels"))
            return self._final(ctx, merged)
        texts = [json.dumps(p, ensure_ascii=False) for p in partials]
        fixed = prompt_tokens(
            prompts.combine_analyses(
                [], analysis, job_input.get("instructions"), job_input.get("result_schema")
            )
        )
        try:
            groups = group_parts(texts, ctx.context_tokens, answer_tokens(ctx.job.options), fixed)
        except ValueError as exc:
            raise PlanError(str(exc), code="context_too_small") from exc
        by_text = dict(zip(texts, partials, strict=True))
        return Outcome(
            steps=[
                StepSpec(
                    "reduce",
                    llm_input(
                        prompts.combine_analyses(
                            [by_text[t] for t in group],
                            analysis,
                            job_input.get("instructions"),
                            job_input.get("result_schema"),
                        ),
                        ctx.job.options,
                        **self._extra(ctx),
                    ),
                )
                for group in groups
            ]
        )

    def _final(self, ctx: PlanContext, result: dict[str, Any]) -> Outcome:
        """The job's result, validated once more against its schema (locally merged ones too)."""
        job_input = ctx.job.input
        try:
            typed = validate_answer(
                job_input["analysis"],
                json.dumps(result),
                job_input.get("labels"),
                job_input.get("result_schema"),
            )
        except InvalidAnswer as exc:
            return Outcome(error={"type": "invalid_answer", "message": f"the result: {exc}"})
        return Outcome(result=typed)


def merge_locally(
    analysis: str,
    partials: list[dict[str, Any]],
    weights: list[int],
    labels: list[str] | None = None,
) -> dict[str, Any]:
    """Sentiment averaged, classification scores averaged, entities unioned, by chunk size."""
    total = float(sum(weights)) or 1.0
    if analysis == "sentiment":
        score = sum(float(p["score"]) * w for p, w in zip(partials, weights, strict=True)) / total
        label = "positive" if score > 0.2 else "negative" if score < -0.2 else "neutral"
        return {"sentiment": label, "score": round(score, 4)}
    if analysis == "classification":
        wanted = {label.lower(): label for label in labels or []}
        scores: dict[str, float] = {}
        for p, w in zip(partials, weights, strict=True):
            part_scores = p.get("scores") or {p["label"]: 1.0}
            for label, value in part_scores.items():
                if wanted and label.lower() not in wanted:
                    continue  # a model may score labels it was not offered
                label = wanted.get(label.lower(), label)
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
