"""Model-list calls per backend kind, against the fake LLM server."""

from __future__ import annotations

import asyncio

import pytest

from shared.backends import configured_backends
from shared.backends.probe import check_reachable, list_models, models_url
from shared.settings import Settings
from tests.fakellm import FakeLLM
from tests.fakellm_wire import tagged


def test_model_list_urls_per_kind() -> None:
    settings = Settings(
        _env_file=None, local_enabled=False, ollama_base_url="http://o:11434",
        openai_api_key="sk-x", azure_openai_endpoint="https://az.example.com",
        azure_openai_api_key="k", azure_openai_api_version="2099-01-01",
    )
    backends = configured_backends(settings)
    assert models_url(backends["ollama"]) == "http://o:11434/api/tags"
    assert models_url(backends["openai"]) == "https://api.openai.com/v1/models"
    # The configured api-version, not a fixed one.
    assert models_url(backends["azure_openai"]) == (
        "https://az.example.com/openai/models?api-version=2099-01-01")


def test_listing_and_probing_the_fake_server(fake_llm: FakeLLM) -> None:
    settings = Settings(
        _env_file=None, local_enabled=False, ollama_base_url=fake_llm.url,
        openai_compatible_base_url=f"{fake_llm.url}/v1",
    )
    backends = configured_backends(settings)
    expected = {"ollama": [tagged(m) for m in fake_llm.models],
                "openai_compatible": fake_llm.models}
    for name, models in expected.items():
        check_reachable(backends[name])
        assert asyncio.run(list_models(backends[name], settings)) == models


def test_an_unreachable_backend_raises() -> None:
    settings = Settings(_env_file=None, local_enabled=False, ollama_base_url="http://127.0.0.1:9")
    config = configured_backends(settings)["ollama"]
    with pytest.raises(Exception):  # noqa: B017, PT011 (any transport error will do)
        check_reachable(config)
    with pytest.raises(Exception):  # noqa: B017, PT011
        asyncio.run(list_models(config, settings))
