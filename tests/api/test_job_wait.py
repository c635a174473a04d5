"""GET /v1/jobs/{id}?wait=N and the other waiting requests, answered by the push of job ends."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import StackFactory, fake_backends
from tests.fakellm import FakeLLM, Reply
from tests.fixtures.stack import Stack

# Waiters of this stack re-read their job only every 5 minutes: before a 60 s wait runs out
# (when the job is read once more), only the push of the job's end can answer them.
NO_RECHECK = {"LLMJOBS_WAIT_RECHECK_S": "300", "LLMJOBS_OPENAI_CHAT_TIMEOUT_S": "60"}
WAIT_S = 60
# Answered before the wait ran out (generously: the job itself takes about a second).
ANSWERED_EARLY_S = 50


@pytest.fixture(scope="module")
def push_stack(
    tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLM,
    broker_namespaces: Callable[[], dict[str, str]],
) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("push-stack")
    stack = Stack(workdir, f"sqlite:///{workdir / 'llm-jobs.db'}",
                  {**fake_backends(fake_llm), **broker_namespaces(), **NO_RECHECK})
    stack.start(["ollama"])
    yield stack
    stack.stop()


def _chat_job(
    client: httpx.Client, fake: FakeLLM, answer: str, delay: float, backend: str = "ollama"
) -> str:
    model = f"m-{uuid.uuid4().hex[:10]}"
    fake.script(model, Reply(answer, delay=delay))
    response = client.post("/v1/jobs", json={
        "type": "chat", "backend": backend, "model": model,
        "input": {"messages": [{"role": "user", "content": "hello"}]},
    })
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def _stuck_job(client: httpx.Client, fake: FakeLLM) -> str:
    """A job that never ends by itself: this stack runs no worker for its backend."""
    return _chat_job(client, fake, "never", delay=0, backend="openai_compatible")


def _answer(job: dict[str, Any]) -> str:
    return str(job["result"]["message"]["content"])


def test_wait_answers_with_the_finished_job_as_soon_as_it_ends(
    push_stack: Stack, fake_llm: FakeLLM,
) -> None:
    with push_stack.client(push_stack.new_key()) as client:
        job_id = _chat_job(client, fake_llm, "pushed answer", delay=1.0)
        started = time.monotonic()
        response = client.get(f"/v1/jobs/{job_id}", params={"wait": WAIT_S}, timeout=90)
        took = time.monotonic() - started
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "succeeded"
        assert _answer(response.json()) == "pushed answer"
        assert took < ANSWERED_EARLY_S
        plain = client.get(f"/v1/jobs/{job_id}")
        assert plain.status_code == 200
        assert plain.json() == response.json()


def test_wait_that_runs_out_answers_the_plain_202(push_stack: Stack, fake_llm: FakeLLM) -> None:
    with push_stack.client(push_stack.new_key()) as client:
        job_id = _stuck_job(client, fake_llm)
        response = client.get(f"/v1/jobs/{job_id}", params={"wait": 1})
        assert response.status_code == 202, response.text
        assert response.json()["status"] in ("queued", "running")
        assert response.headers["Location"].endswith(f"/v1/jobs/{job_id}")
        assert int(response.headers["Retry-After"]) >= 1
        assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200


def test_wait_over_the_cap_is_refused(push_stack: Stack, fake_llm: FakeLLM) -> None:
    with push_stack.client(push_stack.new_key()) as client:
        job_id = _chat_job(client, fake_llm, "x", delay=0)
        for wait in ("111", "-1", "soon"):
            response = client.get(f"/v1/jobs/{job_id}", params={"wait": wait})
            assert response.status_code == 422, response.text
            error = response.json()["error"]
            assert error["type"] == "invalid_request"
            assert error["param"] == "wait"
        push_stack.wait_job(client, job_id)
        response = client.get(f"/v1/jobs/{job_id}", params={"wait": 110})
        assert response.status_code == 200, response.text
    schema = httpx.get(f"{push_stack.api_url}/openapi.json").json()
    params = schema["paths"]["/v1/jobs/{job_id}"]["get"]["parameters"]
    [wait_param] = [p for p in params if p["name"] == "wait"]
    assert wait_param["schema"]["minimum"] == 0
    assert wait_param["schema"]["maximum"] == 110


def test_waiting_on_another_tenants_job_is_404_at_once(
    push_stack: Stack, fake_llm: FakeLLM,
) -> None:
    with push_stack.client(push_stack.new_key()) as owner, \
            push_stack.client(push_stack.new_key()) as stranger:
        job_id = _stuck_job(owner, fake_llm)
        # Held for its 100 s wait, the request would run into the client's timeout.
        response = stranger.get(f"/v1/jobs/{job_id}", params={"wait": 100}, timeout=10)
        assert response.status_code == 404, response.text
        assert response.json()["error"]["type"] == "not_found"
        assert owner.post(f"/v1/jobs/{job_id}/cancel").status_code == 200


def test_chat_completion_and_job_events_answer_on_the_push(
    push_stack: Stack, fake_llm: FakeLLM,
) -> None:
    model = f"m-{uuid.uuid4().hex[:10]}"
    fake_llm.script(model, Reply("completed by push", delay=1.0))
    key = push_stack.new_key()
    with push_stack.client(key) as client:
        started = time.monotonic()
        response = client.post("/v1/chat/completions", timeout=90, json={
            "model": f"ollama/{model}", "messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == "completed by push"
        assert time.monotonic() - started < ANSWERED_EARLY_S
        job_id = _chat_job(client, fake_llm, "followed", delay=1.0)
        events: list[str] = []
        with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=90) as stream:
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    events.append(line[7:])
                elif line.startswith("data: ") and events[-1] == "end":
                    assert json.loads(line[6:])["status"] == "succeeded"
        assert events[0] == "progress"
        assert events[-1] == "end"


def _subscriber_ids(stack: Stack) -> list[str]:
    name_prefix = f"{stack.env['LLMJOBS_BROKER_KEY_PREFIX']}llmjobs-api-waiters-"
    client = redis.Redis.from_url(stack.env["LLMJOBS_REDIS_URL"])
    try:
        return [str(c["id"]) for c in client.client_list(_type="pubsub")
                if c["name"].startswith(name_prefix)]
    finally:
        client.close()


def test_waiters_are_answered_after_the_subscriber_connection_was_killed(
    push_stack: Stack, fake_llm: FakeLLM,
) -> None:
    [before] = _subscriber_ids(push_stack)
    admin = redis.Redis.from_url(push_stack.env["LLMJOBS_REDIS_URL"])
    try:
        # Only this stack's own subscriber: the machine's Redis serves other stacks too.
        assert admin.client_kill_filter(_id=before) == 1
    finally:
        admin.close()
    deadline = time.monotonic() + 30
    while _subscriber_ids(push_stack) in ([], [before]):
        assert time.monotonic() < deadline, "the API did not subscribe again"
        time.sleep(0.1)
    with push_stack.client(push_stack.new_key()) as client:
        job_id = _chat_job(client, fake_llm, "after the reconnect", delay=1.0)
        started = time.monotonic()
        response = client.get(f"/v1/jobs/{job_id}", params={"wait": WAIT_S}, timeout=90)
        assert response.status_code == 200, response.text
        assert _answer(response.json()) == "after the reconnect"
        assert time.monotonic() - started < ANSWERED_EARLY_S


def test_a_lost_notice_costs_one_re_read_not_a_wrong_answer(
    make_stack: StackFactory, fake_llm: FakeLLM,
) -> None:
    # Nothing is published: every waiter must find the end by its periodic re-read.
    stack = make_stack(env={"LLMJOBS_JOB_END_PUBLISH": "false", "LLMJOBS_WAIT_RECHECK_S": "1",
                            "LLMJOBS_OPENAI_CHAT_TIMEOUT_S": str(WAIT_S)})
    with stack.client(stack.new_key()) as client:
        job_id = _chat_job(client, fake_llm, "found by re-reading", delay=1.0)
        waited: dict[str, tuple[httpx.Response, float]] = {}

        def long_poll() -> None:
            started = time.monotonic()
            response = client.get(f"/v1/jobs/{job_id}", params={"wait": WAIT_S}, timeout=90)
            waited["get"] = (response, time.monotonic() - started)

        poller = threading.Thread(target=long_poll)
        poller.start()
        model = f"m-{uuid.uuid4().hex[:10]}"
        fake_llm.script(model, Reply("completion re-read", delay=1.0))
        started = time.monotonic()
        chat = client.post("/v1/chat/completions", timeout=90, json={
            "model": f"ollama/{model}", "messages": [{"role": "user", "content": "hi"}]})
        chat_took = time.monotonic() - started
        poller.join(90)
        assert chat.status_code == 200, chat.text
        assert chat.json()["choices"][0]["message"]["content"] == "completion re-read"
        assert chat_took < ANSWERED_EARLY_S
        response, took = waited["get"]
        assert response.status_code == 200, response.text
        assert _answer(response.json()) == "found by re-reading"
        assert took < ANSWERED_EARLY_S
