"""Adapter for Ollama's native API (`/api/chat`, `/api/tags`)."""

from __future__ import annotations

from typing import Any

import httpx

from shared.backends import BackendConfig, ChatRequest, ChatResult, PermanentBackendError
from workers.backends.base import raise_for_status, transport_error


class OllamaAdapter:
    """Non-streaming chat against an Ollama server."""

    def __init__(self, config: BackendConfig, client: httpx.AsyncClient) -> None:
        self.config = config
        self.client = client

    async def chat(self, request: ChatRequest) -> ChatResult:
        model = request.model or self.config.default_model
        options: dict[str, Any] = {}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        if request.top_p is not None:
            options["top_p"] = request.top_p
        if request.stop:
            options["stop"] = request.stop
        body: dict[str, Any] = {
            "model": model,
            "messages": request.messages,
            "stream": False,
            "options": options,
        }
        if self.config.extra.get("keep_alive"):
            body["keep_alive"] = self.config.extra["keep_alive"]
        if request.json_mode:
            body["format"] = "json"
        try:
            response = await self.client.post(f"{self.config.base_url}/api/chat", json=body)
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.config.name) from exc
        if response.status_code == 404:
            raise PermanentBackendError(
                f"ollama has no model {model!r}: run `ollama pull {model}` on the Ollama host "
                f"({response.text[:200]})",
                status=404,
            )
        raise_for_status(response, self.config.name)
        try:
            data = response.json()
            content = data["message"]["content"]
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentBackendError(f"ollama sent an unexpected answer: {exc!r}") from exc
        return ChatResult(
            content=content,
            finish_reason=data.get("done_reason") or "stop",
            prompt_tokens=int(data.get("prompt_eval_count") or 0),
            completion_tokens=int(data.get("eval_count") or 0),
            model=data.get("model"),
        )

    async def list_models(self) -> list[str]:
        try:
            response = await self.client.get(f"{self.config.base_url}/api/tags")
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.config.name) from exc
        raise_for_status(response, self.config.name)
        return [str(m["name"]) for m in response.json().get("models", [])]

    async def aclose(self) -> None:
        await self.client.aclose()
