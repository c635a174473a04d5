"""Typed results of document analysis, and validation of a model's JSON against them."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

ANALYSES = ("summary", "sentiment", "classification", "key_points", "entities", "custom")


class SummaryResult(BaseModel):
    summary: str = Field(min_length=1)


class SentimentResult(BaseModel):
    sentiment: Literal["positive", "neutral", "negative"]
    score: float = Field(ge=-1.0, le=1.0, description="-1 very negative … 1 very positive")

    @field_validator("sentiment", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v


class ClassificationResult(BaseModel):
    label: str
    scores: dict[str, float] = Field(default_factory=dict)


class KeyPointsResult(BaseModel):
    key_points: list[str] = Field(min_length=1)


class Entity(BaseModel):
    name: str = Field(min_length=1)
    type: str = Field(min_length=1)


class EntitiesResult(BaseModel):
    entities: list[Entity]


class CustomResult(BaseModel):
    result: Any


SCHEMAS: dict[str, type[BaseModel]] = {
    "summary": SummaryResult,
    "sentiment": SentimentResult,
    "classification": ClassificationResult,
    "key_points": KeyPointsResult,
    "entities": EntitiesResult,
    "custom": CustomResult,
}


class InvalidAnswer(ValueError):
    """The model's answer is not valid JSON of the expected shape; says what is wrong."""


def extract_json(content: str) -> Any:
    """Parse JSON from an answer, tolerating a Markdown code fence around it."""
    text = content.strip()
    fence = re.match(r"^```(?:json)?\s*(.*?)\s*```$", text, re.DOTALL)
    if fence:
        text = fence.group(1)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        start, end = text.find("{"), text.rfind("}")
        if 0 <= start < end:
            try:
                return json.loads(text[start : end + 1])
            except json.JSONDecodeError:
                pass
        raise InvalidAnswer(f"not valid JSON: {exc.msg} at position {exc.pos}") from exc


def check_result_schema(schema: dict[str, Any]) -> None:
    """Refuse a custom analysis' JSON schema that is not itself a valid schema (ValueError)."""
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(root)"
        raise ValueError(f"schema is not a valid JSON schema at {where}: {exc.message}") from exc


def _check_custom(result: Any, schema: dict[str, Any]) -> None:
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(result))
    if error is not None:
        where = ".".join(["result", *(str(p) for p in error.absolute_path)])
        raise InvalidAnswer(f"{where}: {error.message} (the requested schema is not satisfied)")


def validate_answer(
    analysis: str,
    content: str,
    labels: list[str] | None = None,
    result_schema: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The answer as a validated result dict, or InvalidAnswer naming the problem."""
    data = extract_json(content)
    schema = SCHEMAS[analysis]
    if analysis == "custom" and not (isinstance(data, dict) and set(data) == {"result"}):
        data = {"result": data}
    if analysis == "custom" and result_schema is not None:
        _check_custom(data["result"], result_schema)
    try:
        result = schema.model_validate(data).model_dump(mode="json")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise InvalidAnswer(f"{where}: {first['msg']}") from exc
    if analysis == "classification" and labels:
        wanted = {label.lower(): label for label in labels}
        label = str(result["label"]).strip()
        if label.lower() not in wanted:
            raise InvalidAnswer(f"label {label!r} is not one of {labels}")
        result["label"] = wanted[label.lower()]
    return result


def json_schema_for(analysis: str, result_schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """JSON schema the model is asked (and, where the backend can, constrained) to follow."""
    if analysis == "custom" and result_schema is not None:
        return {
            "title": "CustomResult",
            "type": "object",
            "properties": {"result": result_schema},
            "required": ["result"],
        }
    return SCHEMAS[analysis].model_json_schema()
