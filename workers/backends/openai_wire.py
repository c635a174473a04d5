"""Adapters for the OpenAI chat-completions wire format: OpenAI, Azure OpenAI, compatibles."""

from __future__ import annotations

import json
from typing import Any

import httpx

from shared.backends import (
    BackendConfig,
    ChatRequest,
    ChatResult,
    PermanentBackendError,
    TransientBackendError,
)
from shared.backends.probe import auth_headers, model_names, models_url
from workers.backends.base import DeltaSink, raise_for_status, ratelimit_wait, transport_error
from workers.backends.pool import ShardedClient


def completion_body(
    request: ChatRequest, model: str | None, stream: bool = False
) -> dict[str, Any]:
    """The JSON body of a chat-completions call."""
    body: dict[str, Any] = {"messages": request.messages, "stream": stream}
    if stream:
        # Usage arrives in a last chunk only when asked for.
        body["stream_options"] = {"include_usage": True}
    if model:
        body["model"] = model
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop"] = request.stop
    if request.json_schema:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": request.json_schema},
        }
    elif request.json_mode:
        body["response_format"] = {"type": "json_object"}
    return body


def parse_completion(data: dict[str, Any], backend: str) -> ChatResult:
    """Content, finish reason and usage of a chat-completions answer."""
    try:
        choice = data["choices"][0]
        content = choice["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise PermanentBackendError(f"{backend} sent an answer without choices: {exc!r}") from exc
    usage = data.get("usage") or {}
    return ChatResult(
        content=content,
        finish_reason=choice.get("finish_reason") or "stop",
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        model=data.get("model"),
    )


async def read_sse(response: httpx.Response, backend: str, on_delta: DeltaSink) -> ChatResult:
    """Reassemble an OpenAI server-sent-events stream, passing each delta on as it arrives."""
    parts: list[str] = []
    result = ChatResult(content="", finish_reason="stop")
    done = False
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            done = True
            break
        try:
            chunk = json.loads(payload)
        except ValueError as exc:
            raise TransientBackendError(f"{backend} sent a broken stream chunk") from exc
        if chunk.get("error"):
            raise TransientBackendError(f"{backend} failed mid-stream: {chunk['error']}")
        result.model = chunk.get("model") or result.model
        for choice in chunk.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                parts.append(piece)
                await on_delta(piece)
            if choice.get("finish_reason"):
                result.finish_reason = choice["finish_reason"]
        usage = chunk.get("usage")
        if usage:
            result.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            result.completion_tokens = int(usage.get("completion_tokens") or 0)
    if not done:
        raise TransientBackendError(f"{backend} ended the stream before [DONE]")
    result.content = "".join(parts)
    return result


class OpenAIWireAdapter:
    """`POST {base}/chat/completions` with a bearer key (OpenAI and compatible servers)."""

    def __init__(self, config: BackendConfig, client: ShardedClient) -> None:
        self.config = config
        self.client = client

    def _headers(self) -> dict[str, str]:
        return auth_headers(self.config)

    def _chat_url(self, model: str | None) -> str:
        return f"{self.config.base_url}/chat/completions"

    def _model_in_body(self, model: str | None) -> str | None:
        return model

    async def chat(self, request: ChatRequest, on_delta: DeltaSink | None = None) -> ChatResult:
        model = request.model or self.config.default_model
        url = self._chat_url(model)
        body = completion_body(request, self._model_in_body(model), stream=on_delta is not None)
        try:
            if on_delta is None:
                response = await self.client.post(url, json=body, headers=self._headers())
                result = self._parse(response)
            else:
                async with self.client.stream(
                    "POST", url, json=body, headers=self._headers()
                ) as response:
                    if not response.is_success:
                        await response.aread()
                        raise_for_status(response, self.config.name)
                    result = await read_sse(response, self.config.name, on_delta)
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.config.name) from exc
        result.pause_s = ratelimit_wait(response.headers)
        return result

    def _parse(self, response: httpx.Response) -> ChatResult:
        raise_for_status(response, self.config.name)
        try:
            data = response.json()
        except ValueError as exc:
            raise PermanentBackendError(f"{self.config.name} sent invalid JSON") from exc
        return parse_completion(data, self.config.name)

    async def list_models(self) -> list[str]:
        try:
            response = await self.client.get(
                models_url(self.config), headers=self._headers()
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.config.name) from exc
        raise_for_status(response, self.config.name)
        return model_names(self.config, response.json())

    async def aclose(self) -> None:
        await self.client.aclose()


class AzureOpenAIAdapter(OpenAIWireAdapter):
    """Azure: the deployment is in the path, the key in an `api-key` header."""

    def _chat_url(self, model: str | None) -> str:
        if not model:
            raise PermanentBackendError(
                f"{self.config.name} (azure_openai) needs a deployment: set the job's model or "
                "LLMJOBS_AZURE_OPENAI_DEPLOYMENT (or `deployment:` in the backends file)"
            )
        version = self.config.extra.get("api_version", "2024-10-21")
        return (
            f"{self.config.base_url}/openai/deployments/{model}/chat/completions"
            f"?api-version={version}"
        )

    def _model_in_body(self, model: str | None) -> str | None:
        return None

    async def list_models(self) -> list[str]:
        return [self.config.default_model] if self.config.default_model else []
