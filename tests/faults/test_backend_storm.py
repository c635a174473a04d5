"""30% of backend calls fail (429, 500, dropped, timed out, bad JSON): every job ends."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from shared.models import Job, Step
from tests.conftest import StackFactory
from tests.fakellm import FakeLLM
from tests.faults.conftest import point_at
from tests.faults.helpers import chat_body, full_size, wait_all

JOBS = full_size(150, 1000)  # scaled down from 1,000 to keep the suite fast on 2 cores


def analyze_body(text: str) -> dict[str, Any]:
    return {"type": "analyze", "backend": "ollama", "model": "fault-model",
            "input": {"document": {"text": text}, "analysis": "sentiment"}}


@pytest.mark.fault
def test_backend_storm_ends_every_job_and_counts_retries(
    make_stack: StackFactory, own_fake: FakeLLM
) -> None:
    own_fake.set_faults(0.3, seed=11, retry_after=0.2, timeout_seconds=30)
    # Sentiment answers must be JSON: the fake's default echo is not, so it fails clearly.
    own_fake.reply_fn = lambda body: (
        '{"sentiment": "positive", "score": 0.9}' if body.get("format") or
        body.get("response_format") else f"echo {len(str(body))}"
    )
    stack = make_stack(workers=("ollama",), env=point_at(
        own_fake, LLMJOBS_BACKEND_TIMEOUT_S="1.5", LLMJOBS_RETRY_MAX_ATTEMPTS="8"))
    tag = uuid.uuid4().hex[:8]
    ids: list[str] = []
    with stack.client(stack.new_key()) as client:
        for i in range(JOBS):
            body = (analyze_body(f"storm {tag} {i}") if i % 5 == 0
                    else chat_body(f"storm-{tag}-{i}"))
            response = client.post("/v1/jobs", json=body)
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])

    counts = wait_all(stack, ids, timeout=150 + JOBS * 0.5)
    with stack.sessions() as session:
        results = session.scalars(
            select(Step.result).where(Step.job_id.in_(ids), Step.status == "succeeded")
        ).all()
        errors = session.scalars(
            select(Job.error).where(Job.id.in_(ids), Job.status == "failed")
        ).all()
    retries = sum(int((r or {}).get("retries", 0)) for r in results)
    outcomes: dict[str, int] = {}
    for request in own_fake.requests:
        outcomes[request.outcome] = outcomes.get(request.outcome, 0) + 1
    print(f"\nbackend storm: jobs {dict(counts)}; backend calls {len(own_fake.requests)} "
          f"by outcome {outcomes}; retries recorded on succeeded steps {retries}")
    assert set(counts) <= {"succeeded", "failed"}
    assert counts["succeeded"] >= JOBS * 0.9
    assert retries >= 0.2 * JOBS  # ~30% of first calls failed and were retried
    for error in errors:
        assert error, "a failed job carries an error"
        assert error.get("message"), error  # a failure says why
