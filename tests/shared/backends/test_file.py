"""Named backend instances from LLMJOBS_BACKENDS_FILE, merged with the env settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.backends import configured_backends
from shared.backends.file import BackendsFileError
from shared.settings import Settings


def settings(path: Path, keys: dict[str, str] | None = None) -> Settings:
    return Settings(
        backends_file=path, local_enabled=False, ollama_base_url="http://ollama:11434",
        backend_api_keys=keys or {},
    )


def test_yaml_instances_merge_with_env_settings(tmp_path: Path) -> None:
    path = tmp_path / "backends.yaml"
    path.write_text(
        "backends:\n"
        "  - name: gpu2\n    kind: ollama\n    base_url: http://gpu2:11434/\n"
        "    max_concurrency: 2\n    keep_alive: 30m\n    fallback: [ollama]\n"
        "  - name: az\n    kind: azure_openai\n    base_url: https://x.openai.azure.com\n"
        "    deployment: gpt4o\n    requests_per_minute: 60\n    tokens_per_minute: 90000\n"
    )
    found = configured_backends(settings(path, {"az": "secret"}))
    assert list(found) == ["ollama", "gpu2", "az"]
    gpu2, az = found["gpu2"], found["az"]
    assert gpu2.base_url == "http://gpu2:11434"
    assert gpu2.max_concurrency == 2
    assert gpu2.extra == {"keep_alive": "30m"}
    assert gpu2.fallback == ("ollama",)
    assert az.api_key == "secret"
    assert az.default_model == "gpt4o"
    assert (az.requests_per_minute, az.tokens_per_minute) == (60, 90000)


def test_toml_file_works_too(tmp_path: Path) -> None:
    path = tmp_path / "backends.toml"
    path.write_text('[[backends]]\nname = "vllm"\nkind = "openai_compatible"\n'
                    'base_url = "http://vllm:8000/v1"\napi_key = "k"\ntimeout_s = 30\n')
    vllm = configured_backends(settings(path))["vllm"]
    assert (vllm.kind, vllm.api_key, vllm.timeout_s) == ("openai_compatible", "k", 30.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- {name: a, kind: nope, base_url: http://x}", "field 'kind'"),
        ("- {name: a, kind: ollama}", "needs base_url"),
        ("- {name: a, kind: ollama, base_url: http://x, colour: red}", "field 'colour'"),
        ("- {name: a, kind: ollama, base_url: http://x}\n- {name: a, kind: local}", "unique"),
        ("backends: [", "not valid yaml"),
    ],
)
def test_bad_files_say_what_to_fix(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "backends.yaml"
    path.write_text(text)
    with pytest.raises(BackendsFileError, match=message):
        configured_backends(settings(path))
