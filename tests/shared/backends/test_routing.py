"""One resolver of job backends and OpenAI model names."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.backends.routing import ModelNotFound, RoutingError, resolve, route_model
from shared.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    path = tmp_path / "backends.yaml"
    path.write_text(
        "- {name: a, kind: ollama, base_url: 'http://a:11434', default_model: ma, "
        "fallback: [b]}\n"
        "- {name: b, kind: openai_compatible, base_url: 'http://b/v1', default_model: mb}\n"
        "- {name: c, kind: openai_compatible, base_url: 'http://c/v1'}\n"
    )
    return Settings(_env_file=None, local_enabled=False, backends_file=path)


def test_default_backend_with_its_fallback_chain(settings: Settings) -> None:
    route = resolve(settings, None, None)
    assert (route.backend, route.model) == ("a", "ma")
    assert route.plan() == {"backends": ["a", "b"], "backend_models": {"a": "ma", "b": "mb"}}
    single = resolve(settings, None, None, with_fallback=False)
    assert (single.backend, single.plan()) == ("a", {})


def test_a_named_list_and_an_explicit_model(settings: Settings) -> None:
    route = resolve(settings, ["b", "a"], "x")
    assert route.plan() == {"backends": ["b", "a"], "backend_models": {"b": "x", "a": "x"}}


@pytest.mark.parametrize(
    ("backend", "model", "status", "param", "words"),
    [
        ("nope", None, 422, "backend", "unknown backend 'nope'"),
        ([], None, 422, "backend", "list is empty"),
        (["a", "a"], None, 422, "backend", "appears twice"),
        ("c", None, 422, "model", "no default model"),
    ],
)
def test_refusals_name_the_field(
    settings: Settings, backend: str | list[str], model: str | None, status: int, param: str,
    words: str,
) -> None:
    with pytest.raises(RoutingError) as caught:
        resolve(settings, backend, model)
    assert (caught.value.status, caught.value.param) == (status, param)
    assert words in caught.value.message


def test_no_backend_configured_is_503() -> None:
    with pytest.raises(RoutingError) as caught:
        resolve(Settings(_env_file=None, local_enabled=False), None, None)
    assert (caught.value.status, caught.value.type) == (503, "backend_unavailable")


def test_openai_model_names(settings: Settings) -> None:
    assert route_model(settings, "b/some-model") == ("b", "some-model")
    assert route_model(settings, "b/") == ("b", "mb")
    assert route_model(settings, "mb") == ("b", "mb")
    assert route_model(settings, "other") == ("a", "other")
    with pytest.raises(ModelNotFound):
        route_model(settings, "c/")
    with pytest.raises(ModelNotFound):
        route_model(Settings(_env_file=None, local_enabled=False), "x")
