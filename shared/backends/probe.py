"""Asking a backend what it serves: the model-list call of each kind, in one place.

/readyz checks that a backend answers; /v1/models lists what it serves; the workers'
adapters list models with the same URLs and headers.
"""

from __future__ import annotations

import importlib.util

import httpx

from shared.backends.config import local_model_file
from shared.backends.types import BackendConfig
from shared.settings import Settings

PROBE_TIMEOUT_S = 3.0


def auth_headers(config: BackendConfig) -> dict[str, str]:
    """The headers that authenticate a call to this backend."""
    if config.kind == "azure_openai":
        return {"api-key": config.api_key or ""}
    headers = {}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    org = config.extra.get("organization")
    if org:
        headers["OpenAI-Organization"] = str(org)
    return headers


def models_url(config: BackendConfig) -> str:
    """Where a backend lists its models (Azure: with the instance's configured api-version)."""
    if config.kind == "ollama":
        return f"{config.base_url}/api/tags"
    if config.kind == "azure_openai":
        return f"{config.base_url}/openai/models?api-version={config.extra['api_version']}"
    return f"{config.base_url}/models"


def model_names(config: BackendConfig, body: object) -> list[str]:
    """Model ids from a model-list answer of this kind of backend."""
    if not isinstance(body, dict):
        return []
    if config.kind == "ollama":
        return [str(m["name"]) for m in body.get("models", [])]
    return [str(m["id"]) for m in body.get("data", [])]


def check_reachable(config: BackendConfig) -> None:
    """Raise unless the backend can answer (a remote one below 500, the local one installed)."""
    if config.kind == "local":
        if importlib.util.find_spec("llama_cpp") is None:
            raise RuntimeError("llama-cpp-python is not installed")
        return
    response = httpx.get(models_url(config), headers=auth_headers(config),
                         timeout=PROBE_TIMEOUT_S)
    if response.status_code >= 500:
        raise RuntimeError(f"answered {response.status_code}")


async def list_models(config: BackendConfig, settings: Settings) -> list[str]:
    """The models a backend serves; raises when it cannot say."""
    if config.kind == "local":
        return [config.default_model or local_model_file(settings).stem]
    if config.kind == "azure_openai":
        # Azure lists base models, not the deployments a call names: the deployment is the model.
        return [config.default_model] if config.default_model else []
    async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_S) as client:
        response = await client.get(models_url(config), headers=auth_headers(config))
    response.raise_for_status()
    return model_names(config, response.json())
