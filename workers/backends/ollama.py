"""Adapter for Ollama's native API (`/api/chat`, `/api/generate`, `/api/tags`)."""

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
from shared.backends.probe import model_names, models_url
from workers.backends.base import DeltaSink, raise_for_status, transport_error
from workers.backends.pool import ShardedClient


def _options(request: ChatRequest) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if request.temperature is not None:
        options["temperature"] = request.temperature
    if request.max_tokens is not None:
        options["num_predict"] = request.max_tokens
    if request.top_p is not None:
        options["top_p"] = request.top_p
    if request.stop:
        options["stop"] = request.stop
    return options


def _final(data: dict[str, Any], content: str) -> ChatResult:
    return ChatResult(
        content=content,
        finish_reason=data.get("done_reason") or "stop",
        prompt_tokens=int(data.get("prompt_eval_count") or 0),
        completion_tokens=int(data.get("eval_count") or 0),
        model=data.get("model"),
    )


def _piece(data: dict[str, Any]) -> str:
    message = data.get("message")
    if isinstance(message, dict):
        return str(message.get("content") or "")
    return str(data.get("response") or "")


class OllamaAdapter:
    """Chat (streamed as NDJSON when asked) and plain generation against an Ollama server."""

    def __init__(self, config: BackendConfig, client: ShardedClient) -> None:
        self.config = config
        self.client = client

    def _body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model or self.config.default_model,
            "stream": stream,
            "options": _options(request),
        }
        if self.config.extra.get("keep_alive"):
            body["keep_alive"] = self.config.extra["keep_alive"]
        if request.json_schema:
            body["format"] = request.json_schema  # Ollama constrains output to the schema
        elif request.json_mode:
            body["format"] = "json"
        return body

    async def chat(self, request: ChatRequest, on_delta: DeltaSink | None = None) -> ChatResult:
        body = {**self._body(request, on_delta is not None), "messages": request.messages}
        return await self._call("/api/chat", body, on_delta)

    async def generate(
        self, prompt: str, request: ChatRequest, on_delta: DeltaSink | None = None
    ) -> ChatResult:
        """A raw completion through `/api/generate` (no chat template applied by the caller)."""
        body = {**self._body(request, on_delta is not None), "prompt": prompt}
        system = next((m["content"] for m in request.messages if m["role"] == "system"), None)
        if system:
            body["system"] = system
        return await self._call("/api/generate", body, on_delta)

    async def _call(
        self, path: str, body: dict[str, Any], on_delta: DeltaSink | None
    ) -> ChatResult:
        url = f"{self.config.base_url}{path}"
        try:
            if on_delta is None:
                response = await self.client.post(url, json=body)
                self._check(response, body["model"])
                return self._whole(response)
            async with self.client.stream("POST", url, json=body) as response:
                if not response.is_success:
                    await response.aread()
                    self._check(response, body["model"])
                return await self._stream(response, on_delta)
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.config.name) from exc

    def _check(self, response: httpx.Response, model: str | None) -> None:
        if response.status_code == 404:
            raise PermanentBackendError(
                f"{self.config.name} (ollama) has no model {model!r}: run `ollama pull {model}` "
                f"on the Ollama host ({response.text[:200]})",
                status=404,
            )
        raise_for_status(response, self.config.name)

    def _whole(self, response: httpx.Response) -> ChatResult:
        try:
            data = response.json()
            content = _piece(data)
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentBackendError(f"ollama sent an unexpected answer: {exc!r}") from exc
        return _final(data, content)

    async def _stream(self, response: httpx.Response, on_delta: DeltaSink) -> ChatResult:
        parts: list[str] = []
        name = self.config.name
        async for line in response.aiter_lines():
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError as exc:
                raise TransientBackendError(f"{name} sent a broken stream line") from exc
            if data.get("error"):
                raise TransientBackendError(f"{name} failed mid-stream: {data['error']}")
            piece = _piece(data)
            if piece:
                parts.append(piece)
                await on_delta(piece)
            if data.get("done"):
                return _final(data, "".join(parts))
        raise TransientBackendError(f"{self.config.name} ended the stream before done")

    async def list_models(self) -> list[str]:
        try:
            response = await self.client.get(models_url(self.config))
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.config.name) from exc
        raise_for_status(response, self.config.name)
        return model_names(self.config, response.json())

    async def aclose(self) -> None:
        await self.client.aclose()
