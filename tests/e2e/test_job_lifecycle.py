"""A job over HTTP, through the orchestrator and a backend pool, back by polling."""

from __future__ import annotations

import time
import uuid

import pytest

from shared.documents.chunking import count_tokens
from tests.fakellm import Drop, FakeLLM, Hang, Reply, Slow, Status
from tests.fixtures.stack import Stack


def unique_model() -> str:
    return f"m-{uuid.uuid4().hex[:10]}"


def chat(content: str, model: str, backend: str = "ollama") -> dict[str, object]:
    return {
        "type": "chat",
        "backend": backend,
        "model": model,
        "input": {"messages": [{"role": "user", "content": content}]},
    }


def test_chat_job_answers_202_while_running_then_200(any_stack: Stack, fake_llm: FakeLLM) -> None:
    model = unique_model()
    fake_llm.script(model, Slow(1.0, "the answer"))
    with any_stack.client(any_stack.new_key()) as client:
        created = client.post("/v1/jobs", json=chat("hello", model))
        assert created.status_code == 202, created.text
        job = created.json()
        assert created.headers["location"] == f"{any_stack.api_url}/v1/jobs/{job['id']}"
        assert int(created.headers["retry-after"]) >= 1
        assert job["status"] == "running"  # one step: it goes straight to its backend
        assert job["id"].startswith("job_")

        polled = client.get(created.headers["location"])
        assert polled.status_code == 202
        assert polled.headers["location"] == created.headers["location"]

        done = any_stack.wait_job(client, job["id"])
    assert done["status"] == "succeeded"
    assert done["result"] == {
        "message": {"role": "assistant", "content": "the answer"},
        "finish_reason": "stop",
    }
    assert done["progress"] == {"total": 1, "done": 1, "failed": 0}
    assert done["usage"]["prompt_tokens"] > 0
    assert done["usage"]["completion_tokens"] > 0
    assert [s["kind"] for s in done["steps"]] == ["chat"]
    assert done["finished_at"] >= done["started_at"] >= done["created_at"]
    sent = fake_llm.requests_for(model)
    assert len(sent) == 1
    assert sent[0].path == "/api/chat"
    assert sent[0].json["messages"][-1]["content"] == "hello"


def test_openai_compatible_backend_runs_its_own_pool(stack: Stack, fake_llm: FakeLLM) -> None:
    model = unique_model()
    with stack.client(stack.new_key()) as client:
        job = client.post("/v1/jobs", json=chat("hi there", model, "openai_compatible")).json()
        done = stack.wait_job(client, job["id"])
    assert done["status"] == "succeeded", done
    assert done["backend"] == "openai_compatible"
    assert done["result"]["message"]["content"] == "echo: hi there"
    assert [r.path for r in fake_llm.requests_for(model)] == ["/v1/chat/completions"]


def test_long_text_is_summarized_by_map_then_reduce(stack: Stack, fake_llm: FakeLLM) -> None:
    model = unique_model()
    paragraph = " ".join(f"Sentence {i} talks about the quarterly figures." for i in range(60))
    text = "\n\n".join(f"Section {n}. {paragraph}" for n in range(40))
    assert count_tokens(text) > 3 * 8192
    fake_llm.rule(model, lambda req: Reply("partial summary"))
    with stack.client(stack.new_key()) as client:
        job = client.post(
            "/v1/jobs",
            json={"type": "summarize", "backend": "ollama", "model": model,
                  "input": {"text": text, "max_words": 50}},
        ).json()
        done = stack.wait_job(client, job["id"], timeout=90)
    assert done["status"] == "succeeded", done
    kinds = [s["kind"] for s in done["steps"]]
    maps = kinds.count("map")
    assert maps >= 3
    assert kinds[:maps] == ["map"] * maps
    assert kinds[maps:] == ["reduce"], kinds
    assert done["result"] == {"summary": "partial summary"}
    calls = fake_llm.requests_for(model)
    assert len(calls) == maps + 1
    # Every section reached some map call, and the reduce saw every map's answer.
    mapped = " ".join(c.prompt for c in calls[:-1])
    assert all(f"Section {n}." in mapped for n in range(40))
    assert calls[-1].prompt.count("partial summary") == maps


def test_short_text_is_one_summarize_step(stack: Stack, fake_llm: FakeLLM) -> None:
    model = unique_model()
    fake_llm.script(model, Reply("Short."))
    with stack.client(stack.new_key()) as client:
        job = client.post(
            "/v1/jobs",
            json={"type": "summarize", "backend": "ollama", "model": model,
                  "input": {"text": "A short note about lunch.", "max_words": 10}},
        ).json()
        done = stack.wait_job(client, job["id"])
    assert done["result"] == {"summary": "Short."}
    assert [s["kind"] for s in done["steps"]] == ["summarize"]
    assert "at most 10 words" in fake_llm.requests_for(model)[0].prompt


def test_429_is_retried_after_waiting_retry_after(stack: Stack, fake_llm: FakeLLM) -> None:
    model = unique_model()
    fake_llm.script(model, Status(429, headers={"Retry-After": "2"}), Reply("finally"))
    with stack.client(stack.new_key()) as client:
        job = client.post("/v1/jobs", json=chat("x", model)).json()
        done = stack.wait_job(client, job["id"])
    assert done["status"] == "succeeded"
    assert done["result"]["message"]["content"] == "finally"
    first, second = fake_llm.requests_for(model)
    assert second.received_at - first.received_at >= 2.0


@pytest.mark.parametrize(
    "faults",
    [
        (Status(500), Status(503)),
        (Drop(),),
        (Drop(after_headers=True),),
    ],
    ids=["5xx", "dropped", "dropped-after-headers"],
)
def test_transient_failures_are_retried(
    stack: Stack, fake_llm: FakeLLM, faults: tuple[object, ...]
) -> None:
    model = unique_model()
    fake_llm.script(model, *faults, Reply("ok after faults"))  # type: ignore[arg-type]
    with stack.client(stack.new_key()) as client:
        job = client.post("/v1/jobs", json=chat("x", model, "openai_compatible")).json()
        done = stack.wait_job(client, job["id"])
    assert done["status"] == "succeeded", done
    assert done["result"]["message"]["content"] == "ok after faults"
    assert len(fake_llm.requests_for(model)) == len(faults) + 1


def test_400_fails_the_job_at_once_with_the_backends_message(
    stack: Stack, fake_llm: FakeLLM
) -> None:
    model = unique_model()
    fake_llm.script(
        model,
        Status(400, body={"error": {"message": "temperature must be <= 2", "type": "x"}}),
    )
    with stack.client(stack.new_key()) as client:
        job = client.post("/v1/jobs", json=chat("x", model, "openai_compatible")).json()
        done = stack.wait_job(client, job["id"])
        assert done["status"] == "failed"
        assert "temperature must be <= 2" in done["error"]["message"]
        assert done["error"]["status"] == 400
        assert len(fake_llm.requests_for(model)) == 1
        failing = client.get(f"/v1/jobs/{job['id']}", params={"fail_on_error": "true"})
    assert failing.status_code == 500
    assert failing.json()["error"]["type"] == "internal"
    assert "temperature must be <= 2" in failing.json()["error"]["message"]


def test_unknown_ollama_model_names_ollama_pull(stack: Stack, fake_llm: FakeLLM) -> None:
    model = unique_model()
    fake_llm.script(model, Status(404, body={"error": f'model "{model}" not found'}))
    with stack.client(stack.new_key()) as client:
        job = client.post("/v1/jobs", json=chat("x", model)).json()
        done = stack.wait_job(client, job["id"])
    assert done["status"] == "failed"
    assert f"ollama pull {model}" in done["error"]["message"]


def test_cancel_stops_a_running_job(stack: Stack, fake_llm: FakeLLM) -> None:
    model = unique_model()
    fake_llm.script(model, Hang())
    with stack.client(stack.new_key()) as client:
        job = client.post("/v1/jobs", json=chat("x", model)).json()
        deadline = time.monotonic() + 20
        while not fake_llm.requests_for(model) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fake_llm.requests_for(model), "the step never reached the backend"
        cancelled = client.post(f"/v1/jobs/{job['id']}/cancel")
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "cancelled"
        polled = client.get(f"/v1/jobs/{job['id']}")
        assert polled.status_code == 200
        assert polled.json()["status"] == "cancelled"
        assert client.get(
            f"/v1/jobs/{job['id']}", params={"fail_on_error": "true"}
        ).status_code == 409
        again = client.post(f"/v1/jobs/{job['id']}/cancel")
        assert again.status_code == 409
        assert again.json()["error"]["type"] == "conflict"
        # The worker notices through its heartbeat and lets go of the hung call.
        deadline = time.monotonic() + 15
        while fake_llm.in_flight and time.monotonic() < deadline:
            time.sleep(0.1)
        final = client.get(f"/v1/jobs/{job['id']}").json()
    assert final["status"] == "cancelled"
    assert [s["status"] for s in final["steps"]] == ["cancelled"]


def test_another_tenants_job_is_404(any_stack: Stack) -> None:
    with any_stack.client(any_stack.new_key()) as owner, any_stack.client(
        any_stack.new_key()
    ) as other:
        job = owner.post("/v1/jobs", json=chat("secret", unique_model())).json()
        for response in (
            other.get(f"/v1/jobs/{job['id']}"),
            other.post(f"/v1/jobs/{job['id']}/cancel"),
        ):
            assert response.status_code == 404
            assert response.json()["error"]["type"] == "not_found"
        assert job["id"] not in [j["id"] for j in other.get("/v1/jobs").json()["data"]]
        assert owner.get(f"/v1/jobs/{job['id']}").status_code in (200, 202)


def test_list_is_newest_first_with_a_cursor(stack: Stack) -> None:
    with stack.client(stack.new_key()) as client:
        ids = [client.post("/v1/jobs", json=chat(f"n{i}", unique_model())).json()["id"]
               for i in range(5)]
        seen: list[str] = []
        after = None
        while True:
            params = {"limit": 2, **({"after": after} if after else {})}
            page = client.get("/v1/jobs", params=params).json()
            seen += [j["id"] for j in page["data"]]
            if not page["has_more"]:
                break
            after = page["next_after"]
        assert seen == list(reversed(ids))
        only_chat = client.get("/v1/jobs", params={"type": "summarize"}).json()
        assert only_chat["data"] == []
