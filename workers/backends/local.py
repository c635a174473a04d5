"""The embedded backend: a GGUF model run in-process with llama.cpp, no network at all."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from shared.backends import (
    BackendConfig,
    ChatRequest,
    ChatResult,
    PermanentBackendError,
    local_model_file,
)
from shared.settings import Settings
from workers.backends.base import DeltaSink


class LocalAdapter:
    """One llama.cpp model per worker process, loaded on first use, one generation at a time."""

    def __init__(self, config: BackendConfig, settings: Settings) -> None:
        self.config = config
        self.path = local_model_file(settings)
        self.n_ctx = settings.local_context_tokens
        self.n_threads = settings.local_threads
        self.default_max_tokens = settings.local_max_tokens
        self._llama: Any = None
        # llama.cpp contexts are not thread-safe; a process serves one generation at a time.
        self._lock = threading.Lock()

    def _model(self) -> Any:
        if self._llama is None:
            if not self.path.is_file():
                raise PermanentBackendError(f"local model file not found: {self.path}")
            # Imported here: llama.cpp is heavy and only the local backend's workers need it.
            # Imported here: llama.cpp is heavy and only the local backend's workers need it.
            from llama_cpp import Llama

            self._llama = Llama(
                model_path=str(self.path),
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                verbose=False,
            )
        return self._llama

    def _generate(self, request: ChatRequest) -> ChatResult:
        kwargs: dict[str, Any] = {
            "messages": request.messages,
            "max_tokens": request.max_tokens or self.default_max_tokens,
            "temperature": 0.2 if request.temperature is None else request.temperature,
        }
        if request.top_p is not None:
            kwargs["top_p"] = request.top_p
        if request.stop:
            kwargs["stop"] = request.stop
        if request.json_mode or request.json_schema:
            # A grammar keeps a small model's answer to valid JSON (of the schema when given).
            fmt: dict[str, Any] = {"type": "json_object"}
            if request.json_schema:
                fmt["schema"] = request.json_schema
            kwargs["response_format"] = fmt
        with self._lock:
            model = self._model()
            try:
                out = model.create_chat_completion(**kwargs)
            except ValueError as exc:
                # llama.cpp raises ValueError when the prompt exceeds the context window.
                raise PermanentBackendError(f"local model refused the request: {exc}") from exc
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return ChatResult(
            content=choice["message"].get("content") or "",
            finish_reason=choice.get("finish_reason") or "stop",
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            model=self.config.default_model,
        )

    async def chat(self, request: ChatRequest, on_delta: DeltaSink | None = None) -> ChatResult:
        # Generation runs in a thread; the answer is published whole rather than streamed.
        result = await asyncio.to_thread(self._generate, request)
        if on_delta is not None and result.content:
            await on_delta(result.content)
        return result

    async def list_models(self) -> list[str]:
        return [self.config.default_model or self.path.stem]

    async def aclose(self) -> None:
        self._llama = None
