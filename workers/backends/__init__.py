"""Backend adapters, one module per wire format, built by kind."""

from __future__ import annotations

import httpx

from shared.backends import BackendConfig
from shared.settings import Settings
from workers.backends.base import Adapter
from workers.backends.local import LocalAdapter
from workers.backends.ollama import OllamaAdapter
from workers.backends.openai_wire import AzureOpenAIAdapter, OpenAIWireAdapter
from workers.backends.pool import ShardedClient


def build_adapter(config: BackendConfig, settings: Settings) -> Adapter:
    """The adapter for a configured backend instance, with its own connection pool."""
    if config.kind == "local":
        return LocalAdapter(config, settings)
    client = ShardedClient(
        httpx.Timeout(config.timeout_s or settings.backend_timeout_s, connect=10.0),
        max_connections=max(config.max_concurrency * 2, 16),
        max_keepalive=max(config.max_concurrency, 8),
    )
    if config.kind == "ollama":
        return OllamaAdapter(config, client)
    if config.kind == "azure_openai":
        return AzureOpenAIAdapter(config, client)
    return OpenAIWireAdapter(config, client)
