"""OpenAI chat-completions shapes shared by the API and the batch workers: request, answers."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.ids import new_id
from shared.jsontypes import AnswerCount, MaxTokens, Temperature, TopP


class ContentPart(BaseModel):
    """One part of a message's content; only text parts can be sent to a chat backend."""

    model_config = ConfigDict(extra="allow")
    type: Literal["text"]
    text: str


class ChatMessageIn(BaseModel):
    """A message as OpenAI accepts it (developer is OpenAI's newer name for system)."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] = Field(description="Text, or a list of text parts")
    name: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_only(cls, v: object) -> object:
        # Before the union is tried, so an image part gets this message, not two type errors.
        if isinstance(v, list) and any(
            not isinstance(p, dict) or p.get("type") != "text" or not isinstance(p.get("text"), str)
            for p in v
        ):
            raise ValueError("only text content parts are supported")
        return v

    def text(self) -> str:
        """The message's text."""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text", "json_object"]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    # Strict: a flag is JSON true or false, not 0 or "yes", as the schema says.
    include_usage: bool = Field(False, strict=True)


class ChatCompletionRequest(BaseModel):
    """The body of POST /v1/chat/completions (and of a Batch API line)."""

    # Unknown OpenAI parameters (seed, user, logit_bias...) are accepted and ignored.
    model_config = ConfigDict(extra="ignore")
    # 200: the longest model a job stores, so whatever the name routes to fits.
    model: str = Field(min_length=1, max_length=200, description="`backend/model` or a model")
    messages: list[ChatMessageIn] = Field(min_length=1)
    n: AnswerCount = Field(1, description="Answers to generate, one backend call each")
    stop: str | list[str] | None = Field(None, description="Up to 4 stop sequences")
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    response_format: ResponseFormat | None = None
    stream: bool = Field(False, strict=True)
    stream_options: StreamOptions | None = None
    tools: list[dict[str, Any]] | None = Field(
        None, description="Not supported: must be empty", json_schema_extra={"maxItems": 0}
    )

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and len(v) > 4:
            raise ValueError("at most 4 stop sequences")
        return v

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, v: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if v:
            raise ValueError("tools (function calling) are not supported by llm-jobs")
        return v

    def job_messages(self) -> list[dict[str, str]]:
        """The messages as llm-jobs chat input."""
        out = []
        for m in self.messages:
            role = "system" if m.role == "developer" else m.role
            out.append({"role": role, "content": m.text()})
        return out

    def job_options(self) -> dict[str, Any]:
        """Temperature, limits, stop, JSON mode and n as llm-jobs job options."""
        options: dict[str, Any] = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_completion_tokens or self.max_tokens,
            "stop": [self.stop] if isinstance(self.stop, str) else self.stop,
            "response_format": self.response_format.type if self.response_format else None,
            "n": self.n if self.n > 1 else None,
        }
        return {k: v for k, v in options.items() if v is not None}


def completion_id() -> str:
    """A chat completion id in OpenAI's style."""
    return "chatcmpl-" + new_id("c").removeprefix("c_")


def completion_object(
    *,
    model: str,
    answers: list[tuple[str, str]],
    prompt_tokens: int,
    completion_tokens: int,
    id_: str | None = None,
    created: int | None = None,
) -> dict[str, Any]:
    """A `chat.completion` object from (content, finish_reason) answers."""
    return {
        "id": id_ or completion_id(),
        "object": "chat.completion",
        "created": created or int(time.time()),
        "model": model,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "finish_reason": reason,
                "logprobs": None,
            }
            for i, (content, reason) in enumerate(answers)
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": None,
    }
