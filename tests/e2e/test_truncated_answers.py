"""A typed answer cut off by max_tokens fails with an error that says so."""

from __future__ import annotations

import uuid

from tests.fakellm import FakeLLM, Reply
from tests.fixtures.stack import Stack


def test_cut_off_json_names_max_tokens(stack: Stack, fake_llm: FakeLLM) -> None:
    model = f"m-{uuid.uuid4().hex[:10]}"
    cut = Reply('{"summary": "The report says revenue', finish_reason="length")
    fake_llm.script(model, cut, cut)
    with stack.client(stack.new_key()) as client:
        job = client.post(
            "/v1/jobs",
            json={
                "type": "analyze",
                "backend": "openai_compatible",
                "model": model,
                "options": {"max_tokens": 12},
                "input": {"document": {"text": "Revenue grew."}, "analysis": "summary"},
            },
        ).json()
        done = stack.wait_job(client, job["id"])
    assert done["status"] == "failed"
    message = done["error"]["message"]
    assert "cut off at max_tokens (12)" in message
    assert "raise options.max_tokens" in message
    assert len(fake_llm.requests_for(model)) == 2
