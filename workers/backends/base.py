"""What every backend adapter offers, and the HTTP error classification they share."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Protocol

import httpx

from shared.backends import (
    BackendError,
    ChatRequest,
    ChatResult,
    PermanentBackendError,
    TransientBackendError,
)
from shared.retry_after import parse_retry_after

# Status codes that a later attempt may get past (the backend's own word, or overload).
TRANSIENT_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 529}


# Receives each piece of a streamed answer as it arrives.
DeltaSink = Callable[[str], Awaitable[None]]


class Adapter(Protocol):
    """An LLM backend as a worker sees it."""

    async def chat(self, request: ChatRequest, on_delta: DeltaSink | None = None) -> ChatResult:
        """One chat call; streams into `on_delta` when given and the backend can stream."""
        ...

    async def list_models(self) -> list[str]: ...

    async def aclose(self) -> None: ...


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_reset(value: str | None) -> float | None:
    """Seconds from an `x-ratelimit-reset-*` header: "1s", "6m0s", "20ms" or plain seconds."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    unit = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = _DURATION_PART.findall(value)
    if not parts:
        return None
    return sum(float(n) * unit[u] for n, u in parts)


def ratelimit_wait(headers: httpx.Headers) -> float | None:
    """How long an OpenAI-style backend says its spent budget (requests or tokens) needs."""
    waits = []
    for kind in ("requests", "tokens"):
        remaining = headers.get(f"x-ratelimit-remaining-{kind}")
        if remaining is not None and remaining.strip() in ("0", "0.0"):
            reset = parse_reset(headers.get(f"x-ratelimit-reset-{kind}"))
            if reset is not None:
                waits.append(reset)
    return max(waits) if waits else None


def error_message(response: httpx.Response) -> str:
    """The backend's own error text, whatever its JSON shape."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return str(err.get("message") or err)[:500]
        return str(err)[:500]
    return str(body)[:500]


def raise_for_status(response: httpx.Response, backend: str) -> None:
    """Map a non-2xx answer to a transient or permanent backend error."""
    if response.is_success:
        return
    message = f"{backend} answered {response.status_code}: {error_message(response)}"
    if response.status_code in TRANSIENT_STATUS:
        raise TransientBackendError(
            message,
            status=response.status_code,
            retry_after=_retry_after(response),
        )
    raise PermanentBackendError(message, status=response.status_code)


def _retry_after(response: httpx.Response) -> float | None:
    explicit = parse_retry_after(response.headers.get("retry-after"))
    if explicit is not None:
        return explicit
    if response.status_code == 429:
        # OpenAI sends x-ratelimit-reset-* on 429s; without it the backoff decides.
        return ratelimit_wait(response.headers)
    return None


def transport_error(exc: httpx.HTTPError, backend: str) -> BackendError:
    """Connection resets, refused connections and timeouts are worth another try."""
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "connection failed"
    return TransientBackendError(f"{backend} {kind}: {exc!r}")
