"""Backends misbehaving end to end: Retry-After, breaker + fail-over, random 5xx, a hung call."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from shared.models import Step
from tests.conftest import StackFactory
from tests.fakellm import FakeLLM, Hang, RecordedRequest, Reply, Status
from tests.fakellm_behaviors import Behavior
from tests.fixtures.stack import Stack


def unique_model() -> str:
    return f"m-{uuid.uuid4().hex[:10]}"


def chat(content: str, model: str | None, backend: str | list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "chat",
        "backend": backend,
        "input": {"messages": [{"role": "user", "content": content}]},
    }
    if model:
        body["model"] = model
    return body


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


def test_429_with_retry_after_2_waits_at_least_2_seconds(stack: Stack, fake_llm: FakeLLM) -> None:
    model = unique_model()
    fake_llm.script(model, Status(429, headers={"Retry-After": "2"}), Reply("after the wait"))
    with stack.client(stack.new_key()) as client:
        job = client.post("/v1/jobs", json=chat("x", model, "openai_compatible")).json()
        done = stack.wait_job(client, job["id"])
    assert done["status"] == "succeeded", done
    assert done["result"]["message"]["content"] == "after the wait"
    first, second = fake_llm.requests_for(model)
    assert 2.0 <= second.received_at - first.received_at < 5.0


def test_down_backend_trips_breaker_and_jobs_fail_over(
    make_stack: StackFactory, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    backends = tmp_path / "backends.yaml"
    backends.write_text(
        "backends:\n"
        f"  - {{name: down, kind: ollama, base_url: 'http://127.0.0.1:{closed_port()}',"
        " default_model: gone}\n"
        f"  - {{name: up, kind: openai_compatible, base_url: '{fake_llm.url}/v1',"
        " default_model: fake-model, max_concurrency: 4}\n"
    )
    stack = make_stack(
        workers=("down", "up"),
        env={"LLMJOBS_BACKENDS_FILE": str(backends), "LLMJOBS_BREAKER_FAILURES": "3",
             "LLMJOBS_BREAKER_COOLDOWN_S": "120"},
    )
    model = unique_model()
    with stack.client(stack.new_key()) as client:
        first = client.post("/v1/jobs", json=chat("first", model, ["down", "up"]))
        assert first.status_code == 202, first.text
        assert first.json()["backend"] == "down"
        done = stack.wait_job(client, first.json()["id"])
        assert done["status"] == "succeeded", done
        assert done["backend"] == "up"  # the job records who answered
        assert done["steps"][0]["backend"] == "up"
        ready = client.get("/readyz").json()["checks"]
        assert ready["backend:down"]["breaker"] == "open"
        assert ready["backend:down"]["ok"] is False
        assert ready["backend:up"]["breaker"] == "closed"
        assert ready["backend:up"]["queue_depth"] == 0

        second = client.post("/v1/jobs", json=chat("second", model, ["down", "up"])).json()
        again = stack.wait_job(client, second["id"])
        assert again["status"] == "succeeded"
        assert again["backend"] == "up"
        bad = client.post("/v1/jobs", json=chat("x", model, ["down", "nowhere"]))
        assert bad.status_code == 422
        assert bad.json()["error"]["param"] == "backend"
    with stack.sessions() as session:
        step = session.scalar(select(Step).where(Step.job_id == second["id"]))
        assert step is not None
        assert step.result is not None
        assert step.result["answered_by"] == "up"
    logs = stack.logs("worker:down")
    assert logs.count("circuit breaker opened") == 1
    assert logs.count("step failed over") == 2
    assert len(fake_llm.requests_for(model)) == 2


def test_40_percent_random_500s_over_200_steps_every_job_succeeds(
    make_stack: StackFactory, fake_llm: FakeLLM
) -> None:
    stack = make_stack(
        workers=("ollama",),
        env={"LLMJOBS_RETRY_MAX_ATTEMPTS": "12", "LLMJOBS_RETRY_MAX_WAIT_S": "0.5",
             "LLMJOBS_BREAKER_FAILURES": "10", "LLMJOBS_BREAKER_COOLDOWN_S": "0.5"},
    )
    model = unique_model()
    rng, lock = random.Random(5), threading.Lock()

    def flaky(_: RecordedRequest) -> Behavior | None:
        with lock:
            return Status(500) if rng.random() < 0.4 else None

    fake_llm.rule(model, flaky)
    with stack.client(stack.new_key()) as client:
        ids = [
            client.post("/v1/jobs", json=chat(f"job {i}", model, "ollama")).json()["id"]
            for i in range(200)
        ]
        results = [stack.wait_job(client, job_id, timeout=120) for job_id in ids]
    assert [r["status"] for r in results] == ["succeeded"] * 200
    assert all(r["result"]["message"]["content"] == f"echo: job {i}"
               for i, r in enumerate(results))
    failed = sum(1 for r in fake_llm.requests_for(model) if r.outcome == "error:500")
    assert failed > 60  # the faults really happened


def test_hung_backend_hits_the_step_deadline_with_a_clear_error(
    make_stack: StackFactory, fake_llm: FakeLLM
) -> None:
    stack = make_stack(workers=("ollama",), env={"LLMJOBS_STEP_DEADLINE_S": "3"})
    model = unique_model()
    fake_llm.script(model, Hang())
    with stack.client(stack.new_key()) as client:
        job = client.post("/v1/jobs", json=chat("x", model, "ollama")).json()
        start = time.monotonic()
        done = stack.wait_job(client, job["id"], timeout=30)
    assert done["status"] == "failed"
    assert "deadline" in done["error"]["message"]
    assert time.monotonic() - start < 20


def test_models_lists_every_backend_and_leaves_out_a_down_one(
    make_stack: StackFactory, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    backends = tmp_path / "backends.toml"
    backends.write_text(
        f'[[backends]]\nname = "gone"\nkind = "openai_compatible"\n'
        f'base_url = "http://127.0.0.1:{closed_port()}/v1"\n'
    )
    stack = make_stack(workers=(), env={"LLMJOBS_BACKENDS_FILE": str(backends)})
    with stack.client(stack.new_key()) as client:
        listed = client.get("/v1/models")
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["object"] == "list"
    ids = {m["id"] for m in body["data"]}
    assert {"ollama/fake-model:latest", "openai_compatible/fake-model"} <= ids
    assert not any(i.startswith("gone/") for i in ids)
    assert all(m["object"] == "model" and m["owned_by"] == m["id"].split("/")[0]
               for m in body["data"])
    assert httpx.get(f"{stack.api_url}/v1/models").status_code == 401


def test_events_stream_partial_chat_output_until_the_job_ends(
    stack: Stack, fake_llm: FakeLLM
) -> None:
    model = unique_model()
    fake_llm.script(model, Reply("streamed word by word", delay=1.5))
    with stack.client(stack.new_key()) as client:
        job = client.post("/v1/jobs", json=chat("x", model, "ollama")).json()
        events: list[tuple[str, dict[str, Any]]] = []
        with client.stream("GET", f"/v1/jobs/{job['id']}/events") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            name = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    events.append((name, json.loads(line[6:])))
        assert client.get(f"/v1/jobs/{'job_' + 'x' * 20}/events").status_code == 404
    kinds = [k for k, _ in events]
    assert kinds[0] == "progress"
    assert kinds[-1] == "end"
    assert events[-1][1]["status"] == "succeeded"
    deltas = [e for k, e in events if k == "delta"]
    assert len(deltas) > 1
    assert "".join(d["content"] for d in deltas) == "streamed word by word"
    assert kinds.index("delta") < kinds.index("end")
