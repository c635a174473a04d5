"""One-step chat jobs run without the orchestrator: the API sends the step, the worker ends it."""

from __future__ import annotations

import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from shared.db import session_scope
from shared.keys import ensure_tenant
from shared.models import Step
from shared.models.webhooks import WebhookDelivery
from tests.fakellm import FakeLLM, Hang, Reply, Slow, Status
from tests.faults.helpers import respawn, wait_for
from tests.fixtures.receiver import Receiver
from tests.fixtures.stack import Stack


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture(scope="module")
def headless(
    fake_llm: FakeLLM,
    broker_namespaces: Callable[[], dict[str, str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """A stack whose orchestrator (and with it the sweep) is stopped once it is up."""
    workdir = tmp_path_factory.mktemp("headless-stack")
    backends = workdir / "backends.yaml"
    backends.write_text(
        "backends:\n"
        f"  - {{name: up, kind: openai_compatible, base_url: '{fake_llm.url}/v1',"
        " default_model: fake-model}\n"
        f"  - {{name: down, kind: ollama, base_url: 'http://127.0.0.1:{closed_port()}',"
        " default_model: gone}\n"
    )
    env = {
        **broker_namespaces(),
        "LLMJOBS_BACKENDS_FILE": str(backends),
        "LLMJOBS_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
        "LLMJOBS_WEBHOOK_PROGRESS_INTERVAL_S": "3600",
        "LLMJOBS_WEBHOOK_TIMEOUT_S": "5",
    }
    s = Stack(workdir, f"sqlite:///{workdir / 'llm-jobs.db'}", env)
    s.start(["up", "down"], webhooks=True)
    s.kill("orchestrator", signal.SIGTERM)
    yield s
    s.stop()


def model() -> str:
    return f"m-{uuid.uuid4().hex[:10]}"


def chat(content: str, name: str, backend: str | list[str] = "up") -> dict[str, Any]:
    return {"type": "chat", "backend": backend, "model": name,
            "input": {"messages": [{"role": "user", "content": content}]}}


def long_text() -> str:
    paragraph = " ".join(f"Sentence {i} talks about the quarterly figures." for i in range(60))
    return "\n\n".join(f"Section {n}. {paragraph}" for n in range(40))


def test_one_step_jobs_complete_while_a_multi_step_job_waits_for_the_orchestrator(
    headless: Stack, fake_llm: FakeLLM
) -> None:
    assert headless.processes["orchestrator"].poll() is not None
    name, long_name = model(), model()
    fake_llm.script(name, Reply("direct answer"), Reply("direct answer"), Reply(" brief "))
    fake_llm.rule(long_name, lambda req: Reply("partial summary"))
    key = headless.new_key()
    with headless.client(key) as client:
        summary = client.post("/v1/jobs", json={
            "type": "summarize", "backend": "up", "model": long_name,
            "input": {"text": long_text(), "max_words": 50}}).json()
        assert summary["status"] == "queued"
        job = client.post("/v1/jobs", json=chat("hello", name)).json()
        done = headless.wait_job(client, job["id"])
        completion = client.post("/v1/chat/completions", json={
            "model": f"up/{name}", "messages": [{"role": "user", "content": "hi again"}]},
            timeout=60)
        short = client.post("/v1/jobs", json={
            "type": "summarize", "backend": "up", "model": name,
            "input": {"text": "A short text about quarterly figures.", "max_words": 20}}).json()
        summarized = headless.wait_job(client, short["id"])
        still = client.get(f"/v1/jobs/{summary['id']}").json()
    assert done["status"] == "succeeded", done
    assert done["result"] == {"message": {"role": "assistant", "content": "direct answer"},
                              "finish_reason": "stop"}
    assert done["progress"] == {"total": 1, "done": 1, "failed": 0}
    assert done["usage"]["completion_tokens"] > 0
    assert completion.status_code == 200, completion.text
    assert completion.json()["choices"][0]["message"]["content"] == "direct answer"
    assert summarized["status"] == "succeeded", summarized
    assert summarized["result"] == {"summary": "brief"}
    assert [s["kind"] for s in summarized["steps"]] == ["summarize"]
    assert (still["status"], still["steps_total"]) == ("queued", 0)
    assert not fake_llm.requests_for(long_name)


def test_a_failing_call_fails_the_job_with_the_backends_error(
    headless: Stack, fake_llm: FakeLLM
) -> None:
    name = model()
    refused = Status(400, body={"error": {"message": "temperature must be <= 2", "type": "x"}})
    fake_llm.script(name, refused, refused)
    with headless.client(headless.new_key()) as client:
        job = client.post("/v1/jobs", json=chat("x", name)).json()
        done = headless.wait_job(client, job["id"])
        answer = client.post("/v1/chat/completions", json={
            "model": f"up/{name}", "messages": [{"role": "user", "content": "y"}]})
    assert done["status"] == "failed"
    assert done["error"]["type"] == "backend_error"
    assert done["error"]["status"] == 400
    assert "temperature must be <= 2" in done["error"]["message"]
    assert done["error"]["step_id"] == done["steps"][0]["id"]
    assert done["progress"] == {"total": 1, "done": 0, "failed": 1}
    assert answer.status_code == 400
    assert "temperature must be <= 2" in answer.json()["error"]["message"]


def test_cancel_during_a_slow_call_stops_the_job(headless: Stack, fake_llm: FakeLLM) -> None:
    name = model()
    fake_llm.script(name, Hang())
    with headless.client(headless.new_key()) as client:
        job = client.post("/v1/jobs", json=chat("x", name)).json()
        wait_for(lambda: bool(fake_llm.requests_for(name)), 20, "the call to start")
        cancelled = client.post(f"/v1/jobs/{job['id']}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        # The worker's lease renewal finds the step cancelled and drops the call.
        wait_for(lambda: "step cancelled while running" in headless.logs("worker:up"), 20,
                 "the worker to let go")
        final = client.get(f"/v1/jobs/{job['id']}").json()
    assert final["status"] == "cancelled"
    assert final["result"] is None
    assert [s["status"] for s in final["steps"]] == ["cancelled"]


def test_a_failing_backend_fails_over_along_the_chain(headless: Stack, fake_llm: FakeLLM) -> None:
    name = model()
    fake_llm.script(name, Reply("from the second backend"))
    with headless.client(headless.new_key()) as client:
        created = client.post("/v1/jobs", json=chat("x", name, ["down", "up"]))
        assert created.status_code == 202, created.text
        assert created.json()["backend"] == "down"
        done = headless.wait_job(client, created.json()["id"])
    assert done["status"] == "succeeded", done
    assert done["backend"] == "up"
    assert done["result"]["message"]["content"] == "from the second backend"
    assert [s["backend"] for s in done["steps"]] == ["up"]
    assert len(fake_llm.requests_for(name)) == 1


def test_each_direct_job_end_queues_exactly_one_webhook_event(
    headless: Stack, fake_llm: FakeLLM, receiver: Receiver
) -> None:
    ok, failing, hanging = model(), model(), model()
    fake_llm.script(ok, Slow(0.2, "fine"))
    fake_llm.script(failing, Status(400, body={"error": "bad request"}))
    fake_llm.script(hanging, Hang())
    url = receiver.new_path()
    with headless.client(headless.new_key()) as client:
        created = client.post("/v1/webhooks", json={"url": url})
        assert created.status_code == 201, created.text
        ids = {}
        for name, status in ((ok, "succeeded"), (failing, "failed")):
            job = client.post("/v1/jobs", json=chat("x", name)).json()
            ids[job["id"]] = status
            headless.wait_job(client, job["id"])
        job = client.post("/v1/jobs", json=chat("x", hanging)).json()
        wait_for(lambda: bool(fake_llm.requests_for(hanging)), 20, "the call to start")
        assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
        ids[job["id"]] = "cancelled"
        got = receiver.wait(url, 3)
    events = sorted((r.json["data"]["id"], r.json["type"]) for r in got)
    assert events == sorted((job_id, f"job.{status}") for job_id, status in ids.items())
    with session_scope(headless.sessions) as session:
        rows = session.scalars(
            select(WebhookDelivery.job_id).where(WebhookDelivery.job_id.in_(ids))).all()
    assert sorted(rows) == sorted(ids)  # one delivery per job end, none twice


def test_a_tenant_at_its_running_cap_waits_for_the_orchestrator(
    headless: Stack, fake_llm: FakeLLM
) -> None:
    first, second = model(), model()
    fake_llm.script(first, Slow(1.5, "first"))
    fake_llm.script(second, Reply("second"))
    tenant = f"capped-{uuid.uuid4().hex[:6]}"
    key = headless.new_key(tenant)
    with session_scope(headless.sessions) as session:
        ensure_tenant(session, tenant).max_running_jobs = 1
    with headless.client(key) as client:
        running = client.post("/v1/jobs", json=chat("a", first)).json()
        held = client.post("/v1/jobs", json=chat("b", second)).json()
        assert (running["status"], held["status"]) == ("running", "queued")
        assert headless.wait_job(client, running["id"])["status"] == "succeeded"
        # The ended job frees the slot, but only the orchestrator starts held jobs.
        time.sleep(1.0)
        assert client.get(f"/v1/jobs/{held['id']}").json()["status"] == "queued"
        assert not fake_llm.requests_for(second)
        respawn(headless, "orchestrator")
        try:
            done = headless.wait_job(client, held["id"])
        finally:
            headless.kill("orchestrator", signal.SIGTERM)
    assert done["status"] == "succeeded"
    assert done["result"]["message"]["content"] == "second"
    with session_scope(headless.sessions) as session:
        assert session.scalars(select(Step.status).where(Step.job_id == held["id"])).all() == [
            "succeeded"]

