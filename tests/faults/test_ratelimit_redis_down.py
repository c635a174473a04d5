"""The rate limiter's Redis stops mid-run: limits hold in each API process, or 503 if told."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from cli.embedded_redis import free_port, is_reachable, start_redis
from shared.db import session_scope
from shared.keys import create_key
from tests.conftest import StackFactory
from tests.faults.helpers import wait_for
from tests.fixtures.stack import Stack

LIMIT = 5


def limited_key(stack: Stack, tenant: str) -> str:
    with session_scope(stack.sessions) as session:
        return create_key(session, tenant, "small", ("jobs:read",),
                          rate_limit_per_min=LIMIT).secret


def burst(stack: Stack, key: str, n: int) -> list[httpx.Response]:
    with stack.client(key) as client:
        return [client.get("/v1/jobs") for _ in range(n)]


@pytest.mark.fault
def test_local_fallback_enforces_the_limit_while_redis_is_down(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    port = free_port()
    proc, url = start_redis(tmp_path / "redis", port=port, persist=False)
    try:
        stack = make_stack(workers=(), redis_url=url)
        shared = burst(stack, limited_key(stack, "rl-up"), LIMIT + 1)
        assert [r.status_code for r in shared] == [200] * LIMIT + [429]

        proc.terminate()
        proc.wait(timeout=10)
        assert not is_reachable("127.0.0.1", port)
        answers = burst(stack, limited_key(stack, "rl-down"), LIMIT + 3)
        assert [r.status_code for r in answers] == [200] * LIMIT + [429] * 3, [
            r.text for r in answers]
        assert [r.headers["ratelimit-remaining"] for r in answers[:LIMIT]] == [
            str(LIMIT - 1 - i) for i in range(LIMIT)]
        refused = answers[-1]
        assert refused.headers["ratelimit-limit"] == str(LIMIT)
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["type"] == "rate_limited"
        # Another burst a second later (Redis probed again meanwhile): still one log line.
        time.sleep(1.2)
        assert burst(stack, limited_key(stack, "rl-down2"), LIMIT + 1)[-1].status_code == 429
        assert stack.logs("api").count("limiting in this process's memory") == 1
        assert "request let through" not in stack.logs("api")

        proc, _ = start_redis(tmp_path / "redis", port=port, persist=False)
        key = limited_key(stack, "rl-back")

        def back() -> bool:
            burst(stack, key, 1)  # Redis is probed only when a request comes
            return "reachable again" in stack.logs("api")

        wait_for(back, 30, "the limiter to use Redis again")
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


@pytest.mark.fault
def test_refuse_mode_answers_503_while_redis_is_down(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    port = free_port()
    proc, url = start_redis(tmp_path / "redis", port=port, persist=False)
    try:
        stack = make_stack(workers=(), redis_url=url,
                           env={"LLMJOBS_RATE_LIMIT_ON_REDIS_DOWN": "refuse"})
        key = limited_key(stack, "rl-refuse")
        assert burst(stack, key, 1)[0].status_code == 200
        proc.terminate()
        proc.wait(timeout=10)
        answers = burst(stack, key, 3)
        for answer in answers:
            assert answer.status_code == 503, answer.text
            error = answer.json()["error"]
            assert error["type"] == "backend_unavailable"
            assert error["request_id"] == answer.headers["x-request-id"]
            assert "rate limits cannot be checked" in error["message"]
            assert int(answer.headers["retry-after"]) >= 1
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
