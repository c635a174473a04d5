"""Each step kind reaches its own runner."""

from __future__ import annotations

from typing import Any

import pytest

from workers.lease import ClaimedStep
from workers.steps import openai_batch_lines, sheet_rows, single_call
from workers.steps.registry import runner_for


def _claimed(kind: str, step_input: dict[str, Any]) -> ClaimedStep:
    return ClaimedStep(id="step_1", job_id="job_1", tenant_id="t", kind=kind, backend="ollama",
                       model=None, input=step_input, token="lease_1", attempts=1)


@pytest.mark.parametrize(
    ("kind", "step_input", "runner"),
    [
        ("rows", {"row_indexes": [2, 3]}, sheet_rows.run),
        ("rows", {"executor": "openai_chat", "spans": []}, openai_batch_lines.run),
        ("chat", {"messages": []}, single_call.run),
        ("map", {"messages": []}, single_call.run),
        ("reduce", {"messages": []}, single_call.run),
    ],
)
def test_runner_by_kind(kind: str, step_input: dict[str, Any], runner: object) -> None:
    assert runner_for(_claimed(kind, step_input)) is runner
