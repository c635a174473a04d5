"""What every backend adapter offers, and the HTTP error classification they share."""

from __future__ import annotations

import email.utils
import time
from typing import Protocol

import httpx

from shared.backends import (
    BackendError,
    ChatRequest,
    ChatResult,
    PermanentBackendError,
    TransientBackendError,
)

# Status codes that a later attempt may get past (the backend's own word, or overload).
TRANSIENT_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 529}


class Adapter(Protocol):
    """An LLM backend as a worker sees it."""

    async def chat(self, request: ChatRequest) -> ChatResult: ...

    async def list_models(self) -> list[str]: ...

    async def aclose(self) -> None: ...


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


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
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    raise PermanentBackendError(message, status=response.status_code)


def transport_error(exc: httpx.HTTPError, backend: str) -> BackendError:
    """Connection resets, refused connections and timeouts are worth another try."""
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "connection failed"
    return TransientBackendError(f"{backend} {kind}: {exc!r}")
