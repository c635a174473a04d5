"""Backend adapters, one module per wire format, built by kind."""

from __future__ import annotations

import httpx

from shared.backends import BackendConfig
from shared.settings import Settings
from workers.backends.base import Adapter
from workers.backends.pool import ShardedClient


def build_adapter(config: BackendConfig, settings: Settings) -> Adapter:
    """The adapter for a configured backend instance, with its own connection pool."""
    if config.kind == "local":
        from workers.backends.local import LocalAdapter

        return LocalAdapter(config, settings)
    client = ShardedClient(
        httpx.Timeout(config.timeout_s or settings.backend_timeout_s, connect=10.0),
        max_connections=max(config.max_concurrency * 2, 16),
        max_keepalive=max(config.max_concurrency, 8),
    )
    if config.kind == "ollama":
        from workers.backends.ollama import OllamaAdapter

        return OllamaAdapter(config, client)
    from workers.backends.openai_wire import AzureOpenAIAdapter, OpenAIWireAdapter

    if config.kind == "azure_openai":
        return AzureOpenAIAdapter(config, client)
    return OpenAIWireAdapter(config, client)
