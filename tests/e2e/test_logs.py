"""Every log line of api, orchestrator and workers is JSON with its ids; no prompts, no secrets."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from tests.conftest import StackFactory
from tests.fakellm import FakeLLM

PROCESSES = ("api", "orchestrator", "worker:ollama", "worker:openai_compatible")


def records(text: str, name: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"{name}: a log line is not JSON: {line[:300]!r}") from None
        assert isinstance(record, dict), line
        out.append(record)
    return out


def logged_status(text: str, status: int) -> bool:
    """True once a complete access line with `status` is in the log."""
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line still being written
        if isinstance(record, dict) and record.get("event") == "request" \
                and record.get("status") == status:
            return True
    return False


def test_logs_are_json_with_ids_and_never_prompts_or_secrets(
    make_stack: StackFactory, fake_llm: FakeLLM
) -> None:
    backend_secret = f"sk-distinctive-{uuid.uuid4().hex}"
    stack = make_stack(workers=("ollama", "openai_compatible"),
                       env={"LLMJOBS_OPENAI_COMPATIBLE_API_KEY": backend_secret})
    api_key = stack.new_key()
    marker = f"prompt-marker-{uuid.uuid4().hex}"
    model = f"m-{uuid.uuid4().hex[:10]}"
    with stack.client(api_key) as client:
        ids = []
        for backend in ("ollama", "openai_compatible"):
            body = {"type": "chat", "backend": backend, "model": model,
                    "input": {"messages": [{"role": "user", "content": f"{marker} {backend}"}]}}
            ids.append(client.post("/v1/jobs", json=body).json()["id"])
        summarize = {"type": "summarize", "backend": "ollama", "model": model,
                     "input": {"text": f"{marker} a text to summarize"}}
        ids.append(client.post("/v1/jobs", json=summarize).json()["id"])
        done = [stack.wait_job(client, job_id) for job_id in ids]
        assert client.post("/v1/jobs", json={"type": "nope"}).status_code == 422
    assert [d["status"] for d in done] == ["succeeded"] * 3
    assert any(r.headers.get("authorization") == f"Bearer {backend_secret}"
               for r in fake_llm.requests_for(model))  # the secret really was in use

    # The access line is written once the answer has gone out: give the last one a moment.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not logged_status(stack.logs("api"), 422):
        time.sleep(0.05)
    every: dict[str, list[dict[str, Any]]] = {}
    for name in PROCESSES:
        text = stack.logs(name)
        for needle in (marker, api_key, backend_secret):
            assert needle not in text, f"{name} logged {needle[:20]}..."
        every[name] = records(text, name)

    access = [r for r in every["api"] if r.get("event") == "request"]
    assert access, "the api logs one line per request"
    assert all(r.get("request_id", "").startswith("req_") for r in access)
    assert {r["status"] for r in access} >= {202, 200, 422}

    for name in ("worker:ollama", "worker:openai_compatible"):
        steps = [r for r in every[name] if r.get("event") == "step finished"]
        assert steps, f"{name} logged no step"
        for r in steps:
            assert r["job_id"] in ids
            assert r["step_id"].startswith("step_")
            assert r["tenant"]
    # One-step jobs are ended by the worker that ran their step, the others by the orchestrator.
    finished = [r for name in PROCESSES if name != "api" for r in every[name]
                if r.get("event") == "job finished"]
    assert {r["job_id"] for r in finished} >= set(ids)
    assert all(r.get("tenant") for r in finished)
