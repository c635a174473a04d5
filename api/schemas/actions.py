"""Flat bodies of the connector-friendly actions: one form per job type, no nesting."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from api.schemas.jobs import Analysis
from shared.jsontypes import MaxTokens, MaxWords, Temperature


class _ActionBase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backend: str | None = Field(None, title="Backend",
                                description="Backend name; default: the configured one")
    model: str | None = Field(None, max_length=200, title="Model",
                              description="Model name; default: the backend's")
    callback_url: HttpUrl | None = Field(None, title="Callback URL",
                                         description="Receives a signed POST when the job ends")


class ChatAction(_ActionBase):
    """One question to a model, with an optional system instruction."""

    prompt: str = Field(min_length=1, title="Prompt", description="What to ask the model")
    system: str | None = Field(None, max_length=20000, title="System instruction",
                               description="How the model should behave")
    temperature: Temperature | None = Field(None, title="Temperature",
                                      description="0 = focused, 2 = creative")
    max_tokens: MaxTokens | None = Field(None, title="Max tokens",
                                   description="Longest answer, in tokens")


class SummarizeAction(_ActionBase):
    """Text to summarize, of any length."""

    text: str = Field(min_length=1, title="Text", description="The text to summarize")
    instructions: str | None = Field(None, max_length=4000, title="Instructions",
                                     description="E.g. 'focus on risks'")
    max_words: MaxWords = Field(120, title="Max words",
                           description="Longest summary, in words")


class AnalyzeAction(_ActionBase):
    """A document (text or an uploaded file) and the analysis to run on it."""

    text: str | None = Field(None, min_length=1, title="Document text",
                             description="The document's text (or give a file ID)")
    file_id: str | None = Field(None, pattern=r"^file_[0-9a-z]+$", title="File ID",
                                description="An uploaded file (or give the text)")
    analysis: Analysis = Field(title="Analysis", description="What to find out")
    labels: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        None, max_length=50, title="Labels", description="Labels for classification")
    instructions: str | None = Field(None, max_length=4000, title="Instructions",
                                     description="What a custom analysis should do")
