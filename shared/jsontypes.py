"""Numbers that are JSON numbers: no "5" and no true where the schema says integer or number.

Constraints sit inside the `Annotated`, before the validator, so the JSON schema shows them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field


def _number_only(value: object) -> object:
    # Pydantic's lax mode would read "5" or true as 5; the published schema promises a number.
    # (Strict mode is too strict the other way: JSON Schema's integer includes 5.0.)
    if isinstance(value, bool | str | bytes):
        raise ValueError("must be a JSON number")
    return value


NUMBER_ONLY = BeforeValidator(_number_only)
Temperature = Annotated[float, Field(ge=0, le=2), NUMBER_ONLY]
TopP = Annotated[float, Field(gt=0, le=1), NUMBER_ONLY]
MaxTokens = Annotated[int, Field(ge=1, le=32768), NUMBER_ONLY]
AnswerCount = Annotated[int, Field(ge=1, le=8), NUMBER_ONLY]
MaxWords = Annotated[int, Field(ge=5, le=2000), NUMBER_ONLY]
