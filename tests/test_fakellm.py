"""Tests for the in-suite fake LLM backend, driven by real HTTP clients."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fakellm import (
    BadJson,
    Drop,
    FakeLLM,
    Hang,
    RecordedRequest,
    Reply,
    Slow,
    Status,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


def chat(content: str, model: str = "fake-model", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def wait_until(predicate: Any, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


# -- OpenAI ------------------------------------------------------------------------------------


def test_openai_sdk_non_stream(fake: FakeLLM) -> None:
    client = openai.OpenAI(base_url=fake.url + "/v1", api_key="k", max_retries=0)
    done = client.chat.completions.create(
        model="gpt-fake",
        messages=[{"role": "system", "content": "be brief"},
                  {"role": "user", "content": "hello big world"}],
    )
    assert done.object == "chat.completion"
    assert done.model == "gpt-fake"
    assert done.choices[0].message.content == "echo: hello big world"
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is not None
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (5, 4)
    assert done.usage.total_tokens == 9
    assert fake.count(path="/v1/chat/completions", model="gpt-fake") == 1


def test_openai_sdk_stream_with_usage(fake: FakeLLM) -> None:
    client = openai.OpenAI(base_url=fake.url + "/v1", api_key="k", max_retries=0)
    stream = client.chat.completions.create(
        model="gpt-fake", messages=[{"role": "user", "content": "one two three four"}],
        stream=True, stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three four"
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) == 5
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5


def test_openai_raw_sse_ends_with_done(fake: FakeLLM) -> None:
    fake.script("m", Reply("partial answer", finish_reason="length"))
    with httpx.stream("POST", fake.url + "/v1/chat/completions",
                      json=chat("x", "m", stream=True)) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [ln for ln in resp.iter_lines() if ln]
    assert all(ln.startswith("data: ") for ln in lines)
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(ln[6:]) for ln in lines[:-1]]
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert events[-1]["choices"][0]["finish_reason"] == "length"
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == "partial answer"


def test_models_listing(fake: FakeLLM) -> None:
    fake.models = ["a", "b"]
    client = openai.OpenAI(base_url=fake.url + "/v1", api_key="k", max_retries=0)
    assert [m.id for m in client.models.list()] == ["a", "b"]


def test_bearer_auth() -> None:
    with FakeLLM(api_key="secret") as fake:
        bad = openai.OpenAI(base_url=fake.url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        raw = httpx.post(fake.url + "/v1/chat/completions", json=chat("x"))
        assert raw.status_code == 401
        assert set(raw.json()["error"]) == {"message", "type", "param", "code"}
        good = openai.OpenAI(base_url=fake.url + "/v1", api_key="secret", max_retries=0)
        done = good.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        assert done.choices[0].message.content == "echo: x"
        assert httpx.get(fake.url + "/health").status_code == 200


# -- Azure -------------------------------------------------------------------------------------


def test_azure_sdk_deployment_and_api_key() -> None:
    with FakeLLM(azure_api_key="az-key") as fake:
        client = openai.AzureOpenAI(
            azure_endpoint=fake.url, api_key="az-key", api_version="2024-10-21", max_retries=0
        )
        done = client.chat.completions.create(
            model="my-deploy", messages=[{"role": "user", "content": "hi azure"}]
        )
        assert done.choices[0].message.content == "echo: hi azure"
        rec = fake.requests[-1]
        assert rec.path == "/openai/deployments/my-deploy/chat/completions"
        assert rec.query["api-version"] == "2024-10-21"
        assert rec.headers["api-key"] == "az-key"
        assert rec.model == "my-deploy"
        wrong = openai.AzureOpenAI(
            azure_endpoint=fake.url, api_key="nope", api_version="2024-10-21", max_retries=0
        )
        with pytest.raises(openai.AuthenticationError):
            wrong.chat.completions.create(model="my-deploy", messages=[])
        raw = httpx.post(fake.url + "/openai/deployments/d/chat/completions?api-version=x",
                         json={"messages": []})
        assert raw.status_code == 401
        assert raw.json()["error"]["code"] == "401"


def test_azure_script_matches_deployment(fake: FakeLLM) -> None:
    fake.script("dep-a", Status(503))
    client = openai.AzureOpenAI(
        azure_endpoint=fake.url, api_key="k", api_version="2024-10-21", max_retries=0
    )
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="dep-a", messages=[{"role": "user", "content": "x"}])
    ok = client.chat.completions.create(model="dep-a", messages=[{"role": "user", "content": "x"}])
    assert ok.choices[0].message.content == "echo: x"


# -- Ollama ------------------------------------------------------------------------------------


def test_ollama_chat_streams_ndjson_by_default(fake: FakeLLM) -> None:
    with httpx.stream("POST", fake.url + "/api/chat", json=chat("alpha beta", "llama3")) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "application/x-ndjson"
        parts = [json.loads(line) for line in resp.iter_lines() if line]
    assert len(parts) >= 3
    assert all(p["done"] is False for p in parts[:-1])
    assert "".join(p["message"]["content"] for p in parts) == "echo: alpha beta"
    last = parts[-1]
    assert last["done"] is True
    assert last["done_reason"] == "stop"
    assert (last["prompt_eval_count"], last["eval_count"]) == (2, 3)
    assert last["model"] == "llama3"
    assert last["created_at"].endswith("Z")


def test_ollama_non_stream_chat_and_generate(fake: FakeLLM) -> None:
    body = httpx.post(fake.url + "/api/chat", json=chat("hey", "llama3", stream=False)).json()
    assert body["message"] == {"role": "assistant", "content": "echo: hey"}
    assert body["done"] is True
    assert body["eval_count"] == 2
    gen = httpx.post(fake.url + "/api/generate",
                     json={"model": "llama3", "prompt": "tell me", "stream": False}).json()
    assert gen["response"] == "echo: tell me"
    assert (gen["done"], gen["done_reason"], gen["prompt_eval_count"]) == (True, "stop", 2)
    lines = httpx.post(fake.url + "/api/generate", json={"model": "x", "prompt": "p q"}).text
    parts = [json.loads(line) for line in lines.splitlines()]
    assert "".join(p["response"] for p in parts) == "echo: p q"
    assert parts[-1]["done"] is True


def test_ollama_tags_and_strict_models() -> None:
    with FakeLLM(models=["llama3", "qwen:7b"], ollama_strict_models=True) as fake:
        tags = httpx.get(fake.url + "/api/tags").json()["models"]
        assert [t["name"] for t in tags] == ["llama3:latest", "qwen:7b"]
        assert {"model", "size", "details"} <= set(tags[0])
        ok = httpx.post(fake.url + "/api/chat", json=chat("x", "llama3:latest", stream=False))
        assert ok.status_code == 200
        missing = httpx.post(fake.url + "/api/chat", json=chat("x", "nope", stream=False))
        assert missing.status_code == 404
        assert missing.json() == {"error": 'model "nope" not found, try pulling it first'}
    with FakeLLM() as lax:
        assert httpx.post(lax.url + "/api/chat", json=chat("x", "any")).status_code == 200


def test_json_requests_get_json_replies(fake: FakeLLM) -> None:
    long_prompt = "word " * 30
    fmt = {"type": "json_object"}
    done = httpx.post(fake.url + "/v1/chat/completions",
                      json=chat(long_prompt, response_format=fmt)).json()
    assert json.loads(done["choices"][0]["message"]["content"]) == {"echo": long_prompt[:40]}
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    for fmt_value in ("json", schema):
        body = chat("ping", "llama3", stream=False, format=fmt_value)
        reply = httpx.post(fake.url + "/api/chat", json=body).json()["message"]["content"]
        assert json.loads(reply) == {"echo": "ping"}


def test_default_reply_truncated_and_replaceable(fake: FakeLLM) -> None:
    done = httpx.post(fake.url + "/v1/chat/completions", json=chat("z" * 500)).json()
    assert len(done["choices"][0]["message"]["content"]) == 200
    fake.reply_fn = lambda body: f"{len(body['messages'])} messages"
    done = httpx.post(fake.url + "/v1/chat/completions", json=chat("q")).json()
    assert done["choices"][0]["message"]["content"] == "1 messages"


def test_broken_reply_fn_answers_500_and_is_reported(fake: FakeLLM) -> None:
    def broken(body: dict[str, Any]) -> str:
        raise KeyError("nope")

    fake.reply_fn = broken
    resp = httpx.post(fake.url + "/api/chat", json=chat("x", stream=False))
    assert resp.status_code == 500
    assert "KeyError" in resp.json()["error"]
    assert fake.errors == ["KeyError('nope')"]


# -- faults ------------------------------------------------------------------------------------


def test_429_with_retry_after_in_native_shapes(fake: FakeLLM) -> None:
    fake.script("m", Status(429, headers={"Retry-After": "2"}))
    resp = httpx.post(fake.url + "/v1/chat/completions", json=chat("x", "m"))
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == "2"
    assert resp.json()["error"]["code"] == "rate_limit_exceeded"
    fake.script("m", Status(429, headers={"Retry-After": "3"}))
    resp = httpx.post(fake.url + "/api/chat", json=chat("x", "m"))
    assert (resp.status_code, resp.headers["retry-after"]) == (429, "3")
    assert isinstance(resp.json()["error"], str)
    client = openai.OpenAI(base_url=fake.url + "/v1", api_key="k", max_retries=0)
    fake.script("m", Status(429, headers={"Retry-After": "1"}))
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert info.value.response.headers["retry-after"] == "1"


def test_500_and_custom_body(fake: FakeLLM) -> None:
    fake.script("m", Status(500), Status(502, body="upstream down"))
    first = httpx.post(fake.url + "/v1/chat/completions", json=chat("x", "m"))
    assert first.status_code == 500
    assert first.json()["error"]["type"] == "server_error"
    second = httpx.post(fake.url + "/v1/chat/completions", json=chat("x", "m"))
    assert (second.status_code, second.text) == (502, "upstream down")
    assert [r.outcome for r in fake.requests] == ["error:500", "error:502"]


def test_drop_gives_client_connection_error(fake: FakeLLM) -> None:
    fake.script("m", Drop(), Drop(after_headers=True))
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(fake.url + "/v1/chat/completions", json=chat("x", "m"))
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(fake.url + "/api/chat", json=chat("x", "m"))
    assert [r.outcome for r in fake.requests] == ["drop", "drop_after_headers"]


def test_hang_times_out_client_and_frees_slot(fake: FakeLLM) -> None:
    fake.script("m", Hang())
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(fake.url + "/v1/chat/completions", json=chat("x", "m"), timeout=0.3)
    assert wait_until(lambda: fake.in_flight == 0)
    assert fake.requests[-1].outcome == "hang"


def test_stop_releases_hanging_clients() -> None:
    fake = FakeLLM().start()
    fake.script("*", Hang())

    async def call() -> BaseException | None:
        async with httpx.AsyncClient(timeout=30) as client:
            try:
                await client.post(fake.url + "/v1/chat/completions", json=chat("x"))
            except httpx.HTTPError as exc:
                return exc
        return None

    async def run() -> BaseException | None:
        task = asyncio.create_task(call())
        while fake.in_flight == 0:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(fake.stop)
        return await task

    assert isinstance(asyncio.run(run()), httpx.RemoteProtocolError | httpx.ReadError)


def test_script_is_consumed_in_order_then_default(fake: FakeLLM) -> None:
    fake.script("m", Reply("first"), Status(500), Slow(0.01, "third"))
    fake.script("other", Reply("other-1"))
    got = []
    for _ in range(4):
        resp = httpx.post(fake.url + "/v1/chat/completions", json=chat("x", "m"))
        got.append(resp.json()["choices"][0]["message"]["content"] if resp.is_success
                   else resp.status_code)
    assert got == ["first", 500, "third", "echo: x"]
    other = httpx.post(fake.url + "/v1/chat/completions", json=chat("x", "other")).json()
    assert other["choices"][0]["message"]["content"] == "other-1"


def test_rule_applies_per_request(fake: FakeLLM) -> None:
    fake.rule("m", lambda rec: Status(500) if "FAIL" in rec.prompt else None)
    codes = [httpx.post(fake.url + "/v1/chat/completions", json=chat(p, "m")).status_code
             for p in ("ok", "please FAIL", "fine")]
    assert codes == [200, 500, 200]
    assert httpx.post(fake.url + "/v1/chat/completions", json=chat("FAIL", "n")).status_code == 200


def test_random_faults_rate(fake: FakeLLM) -> None:
    fake.set_faults(0.3, kinds=("429", "500", "drop", "bad_json"), seed=7, retry_after=4)
    failures = 0
    seen: set[str] = set()
    with httpx.Client() as client:
        for i in range(200):
            body = chat(f"req {i}", response_format={"type": "json_object"})
            try:
                resp = client.post(fake.url + "/v1/chat/completions", json=body)
            except httpx.RemoteProtocolError:
                failures += 1
                seen.add("drop")
                continue
            if resp.status_code == 429:
                assert resp.headers["retry-after"] == "4"
            if resp.status_code != 200:
                failures += 1
                seen.add(str(resp.status_code))
                continue
            try:
                json.loads(resp.json()["choices"][0]["message"]["content"])
            except ValueError:
                failures += 1
                seen.add("bad_json")
    print(f"fault fraction {failures / 200:.2f}")
    assert 0.15 <= failures / 200 <= 0.45
    assert seen == {"429", "500", "drop", "bad_json"}
    assert sum(r.outcome != "ok" for r in fake.requests) == failures


def test_bad_json_fault_is_normal_for_plain_calls(fake: FakeLLM) -> None:
    fake.script("m", BadJson(), BadJson())
    plain = httpx.post(fake.url + "/v1/chat/completions", json=chat("x", "m")).json()
    assert plain["choices"][0]["message"]["content"] == "echo: x"
    asked = httpx.post(fake.url + "/api/chat", json=chat("x", "m", stream=False, format="json"))
    with pytest.raises(ValueError, match="Expecting|Unterminated"):
        json.loads(asked.json()["message"]["content"])
    assert [r.outcome for r in fake.requests] == ["ok", "bad_json"]


def test_timeout_fault_answers_late(fake: FakeLLM) -> None:
    fake.set_faults(1.0, kinds=("timeout",), timeout_seconds=0.5)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(fake.url + "/v1/chat/completions", json=chat("x"), timeout=0.1)
    late = httpx.post(fake.url + "/v1/chat/completions", json=chat("y"), timeout=5)
    assert late.json()["choices"][0]["message"]["content"] == "echo: y"
    fake.set_faults(0)
    assert httpx.post(fake.url + "/v1/chat/completions", json=chat("z")).status_code == 200
    with pytest.raises(ValueError, match="unknown fault kinds"):
        fake.set_faults(0.5, kinds=("429", "explode"))


# -- recording and counters --------------------------------------------------------------------


def test_recording_fields(fake: FakeLLM) -> None:
    before = time.monotonic()
    httpx.post(fake.url + "/v1/chat/completions?trace=1", json=chat("hi", "m1"),
               headers={"X-Custom": "Yes"})
    httpx.get(fake.url + "/api/tags")
    first, second = fake.requests
    assert isinstance(first, RecordedRequest)
    assert (first.method, first.path, first.query) == ("POST", "/v1/chat/completions",
                                                        {"trace": "1"})
    assert first.headers["x-custom"] == "Yes"
    assert first.json == chat("hi", "m1")
    assert first.model == "m1"
    assert first.outcome == "ok"
    assert first.prompt == "hi"
    assert before <= first.received_at <= second.received_at
    assert (second.method, second.model, second.json) == ("GET", None, None)
    assert fake.requests_for("m1") == [first]
    assert fake.count() == 2
    assert fake.count(path="/api/tags") == 1
    assert fake.count(model="m1", path="/api/tags") == 0


def test_reset_clears_everything(fake: FakeLLM) -> None:
    fake.latency = 0.01
    fake.script("m", Status(500))
    fake.rule("m", lambda rec: Status(500))
    fake.set_faults(1.0, kinds=("500",))
    fake.reply_fn = lambda body: "custom"
    httpx.get(fake.url + "/health")
    fake.reset()
    assert fake.requests == []
    assert fake.latency == 0
    done = httpx.post(fake.url + "/v1/chat/completions", json=chat("x", "m"))
    assert done.json()["choices"][0]["message"]["content"] == "echo: x"
    assert fake.max_in_flight == 1


def test_latency_runs_concurrently_and_is_counted(fake: FakeLLM) -> None:
    fake.latency = 0.2

    async def run() -> list[int]:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=20)) as client:
            calls = [client.post(fake.url + "/v1/chat/completions", json=chat(str(i)))
                     for i in range(20)]
            return [r.status_code for r in await asyncio.gather(*calls)]

    assert asyncio.run(run()) == [200] * 20
    assert fake.max_in_flight >= 10
    assert fake.in_flight == 0
    assert fake.busy_seconds() >= 20 * 0.2


def test_throughput_with_keepalive_connections(fake: FakeLLM) -> None:
    fake.latency = 0.05
    total, clients, per_client = 512, 8, 8  # 64 keep-alive connections in all

    async def run() -> list[int]:
        # Several pools: one httpx pool with 64 connections is itself CPU-bound at ~150 req/s.
        limits = httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client)
        pools = [httpx.AsyncClient(limits=limits, timeout=30) for _ in range(clients)]

        async def worker(k: int) -> list[int]:
            codes = []
            for i in range(total // (clients * per_client)):
                text = f"w{k} n{i}"
                resp = await pools[k % clients].post(fake.url + "/v1/chat/completions",
                                                     json=chat(text))
                assert resp.json()["choices"][0]["message"]["content"] == f"echo: {text}"
                codes.append(resp.status_code)
            return codes

        try:
            results = await asyncio.gather(*(worker(k) for k in range(clients * per_client)))
        finally:
            for pool in pools:
                await pool.aclose()
        return [code for codes in results for code in codes]

    start = time.monotonic()
    codes = asyncio.run(run())
    elapsed = time.monotonic() - start
    print(f"fakellm: {total} requests in {elapsed:.2f}s = {total / elapsed:.0f} req/s, "
          f"peak in flight {fake.max_in_flight}, connections {fake.connections}")
    assert codes == [200] * total
    assert fake.count(path="/v1/chat/completions") == total
    assert fake.max_in_flight > 16
    assert fake.connections <= clients * per_client


# -- standalone --------------------------------------------------------------------------------


def test_standalone_subprocess_serves_until_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakellm", "--port", "0", "--latency", "0.05",
         "--api-key", "X"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("listening http://127.0.0.1:")
        url = line.split(" ", 1)[1]
        client = openai.OpenAI(base_url=url + "/v1", api_key="X", max_retries=0)
        done = client.chat.completions.create(model="m", messages=[{"role": "user",
                                                                     "content": "sub"}])
        assert done.choices[0].message.content == "echo: sub"
        assert httpx.post(url + "/v1/chat/completions", json=chat("x")).status_code == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
