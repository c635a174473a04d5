"""Shared fixtures: real Redis, real databases, the fake LLM server and running stacks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fakellm import FakeLLM
from tests.fixtures.recording import db_sessions, own_pg_url, sent
from tests.fixtures.services import (
    broker_namespace,
    create_pg_database,
    drop_namespace,
    drop_pg_database,
)
from tests.fixtures.stack import Stack

__all__ = ["db_sessions", "own_pg_url", "sent"]

StackFactory = Callable[..., Stack]


@pytest.fixture(scope="session")
def broker_namespaces() -> Iterator[Callable[[], dict[str, str]]]:
    """The machine's Redis, with a key prefix of its own per stack (settings to pass)."""
    made: list[str] = []

    def make() -> dict[str, str]:
        url, prefix = broker_namespace()
        made.append(prefix)
        return {"LLMJOBS_REDIS_URL": url, "LLMJOBS_BROKER_KEY_PREFIX": prefix}

    yield make
    for prefix in made:
        drop_namespace(prefix)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    url = create_pg_database()
    yield url
    drop_pg_database(url)


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeLLM]:
    with FakeLLM() as fake:
        yield fake


def fake_backends(fake: FakeLLM) -> dict[str, str]:
    """Settings pointing the ollama and openai_compatible backends at the fake server."""
    return {
        "LLMJOBS_OLLAMA_BASE_URL": fake.url,
        "LLMJOBS_OLLAMA_MODEL": "fake-model",
        "LLMJOBS_OPENAI_COMPATIBLE_BASE_URL": f"{fake.url}/v1",
        "LLMJOBS_OPENAI_COMPATIBLE_MODEL": "fake-model",
    }


@pytest.fixture(scope="session")
def stacks(broker_namespaces: Callable[[], dict[str, str]]) -> Iterator[dict[str, Stack]]:
    """Lazily started shared stacks, one per database kind."""
    started: dict[str, Stack] = {}
    yield started
    for stack in started.values():
        stack.stop()


def _shared_stack(kind: str, stacks: dict[str, Stack], request: pytest.FixtureRequest) -> Stack:
    if kind not in stacks:
        fake: FakeLLM = request.getfixturevalue("fake_llm")
        workdir: Path = request.getfixturevalue("tmp_path_factory").mktemp(f"stack-{kind}")
        if kind == "sqlite":
            db_url = f"sqlite:///{workdir / 'llm-jobs.db'}"
        else:
            db_url = request.getfixturevalue("pg_url")
        broker = request.getfixturevalue("broker_namespaces")()
        stacks[kind] = Stack(workdir, db_url, {**fake_backends(fake), **broker}).start(
            ["ollama", "openai_compatible"]
        )
    return stacks[kind]


@pytest.fixture
def stack(stacks: dict[str, Stack], request: pytest.FixtureRequest) -> Stack:
    """The shared stack on SQLite."""
    return _shared_stack("sqlite", stacks, request)


@pytest.fixture(params=["sqlite", "postgres"])
def any_stack(stacks: dict[str, Stack], request: pytest.FixtureRequest) -> Stack:
    """The shared stack on SQLite, then on PostgreSQL."""
    return _shared_stack(request.param, stacks, request)


@pytest.fixture
def make_stack(
    tmp_path: Path, fake_llm: FakeLLM, request: pytest.FixtureRequest
) -> Iterator[StackFactory]:
    """Own stacks for tests that kill or reconfigure processes; stopped after the test."""
    made: list[Stack] = []

    def factory(
        workers: tuple[str, ...] = ("ollama",),
        env: dict[str, str] | None = None,
        database_url: str | None = None,
        redis_url: str | None = None,
        lanes: bool = False,
    ) -> Stack:
        workdir = tmp_path / f"stack{len(made)}"
        workdir.mkdir()
        broker = (
            {"LLMJOBS_REDIS_URL": redis_url}
            if redis_url
            else request.getfixturevalue("broker_namespaces")()
        )
        s = Stack(
            workdir,
            database_url or f"sqlite:///{workdir / 'llm-jobs.db'}",
            {**fake_backends(fake_llm), **broker, **(env or {})},
        )
        made.append(s)
        return s.start(workers, lanes=lanes)

    yield factory
    for s in made:
        s.stop()
