"""The embedded backend: a real llama.cpp generation through the whole stack, offline."""

from __future__ import annotations

import pytest

from tests.conftest import StackFactory


@pytest.mark.local_model
def test_local_model_answers_a_chat_job_end_to_end(make_stack: StackFactory) -> None:
    stack = make_stack(
        workers=("local",),
        env={
            "LLMJOBS_LOCAL_ENABLED": "true",
            "LLMJOBS_BACKENDS": "local",
            "LLMJOBS_LOCAL_MAX_TOKENS": "24",
        },
    )
    with stack.client(stack.new_key()) as client:
        created = client.post(
            "/v1/jobs",
            json={
                "type": "summarize",
                "input": {
                    "text": "The meeting moved from Tuesday to Thursday because the room "
                    "was booked, and lunch will be provided.",
                    "max_words": 15,
                },
                "options": {"temperature": 0},
            },
        )
        assert created.status_code == 202, created.text
        assert created.json()["backend"] == "local"
        done = stack.wait_job(client, created.json()["id"], timeout=120)
    assert done["status"] == "succeeded", done
    assert done["model"] == "smollm2-135m-instruct"
    assert done["result"]["summary"].strip()
    assert 0 < done["usage"]["completion_tokens"] <= 24
    assert done["usage"]["prompt_tokens"] > 20
