"""Step specs, and the plans of jobs that may be one step (chat, summary): the orchestrator's
planners and the direct path share them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared import prompts
from shared.documents.grouping import split_text
from shared.jobs.status import StepStatus
from shared.models import Job, Step
from shared.settings import Settings


@dataclass
class StepSpec:
    """A step to create: what kind, its input, and its lane."""

    kind: str
    input: dict[str, Any]
    lane: str = "interactive"


def llm_input(
    messages: list[dict[str, str]], options: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """The input of a step that is one LLM call."""
    return {"messages": messages, "options": options, **extra}


def first_failure(steps: list[Step]) -> dict[str, Any] | None:
    """The error of the first failed step, as the job's error."""
    for step in steps:
        if step.status == StepStatus.FAILED:
            error = dict(step.error or {})
            error.setdefault("message", "a step failed")
            error.setdefault("type", "step_failed")
            error["step_id"] = step.id
            return error
    return None


def chat_steps(job: Job) -> list[StepSpec]:
    """A chat job's steps: one LLM call per answer asked for (OpenAI's `n`), run in parallel."""
    n = int(job.options.get("n") or 1)
    return [StepSpec("chat", llm_input(job.input["messages"], job.options)) for _ in range(n)]


def chat_outcome(steps: list[Step]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(result, error) of a chat job whose steps all ended."""
    error = first_failure(steps)
    if error:
        return None, error
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
    return result, None


def summary_answer_tokens(job: Job, settings: Settings) -> int:
    """Tokens reserved for one summary answer, from the words asked for."""
    max_words = int(job.input.get("max_words") or 120)
    return min(settings.summary_max_tokens, max(64, int(max_words * 1.6)))


def summarize_steps(job: Job, context_tokens: int, settings: Settings) -> list[StepSpec]:
    """A summary's first steps: one call for a text that fits, else one map step per chunk."""
    text = job.input["text"]
    instructions = job.input.get("instructions")
    max_words = int(job.input.get("max_words") or 120)
    chunks = split_text(text, context_tokens, summary_answer_tokens(job, settings))
    kind = "summarize" if len(chunks) == 1 else "map"
    return [
        StepSpec(kind, llm_input(prompts.summarize(chunk, instructions, max_words), job.options))
        for chunk in chunks
    ]


def summary_outcome(steps: list[Step]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(result, error) of a summary whose last stage is one step (summarize or reduce)."""
    error = first_failure(steps)
    if error:
        return None, error
    return {"summary": str((steps[0].result or {}).get("content", "")).strip()}, None
