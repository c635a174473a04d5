"""Worker-side metrics: every backend call timed, every step's end counted."""

from __future__ import annotations

import time
from typing import Any

from shared.backends import ChatRequest, ChatResult, PermanentBackendError, TransientBackendError
from shared.metrics import BACKEND_LATENCY, BACKEND_RETRIES, STEP_DURATION, STEPS_FINISHED
from workers.backends.base import Adapter, DeltaSink


class TimedAdapter:
    """An adapter that observes each call's latency by outcome; everything else passes through."""

    def __init__(self, inner: Adapter, backend: str) -> None:
        self.inner, self.backend = inner, backend

    async def chat(self, request: ChatRequest, on_delta: DeltaSink | None = None) -> ChatResult:
        start = time.perf_counter()
        outcome = "error"
        try:
            result = await self.inner.chat(request, on_delta)
            outcome = "ok"
            return result
        except TransientBackendError:
            outcome = "transient"
            raise
        except PermanentBackendError:
            outcome = "permanent"
            raise
        finally:
            BACKEND_LATENCY.labels(self.backend, outcome).observe(time.perf_counter() - start)

    async def list_models(self) -> list[str]:
        return await self.inner.list_models()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def timed(adapter: Adapter, backend: str) -> Adapter:
    """`adapter` with its calls timed."""
    return TimedAdapter(adapter, backend)


def retried(backend: str, exc: BaseException) -> None:
    """Count one retried backend call."""
    BACKEND_RETRIES.labels(backend, type(exc).__name__).inc()


def step_ended(backend: str, kind: str, outcome: str, seconds: float) -> None:
    """Count a step this worker ran to an end (or gave up) and observe its duration."""
    STEPS_FINISHED.labels(backend, kind, outcome).inc()
    STEP_DURATION.labels(backend, kind, outcome).observe(seconds)
