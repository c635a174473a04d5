"""OpenAI's model list shape, for GET /v1/models."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ModelObject(BaseModel):
    id: str = Field(description="`backend/model`, usable as `model` in chat completions")
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = Field(description="The backend instance that serves it")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]
