"""Running one LLM step: build the call, retry what is transient, validate typed answers."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared import prompts
from shared.analysis import InvalidAnswer, validate_answer
from shared.backends import ChatRequest, ChatResult, PermanentBackendError
from shared.settings import Settings
from workers.admission import Admission
from workers.backends.base import Adapter, DeltaSink
from workers.retry import call_with_retries


@dataclass
class StepOutput:
    """A step's result and the tokens it cost."""

    result: dict[str, Any]
    prompt_tokens: int = 0
    completion_tokens: int = 0


def chat_request(step_input: dict[str, Any], model: str | None) -> ChatRequest:
    """The backend call a step asks for."""
    options = step_input.get("options") or {}
    stop = options.get("stop")
    return ChatRequest(
        messages=list(step_input["messages"]),
        model=model,
        temperature=options.get("temperature"),
        max_tokens=options.get("max_tokens"),
        top_p=options.get("top_p"),
        stop=[stop] if isinstance(stop, str) else stop,
        json_mode=bool(step_input.get("analysis"))
        or options.get("response_format") == "json_object",
        json_schema=step_input.get("json_schema"),
    )


async def run_llm_step(
    adapter: Adapter,
    step_input: dict[str, Any],
    model: str | None,
    settings: Settings,
    on_retry: Callable[[BaseException], None] | None = None,
    admission: Admission | None = None,
    on_delta: DeltaSink | None = None,
) -> StepOutput:
    """One LLM call with retries; typed analyses get one repair attempt on invalid JSON."""
    deadline = time.monotonic() + settings.step_deadline_s
    request = chat_request(step_input, model)

    async def once(req: ChatRequest, sink: DeltaSink | None) -> ChatResult:
        if admission is None:
            return await adapter.chat(req, sink)
        return await admission.call(req, lambda: adapter.chat(req, sink))

    async def call(req: ChatRequest, sink: DeltaSink | None = None) -> ChatResult:
        return await call_with_retries(
            lambda: once(req, sink),
            max_attempts=settings.retry_max_attempts,
            initial_wait=settings.retry_initial_wait_s,
            max_wait=settings.retry_max_wait_s,
            deadline=deadline,
            on_retry=on_retry,
        )

    answer = await call(request, on_delta)
    output = StepOutput(
        {"content": answer.content, "finish_reason": answer.finish_reason},
        answer.prompt_tokens,
        answer.completion_tokens,
    )
    analysis = step_input.get("analysis")
    if not analysis:
        return output
    labels = step_input.get("labels")
    # A custom analysis may carry the caller's JSON schema; the answer must satisfy it.
    result_schema = step_input.get("result_schema")
    try:
        output.result["parsed"] = validate_answer(analysis, answer.content, labels, result_schema)
        return output
    except InvalidAnswer as first_error:
        request.messages = [
            *request.messages,
            {"role": "assistant", "content": answer.content},
            prompts.repair(str(first_error)),
        ]
        retry_answer = await call(request)
        output.prompt_tokens += retry_answer.prompt_tokens
        output.completion_tokens += retry_answer.completion_tokens
        try:
            parsed = validate_answer(analysis, retry_answer.content, labels, result_schema)
        except InvalidAnswer as second_error:
            hint = ""
            if retry_answer.finish_reason == "length":
                # Said plainly: otherwise the error reads like a model bug, not a budget.
                limit = request.max_tokens or "the backend's default"
                hint = f"; the answer was cut off at max_tokens ({limit}): raise options.max_tokens"
            raise InvalidModelAnswer(
                f"the model's answer was not a valid {analysis} result twice "
                f"(first: {first_error}; after one repair attempt: {second_error}){hint}",
                output,
            ) from second_error
        output.result = {
            "content": retry_answer.content,
            "finish_reason": retry_answer.finish_reason,
            "parsed": parsed,
            "repaired": True,
        }
        return output


class InvalidModelAnswer(PermanentBackendError):
    """The model could not produce a valid typed answer, even after a repair attempt."""

    def __init__(self, message: str, output: StepOutput) -> None:
        super().__init__(message)
        self.output = output
