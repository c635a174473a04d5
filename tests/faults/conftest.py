"""Fixtures of the fault tests: a private fake backend per test, so faults stay local."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakellm import FakeLLM


@pytest.fixture
def own_fake() -> Iterator[FakeLLM]:
    """A fake LLM server of this test's own (latency and faults touch nobody else)."""
    with FakeLLM() as fake:
        yield fake


def point_at(fake: FakeLLM, **extra: str) -> dict[str, str]:
    """Stack settings sending the ollama backend to `fake`.

    A SIGKILLed worker's concurrency slots stay taken until their lease lapses; the fast
    clocks of the tests' stacks get a slot lease as short as the step lease (6 s).
    """
    return {"LLMJOBS_OLLAMA_BASE_URL": fake.url, "LLMJOBS_OLLAMA_MODEL": "fault-model",
            "LLMJOBS_LIMIT_LEASE_S": "6", **extra}
