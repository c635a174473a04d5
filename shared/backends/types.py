"""The request/response types and errors every backend adapter speaks, and a backend's config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BackendConfig:
    """One backend instance: a kind of adapter, where it is and its limits."""

    name: str
    kind: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    default_model: str | None = None
    max_concurrency: int = 8
    context_tokens: int = 8192
    extra: dict[str, Any] = field(default_factory=dict)
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    timeout_s: float | None = None
    fallback: tuple[str, ...] = ()


@dataclass
class ChatRequest:
    """A chat call as the worker asks for it, independent of wire format."""

    messages: list[dict[str, str]]
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    json_mode: bool = False
    json_schema: dict[str, Any] | None = None


@dataclass
class ChatResult:
    """A backend's answer with its usage."""

    content: str
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str | None = None
    # The backend said its budget is spent (x-ratelimit-remaining 0): pause callers this long.
    pause_s: float | None = None


class BackendError(Exception):
    """A backend call failed."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class TransientBackendError(BackendError):
    """Worth retrying: connection trouble, timeouts, 408/409/429/5xx."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class PermanentBackendError(BackendError):
    """Retrying cannot help: bad request, bad key, unknown model."""
