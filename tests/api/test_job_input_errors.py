"""Bad input answers 4xx in the one error shape, naming the field — never a 500."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.stack import Stack

CHAT = {"type": "chat", "input": {"messages": [{"role": "user", "content": "hi"}]}}


@pytest.mark.parametrize(
    ("body", "status", "param", "words"),
    [
        ({"type": "poem", "input": {}}, 422, "type", "unknown type 'poem'"),
        ({"type": "chat", "input": {"messages": []}}, 422, "input.messages", "at least 1"),
        ({"type": "chat"}, 422, "input", "required"),
        ({**CHAT, "backend": "nope"}, 422, "backend", "unknown backend 'nope'"),
        ({**CHAT, "options": {"temperature": 9}}, 422, "options.temperature", "less than"),
        ({"type": "summarize", "input": {"text": ""}}, 422, "input.text", "at least 1"),
        (
            {"type": "analyze", "input": {"document": {"text": "x"}, "analysis": "classification"}},
            422,
            "input",
            "needs labels",
        ),
        (
            {**CHAT, "input": {"messages": [{"role": "user", "content": "word " * 40000}]}},
            422,
            "input.messages",
            "context window",
        ),
    ],
    ids=["type", "empty-messages", "no-input", "backend", "temperature", "empty-text",
         "labels", "context"],
)
def test_bad_job_bodies_name_the_field(
    stack: Stack, body: dict[str, Any], status: int, param: str, words: str
) -> None:
    with stack.client(stack.new_key()) as client:
        response = client.post("/v1/jobs", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request"
    assert error["param"] == param
    assert words in error["message"]
    assert error["request_id"] == response.headers["x-request-id"]


def test_malformed_json_is_a_clear_422(stack: Stack) -> None:
    with stack.client(stack.new_key()) as client:
        response = client.post(
            "/v1/jobs", content=b'{"type": "chat",', headers={"content-type": "application/json"}
        )
    assert response.status_code == 422
    assert response.json()["error"]["message"] == "the body is not valid JSON"


def test_missing_and_wrong_keys_are_401(stack: Stack) -> None:
    with stack.client() as anonymous:
        missing = anonymous.post("/v1/jobs", json=CHAT)
        wrong = anonymous.get("/v1/jobs", headers={"X-API-Key": "lj_live_not-a-key"})
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication"
    assert "missing API key" in missing.json()["error"]["message"]


def test_request_id_is_echoed_or_made(stack: Stack) -> None:
    with stack.client(stack.new_key()) as client:
        echoed = client.get("/v1/jobs", headers={"X-Request-ID": "flow-run-42"})
        made = client.get("/v1/jobs/job_unknown")
    assert echoed.headers["x-request-id"] == "flow-run-42"
    assert made.headers["x-request-id"].startswith("req_")
    assert made.status_code == 404
    assert made.json()["error"]["request_id"] == made.headers["x-request-id"]
