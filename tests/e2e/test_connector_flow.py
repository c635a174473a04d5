"""Power Automate's side of the connector, simulated against the running stack."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV2SpecValidator

from tests.fakellm import FakeLLM, Reply, Slow
from tests.fixtures.stack import Stack


def run_action(client: httpx.Client, path: str, body: dict[str, Any],
               limit: float = 60) -> tuple[httpx.Response, list[float]]:
    """POST, then follow Location honouring Retry-After until the answer is not 202."""
    response = client.post(path, json=body)
    waits: list[float] = []
    deadline = time.monotonic() + limit
    while response.status_code == 202 and time.monotonic() < deadline:
        wait = float(response.headers["retry-after"])
        waits.append(wait)
        time.sleep(wait)
        response = client.get(response.headers["location"])
    return response, waits


def test_summarize_text_action_polls_to_the_result(stack: Stack, fake_llm: FakeLLM) -> None:
    model = f"m-{uuid.uuid4().hex[:10]}"
    fake_llm.script(model, Slow(2.5, "a short summary"))
    key = stack.new_key()
    with httpx.Client(base_url=stack.api_url, headers={"X-API-Key": key}, timeout=30) as client:
        started = time.monotonic()
        final, waits = run_action(client, "/v1/actions/summarize", {
            "text": "The quarter went well.", "backend": "ollama", "model": model})
        elapsed = time.monotonic() - started
    assert final.status_code == 200, final.text
    job = final.json()
    assert (job["type"], job["status"]) == ("summarize", "succeeded")
    assert job["result"] == {"summary": "a short summary"}
    assert waits
    assert all(w >= 1 for w in waits)
    assert elapsed >= sum(waits)


def test_chat_and_analyze_actions_create_jobs(stack: Stack, fake_llm: FakeLLM) -> None:
    chat_model, analyze_model = (f"m-{uuid.uuid4().hex[:10]}" for _ in range(2))
    fake_llm.script(chat_model, Reply("hi!"))
    fake_llm.rule(analyze_model, lambda req: Reply('{"sentiment": "positive", "score": 0.8}'))
    with stack.client(stack.new_key()) as client:
        chat, _ = run_action(client, "/v1/actions/chat", {
            "prompt": "hello", "system": "be brief", "backend": "ollama", "model": chat_model})
        analyzed, _ = run_action(client, "/v1/actions/analyze", {
            "text": "I love it", "analysis": "sentiment", "backend": "ollama",
            "model": analyze_model})
        bad = client.post("/v1/actions/analyze", json={"analysis": "classification",
                                                       "text": "x"})
    assert chat.json()["result"]["message"]["content"] == "hi!"
    sent = fake_llm.requests_for(chat_model)[0].json["messages"]
    assert [m["role"] for m in sent] == ["system", "user"]
    assert analyzed.json()["type"] == "analyze"
    assert analyzed.json()["result"]["sentiment"] == "positive", analyzed.json()
    assert bad.status_code == 422
    assert "labels" in bad.json()["error"]["message"]


def test_served_connector_names_this_host(stack: Stack) -> None:
    with stack.client() as client:
        doc = client.get("/connector/apiDefinition.swagger.json")
        props = client.get("/connector/apiProperties.json")
    assert doc.status_code == 200
    assert props.status_code == 200
    validate(doc.json(), cls=OpenAPIV2SpecValidator)
    assert doc.json()["host"] == stack.api_url.removeprefix("http://")
    assert "api_key" in props.json()["properties"]["connectionParameters"]
