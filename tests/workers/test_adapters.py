"""Each adapter against the in-suite fake server, asserting the exact wire details it sent."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from shared.backends import (
    BackendConfig,
    ChatRequest,
    PermanentBackendError,
    TransientBackendError,
)
from shared.settings import Settings
from tests.fakellm import FakeLLM, Status
from tests.fakellm_behaviors import RecordedRequest
from workers.backends import build_adapter
from workers.backends.base import Adapter, parse_reset, ratelimit_wait
from workers.backends.ollama import OllamaAdapter

T = TypeVar("T")


def unique_model() -> str:
    return f"m-{uuid.uuid4().hex[:10]}"


def run(make: Callable[[Adapter], Awaitable[T]], config: BackendConfig) -> T:
    async def go() -> T:
        adapter = build_adapter(config, Settings(local_enabled=False))
        try:
            return await make(adapter)
        finally:
            await adapter.aclose()

    return asyncio.run(go())


def body(rec: RecordedRequest) -> dict[str, Any]:
    assert isinstance(rec.json, dict)
    return rec.json


def ask(content: str, model: str | None, **kw: Any) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": content}], model=model, **kw)


def test_openai_sends_bearer_and_organization(fake_llm: FakeLLM) -> None:
    model = unique_model()
    config = BackendConfig("oa", "openai", f"{fake_llm.url}/v1", "sk-test",
                           extra={"organization": "org-42"})
    result = run(lambda a: a.chat(ask("hi there", model, temperature=0.3, max_tokens=7)), config)
    assert result.content == "echo: hi there"
    assert result.prompt_tokens > 0
    assert result.completion_tokens > 0
    (sent,) = fake_llm.requests_for(model)
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.headers["openai-organization"] == "org-42"
    assert body(sent)["model"] == model
    assert body(sent)["temperature"] == 0.3
    assert body(sent)["max_tokens"] == 7
    assert body(sent)["stream"] is False


def test_openai_compatible_streams_server_sent_events(fake_llm: FakeLLM) -> None:
    model = unique_model()
    config = BackendConfig("compat", "openai_compatible", f"{fake_llm.url}/v1")
    deltas: list[str] = []

    async def sink(piece: str) -> None:
        deltas.append(piece)

    text = "one two three four five"
    result = run(lambda a: a.chat(ask(text, model), sink), config)
    assert result.content == f"echo: {text}"
    assert len(deltas) > 3
    assert "".join(deltas) == result.content
    assert result.completion_tokens == len(result.content.split())
    (sent,) = fake_llm.requests_for(model)
    assert "authorization" not in sent.headers
    assert body(sent)["stream"] is True
    assert body(sent)["stream_options"] == {"include_usage": True}


def test_azure_uses_deployment_path_and_api_key_header(fake_llm: FakeLLM) -> None:
    deployment = unique_model()
    config = BackendConfig("az", "azure_openai", fake_llm.url, "azure-key",
                           default_model=deployment, extra={"api_version": "2024-10-21"})
    result = run(lambda a: a.chat(ask("hello azure", None, json_mode=True)), config)
    assert json.loads(result.content) == {"echo": "hello azure"}
    (sent,) = fake_llm.requests_for(deployment)
    assert sent.path == f"/openai/deployments/{deployment}/chat/completions"
    assert sent.query == {"api-version": "2024-10-21"}
    assert sent.headers["api-key"] == "azure-key"
    assert "authorization" not in sent.headers
    assert "model" not in body(sent)
    assert body(sent)["response_format"] == {"type": "json_object"}


def test_azure_deployment_per_job_overrides_settings(fake_llm: FakeLLM) -> None:
    job_deployment = unique_model()
    config = BackendConfig("az", "azure_openai", fake_llm.url, "k", default_model="other")
    run(lambda a: a.chat(ask("x", job_deployment)), config)
    assert fake_llm.requests_for(job_deployment)[0].path.endswith(
        f"/deployments/{job_deployment}/chat/completions"
    )


def test_ollama_chat_sends_options_keep_alive_and_streams_ndjson(fake_llm: FakeLLM) -> None:
    model = unique_model()
    config = BackendConfig("ol", "ollama", fake_llm.url, extra={"keep_alive": "10m"})
    deltas: list[str] = []

    async def sink(piece: str) -> None:
        deltas.append(piece)

    request = ask("stream me please", model, temperature=0.1, max_tokens=50, top_p=0.9,
                  stop=["END"])
    result = run(lambda a: a.chat(request, sink), config)
    assert result.content == "echo: stream me please"
    assert "".join(deltas) == result.content
    assert len(deltas) > 1
    assert result.prompt_tokens > 0
    (sent,) = fake_llm.requests_for(model)
    assert sent.path == "/api/chat"
    assert body(sent)["stream"] is True
    assert body(sent)["keep_alive"] == "10m"
    assert body(sent)["options"] == {"temperature": 0.1, "num_predict": 50, "top_p": 0.9,
                                    "stop": ["END"]}


def test_ollama_generate_and_json_schema_format(fake_llm: FakeLLM) -> None:
    model = unique_model()
    config = BackendConfig("ol", "ollama", fake_llm.url)
    schema = {"type": "object", "properties": {"echo": {"type": "string"}}}
    request = ChatRequest(
        messages=[{"role": "system", "content": "be brief"}], model=model, json_schema=schema
    )
    result = run(lambda a: a.generate("complete this", request), config)  # type: ignore[attr-defined]
    assert json.loads(result.content) == {"echo": "complete this"}
    (sent,) = fake_llm.requests_for(model)
    assert sent.path == "/api/generate"
    assert body(sent)["prompt"] == "complete this"
    assert body(sent)["system"] == "be brief"
    assert body(sent)["format"] == schema
    assert body(sent)["stream"] is False


def test_ollama_unknown_model_names_ollama_pull() -> None:
    with FakeLLM(models=["llama3.2"], ollama_strict_models=True) as strict:
        config = BackendConfig("ol", "ollama", strict.url)
        with pytest.raises(PermanentBackendError) as info:
            run(lambda a: a.chat(ask("x", "nope-model")), config)
        assert "ollama pull nope-model" in info.value.message
        assert run(lambda a: a.list_models(), config) == ["llama3.2:latest"]


def test_openai_429_reads_retry_after_then_x_ratelimit_reset(fake_llm: FakeLLM) -> None:
    model = unique_model()
    fake_llm.script(
        model,
        Status(429, headers={"Retry-After": "2"}),
        Status(429, headers={"x-ratelimit-remaining-requests": "0",
                             "x-ratelimit-reset-requests": "1.5s"}),
    )
    config = BackendConfig("oa", "openai", f"{fake_llm.url}/v1", "sk")
    for expected in (2.0, 1.5):
        with pytest.raises(TransientBackendError) as info:
            run(lambda a: a.chat(ask("x", model)), config)
        assert info.value.status == 429
        assert info.value.retry_after == pytest.approx(expected)


def test_rate_limit_header_parsing() -> None:
    assert parse_reset("6m0s") == 360.0
    assert parse_reset("20ms") == pytest.approx(0.02)
    assert parse_reset("1.5") == 1.5
    assert parse_reset("soon") is None
    import httpx

    headers = httpx.Headers({"x-ratelimit-remaining-tokens": "0",
                             "x-ratelimit-reset-tokens": "3s",
                             "x-ratelimit-remaining-requests": "10",
                             "x-ratelimit-reset-requests": "9s"})
    assert ratelimit_wait(headers) == 3.0


def test_openai_compatible_lists_models(fake_llm: FakeLLM) -> None:
    config = BackendConfig("compat", "openai_compatible", f"{fake_llm.url}/v1")
    assert run(lambda a: a.list_models(), config) == fake_llm.models


def test_local_model_answers_json_constrained_by_schema() -> None:
    config = BackendConfig("local", "local", default_model="smollm2")
    schema = {
        "type": "object",
        "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative"]}},
        "required": ["sentiment"],
    }
    request = ChatRequest(
        messages=[{"role": "user", "content": "I love this product. Sentiment as JSON?"}],
        max_tokens=40, temperature=0.0, json_schema=schema,
    )
    result = run(lambda a: a.chat(request), config)
    assert json.loads(result.content)["sentiment"] in ("positive", "negative")
    assert result.prompt_tokens > 0
    assert result.completion_tokens > 0


def test_many_concurrent_calls_spread_over_small_pools() -> None:
    # 24 slots → 48 connections, held in pools of at most 16: every call still runs at once.
    with FakeLLM(latency=0.3) as fake:
        config = BackendConfig("ol", "ollama", fake.url, max_concurrency=24)

        async def go(adapter: Adapter) -> tuple[list[str], int]:
            answers = await asyncio.gather(*(adapter.chat(ask(f"row {i}", "m")) for i in range(48)))
            pieces: list[str] = []

            async def sink(piece: str) -> None:
                pieces.append(piece)

            streamed = await adapter.chat(ask("streamed", "m"), on_delta=sink)
            assert "".join(pieces) == streamed.content
            assert isinstance(adapter, OllamaAdapter)
            return [a.content for a in answers] + [streamed.content], adapter.client.shards

        contents, shards = run(go, config)
        assert contents == [f"echo: row {i}" for i in range(48)] + ["echo: streamed"]
        assert shards == 3
        assert fake.max_in_flight == 48
