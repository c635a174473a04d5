"""The test's own redis-server stops and comes back empty: processes reconnect, nothing lost."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from cli.embedded_redis import free_port, is_reachable, start_redis
from tests.conftest import StackFactory
from tests.fakellm import FakeLLM
from tests.faults.conftest import point_at
from tests.faults.helpers import (
    TERMINAL,
    calls_per_prompt,
    respawn,
    separate_beat,
    statuses,
    submit,
    wait_all,
    wait_for,
)
from tests.fixtures.stack import Stack

JOBS = 100


def finished(stack: Stack, ids: list[str]) -> bool:
    return sum(statuses(stack, ids)[s] for s in TERMINAL) == len(ids)


def supervise_until(stack: Stack, done: Callable[[], bool], timeout: float) -> list[str]:
    """Wait for `done`, restarting exited processes as `llm-jobs run` does; who was restarted."""
    restarted: list[str] = []
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"not done after {timeout} s"
        for name, proc in list(stack.processes.items()):
            if proc.poll() is not None:
                restarted.append(name)
                if name == "beat":
                    stack.spawn(name, ["beat"])
                else:
                    respawn(stack, name)
        time.sleep(0.5)
    return restarted


@pytest.mark.fault
def test_redis_restart_mid_run_loses_nothing(
    make_stack: StackFactory, own_fake: FakeLLM, tmp_path: Path
) -> None:
    port = free_port()
    # Not persistent: the restart comes back empty, so every queued message is really gone.
    proc, url = start_redis(tmp_path / "redis", port=port, persist=False)
    try:
        own_fake.latency = 0.3
        stack = make_stack(workers=("ollama",), env=point_at(own_fake), redis_url=url)
        separate_beat(stack)
        tag = uuid.uuid4().hex[:8]
        prompts = [f"redis-{tag}-{i}" for i in range(JOBS)]
        ids = submit(stack, stack.new_key(), prompts)
        wait_for(lambda: statuses(stack, ids)["succeeded"] >= 10, 60, "the first jobs to end")
        proc.terminate()
        proc.wait(timeout=10)
        assert not is_reachable("127.0.0.1", port)
        done_at_stop = statuses(stack, ids)["succeeded"]
        time.sleep(3)
        proc, _ = start_redis(tmp_path / "redis", port=port, persist=False)

        restarted = supervise_until(stack, lambda: finished(stack, ids), timeout=120)
        counts = wait_all(stack, ids, timeout=5)
        print(f"\nredis restart: {done_at_stop}/{JOBS} done when it stopped; final {dict(counts)};"
              f" processes the supervisor had to restart: {restarted or 'none'}")
        assert counts == {"succeeded": JOBS}
        assert done_at_stop < JOBS  # the outage really hit work in progress
        assert set(calls_per_prompt(own_fake, prompts)) == set(prompts)
        # Every process reconnects by itself. (kombu 5.7 used to kill the orchestrator here:
        # AttributeError restoring unacked messages while closing the lost connection; see
        # shared/broker_transport.py.) `llm-jobs run` and compose would restart it anyway.
        assert restarted == [], [stack.logs(name)[-3000:] for name in restarted]
        # New work flows through the restarted broker too.
        more = submit(stack, stack.new_key(), [f"redis-{tag}-after"])
        assert wait_all(stack, more, timeout=60) == {"succeeded": 1}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
