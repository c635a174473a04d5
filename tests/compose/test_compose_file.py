"""compose/docker-compose.yml: the rules `docker compose config` cannot check, and its syntax.

The machine that runs CI has a docker client without the compose plugin, so the file's
structure is checked here with PyYAML; where `docker compose` exists it must accept the file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.settings import BACKEND_KINDS

COMPOSE = Path(__file__).resolve().parents[2] / "compose"
APP_SERVICES = ("api", "orchestrator", "beat", "webhooks", "flower")


def load() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    return data


def test_every_part_of_the_system_is_a_service() -> None:
    services = load()["services"]
    for name in ("postgres", "redis", "ollama", "migrate", *APP_SERVICES):
        assert name in services, name
    commands = {" ".join(s.get("command", [])) for s in services.values()}
    for kind in BACKEND_KINDS:
        assert f"llm-jobs worker --backend {kind}" in commands, kind
    assert "llm-jobs orchestrator --no-beat" in commands  # beat runs once, on its own
    assert "llm-jobs beat" in commands


def test_long_running_services_have_healthchecks_and_restart() -> None:
    for name, service in load()["services"].items():
        if name == "migrate":
            assert service["restart"] == "no"
            continue
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert not check.get("disable"), f"{name} has its healthcheck off"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert service.get("restart") == "unless-stopped", name


def test_migrations_run_before_the_app_starts() -> None:
    services = load()["services"]
    assert services["migrate"]["command"] == ["llm-jobs", "migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name, service in services.items():
        if " ".join(service.get("command", [])).startswith("llm-jobs") and name != "migrate":
            deps = service["depends_on"]
            assert deps["migrate"]["condition"] == "service_completed_successfully", name
            assert deps["redis"]["condition"] == "service_healthy", name
    assert services["worker-ollama"]["depends_on"]["ollama"]["condition"] == "service_healthy"


def test_redis_never_evicts_and_keeps_an_aof() -> None:
    command = load()["services"]["redis"]["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert command[command.index("--appendonly") + 1] == "yes"


def test_flower_requires_basic_auth_and_app_shares_metrics() -> None:
    services = load()["services"]
    assert "LLMJOBS_FLOWER_BASIC_AUTH" in services["flower"]["environment"]
    assert ":?" in services["flower"]["environment"]["LLMJOBS_FLOWER_BASIC_AUTH"]
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert env["LLMJOBS_METRICS_DIR"].startswith("/data"), name
        assert "data:/data" in services[name]["volumes"], name
        assert env["LLMJOBS_DATABASE_URL"].startswith("postgresql://"), name


def test_the_image_is_built_from_the_repository() -> None:
    services = load()["services"]
    build = services["api"]["build"]
    assert (COMPOSE / build["context"] / build["dockerfile"]).resolve() == COMPOSE / "Dockerfile"
    dockerfile = (COMPOSE / "Dockerfile").read_text()
    for package in ("api", "orchestrator", "workers", "shared"):
        assert f"COPY {package} ./{package}" in dockerfile


def compose_command() -> list[str] | None:
    """`docker compose` (the plugin) or `docker-compose` (Debian's package), whichever exists."""
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_config_accepts_the_file() -> None:
    command = compose_command()
    if command is None:
        # CI installs docker-compose (.ci/run); elsewhere say what is missing, loudly.
        assert os.environ.get("CI") != "true", "CI needs docker compose or docker-compose"
        pytest.fail(
            "neither `docker compose` nor `docker-compose` is installed "
            "(apt-get install docker-compose)",
            pytrace=False,
        )
    done = subprocess.run(
        [*command, "-f", str(COMPOSE / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        env={"POSTGRES_PASSWORD": "x", "LLMJOBS_FLOWER_BASIC_AUTH": "a:b", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
