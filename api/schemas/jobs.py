"""Request and response bodies of /v1/jobs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    model_validator,
)

from shared.analysis import check_result_schema
from shared.jobs.view import JobOut, Progress, StepCount, StepOut, Usage
from shared.jsontypes import AnswerCount, MaxTokens, MaxWords, Temperature, TopP

__all__ = ["JobOut", "Progress", "StepCount", "StepOut", "Usage"]

class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    # Empty text is accepted, as OpenAI accepts it (a turn may carry nothing).
    content: str


class ChatInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    messages: list[Message] = Field(min_length=1, description="The conversation so far")


class SummarizeInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, description="Text to summarize, of any length")
    instructions: str | None = Field(None, max_length=4000)
    max_words: MaxWords = 120


class DocumentRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(None, min_length=1)
    file_id: str | None = Field(None, pattern=r"^file_[0-9a-z]+$")

    @model_validator(mode="after")
    def _one_source(self) -> DocumentRef:
        if (self.text is None) == (self.file_id is None):
            raise ValueError("give exactly one of document.text or document.file_id")
        return self


Analysis = Literal["summary", "sentiment", "classification", "key_points", "entities", "custom"]


class AnalyzeInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    document: DocumentRef
    analysis: Analysis
    labels: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        None, max_length=50
    )
    instructions: str | None = Field(None, max_length=4000)
    result_schema: dict[str, Any] | None = Field(
        None,
        alias="schema",
        description="custom only: a JSON schema the answer (the `result` value) must satisfy",
    )

    @model_validator(mode="after")
    def _needs(self) -> AnalyzeInput:
        if self.analysis == "classification" and not self.labels:
            raise ValueError("classification needs labels: a list of at least one label")
        if self.analysis == "custom" and not self.instructions:
            raise ValueError("custom analysis needs instructions")
        if self.result_schema is not None:
            if self.analysis != "custom":
                raise ValueError("schema is only for the custom analysis")
            check_result_schema(self.result_schema)
        return self


class JobOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temperature: Temperature | None = None
    max_tokens: MaxTokens | None = None
    top_p: TopP | None = None
    stop: list[str] | None = Field(None, max_length=4)
    response_format: Literal["text", "json_object"] | None = Field(
        None, description="json_object asks the backend for a JSON answer"
    )
    n: AnswerCount | None = Field(None, description="Chat: answers to generate (one step each)")


class _JobCreateBase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backend: str | list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        None,
        description="Backend name, or a list tried in order when one is down (fallback); "
        "default: the configured one",
    )
    model: str | None = Field(None, max_length=200, description="Default: the backend's")
    options: JobOptions = Field(default_factory=JobOptions)
    callback_url: HttpUrl | None = None
    metadata: dict[str, Annotated[str, Field(max_length=500)]] = Field(
        default_factory=dict, max_length=32
    )


class ChatJobCreate(_JobCreateBase):
    type: Literal["chat"]
    input: ChatInput


class SummarizeJobCreate(_JobCreateBase):
    type: Literal["summarize"]
    input: SummarizeInput


class AnalyzeJobCreate(_JobCreateBase):
    type: Literal["analyze"]
    input: AnalyzeInput


JobCreate = Annotated[
    ChatJobCreate | SummarizeJobCreate | AnalyzeJobCreate, Field(discriminator="type")
]


class JobList(BaseModel):
    data: list[JobOut]
    has_more: bool
    next_after: str | None
