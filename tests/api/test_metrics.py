"""GET /metrics: the API's, orchestrator's and workers' series in one scrape, queue depths."""

from __future__ import annotations

import re
import uuid

import httpx

from tests.fixtures.stack import Stack


def sample(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    found = False
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(match.group(3))
            found = True
    assert found, f"no sample {name} {labels}"
    return total


def test_metrics_cover_api_orchestrator_and_workers(stack: Stack) -> None:
    before = httpx.get(f"{stack.api_url}/metrics").text
    created = sample(before, "llmjobs_jobs_created_total", type="chat", backend="ollama") \
        if "llmjobs_jobs_created_total{" in before else 0.0
    with stack.client(stack.new_key()) as client:
        body = {"type": "chat", "backend": "ollama", "model": f"m-{uuid.uuid4().hex[:8]}",
                "input": {"messages": [{"role": "user", "content": "count me"}]}}
        job = client.post("/v1/jobs", json=body).json()
        assert stack.wait_job(client, job["id"])["status"] == "succeeded"
    response = httpx.get(f"{stack.api_url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    # api
    assert sample(text, "llmjobs_jobs_created_total", type="chat", backend="ollama") \
        == created + 1
    # orchestrator (another process: multiprocess mode shares the numbers)
    assert sample(text, "llmjobs_jobs_finished_total", type="chat", status="succeeded",
                  backend="ollama") >= 1
    assert sample(text, "llmjobs_job_duration_seconds_count", type="chat") >= 1
    # workers
    assert sample(text, "llmjobs_steps_finished_total", backend="ollama", status="succeeded") >= 1
    assert sample(text, "llmjobs_step_duration_seconds_bucket", backend="ollama", le="+Inf") >= 1
    assert sample(text, "llmjobs_backend_request_seconds_count", backend="ollama",
                  outcome="ok") >= 1
    # read from Redis at scrape time
    for queue in ("orchestrator", "llm.ollama", "llm.ollama.batch", "llm.openai_compatible"):
        assert sample(text, "llmjobs_queue_depth", queue=queue) >= 0
    assert sample(text, "llmjobs_broker_up") == 1
