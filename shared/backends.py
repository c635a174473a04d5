"""Which LLM backends are configured, and the request/response types every adapter speaks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.settings import Settings


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


def configured_backends(settings: Settings) -> dict[str, BackendConfig]:
    """Backends named by the settings, in preference order (first is the default)."""
    found: list[BackendConfig] = []
    if settings.ollama_base_url:
        found.append(
            BackendConfig(
                "ollama",
                "ollama",
                settings.ollama_base_url.rstrip("/"),
                default_model=settings.ollama_model,
                max_concurrency=settings.worker_concurrency,
                context_tokens=settings.context_tokens,
                extra={"keep_alive": settings.ollama_keep_alive},
            )
        )
    if settings.openai_compatible_base_url:
        found.append(
            BackendConfig(
                "openai_compatible",
                "openai_compatible",
                settings.openai_compatible_base_url.rstrip("/"),
                settings.openai_compatible_api_key,
                default_model=settings.openai_compatible_model,
                max_concurrency=settings.worker_concurrency,
                context_tokens=settings.context_tokens,
            )
        )
    if settings.openai_api_key:
        found.append(
            BackendConfig(
                "openai",
                "openai",
                settings.openai_base_url.rstrip("/"),
                settings.openai_api_key,
                default_model=settings.openai_model,
                max_concurrency=settings.worker_concurrency,
                context_tokens=settings.context_tokens,
                extra={"organization": settings.openai_organization},
            )
        )
    if settings.azure_openai_endpoint and settings.azure_openai_api_key:
        found.append(
            BackendConfig(
                "azure_openai",
                "azure_openai",
                settings.azure_openai_endpoint.rstrip("/"),
                settings.azure_openai_api_key,
                default_model=settings.azure_openai_deployment,
                max_concurrency=settings.worker_concurrency,
                context_tokens=settings.context_tokens,
                extra={"api_version": settings.azure_openai_api_version},
            )
        )
    if settings.local_enabled:
        found.append(
            BackendConfig(
                "local",
                "local",
                default_model=(
                    settings.local_model_path.stem
                    if settings.local_model_path
                    else "smollm2-135m-instruct"
                ),
                max_concurrency=1,
                context_tokens=settings.local_context_tokens,
            )
        )
    merged = {b.name: b for b in found}
    if settings.backends_file is not None:
        from shared.backends_file import load_backends_file

        # Instances from the file come after (or replace) the ones the env settings name.
        for config in load_backends_file(settings.backends_file, settings):
            merged.pop(config.name, None)
            merged[config.name] = config
    wanted = _wanted(settings)
    if wanted is not None:
        merged = {name: b for name, b in merged.items() if name in wanted}
    return merged


def _wanted(settings: Settings) -> set[str] | None:
    if not settings.backends:
        return None
    return {name.strip() for name in settings.backends.split(",") if name.strip()}


def default_backend(settings: Settings) -> str | None:
    """The backend a job gets when it names none."""
    backends = configured_backends(settings)
    if settings.default_backend:
        return settings.default_backend if settings.default_backend in backends else None
    return next(iter(backends), None)
