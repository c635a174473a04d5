"""SIGKILL a backend worker mid-step, again and again: no job is lost."""

from __future__ import annotations

import random
import signal
import time
import uuid

import pytest

from tests.conftest import StackFactory
from tests.fakellm import FakeLLM
from tests.faults.conftest import point_at
from tests.faults.helpers import (
    calls_per_prompt,
    full_size,
    longest_rerun_gap,
    respawn,
    statuses,
    step_attempts,
    submit,
    wait_all,
    wait_for,
)

# Scaled down from 500 jobs and 10 kills so the suite stays fast on 2 cores.
JOBS = full_size(150, 500)
KILLS = full_size(4, 10)


@pytest.mark.fault
def test_sigkill_worker_mid_step_repeatedly_loses_no_job(
    make_stack: StackFactory, own_fake: FakeLLM
) -> None:
    own_fake.latency = 0.3
    stack = make_stack(workers=("ollama",), env=point_at(own_fake))
    tag = uuid.uuid4().hex[:8]
    prompts = [f"kill-{tag}-{i}" for i in range(JOBS)]
    ids = submit(stack, stack.new_key(), prompts)
    rng = random.Random(7)
    kills = 0
    while kills < KILLS and statuses(stack, ids)["succeeded"] < JOBS:
        wait_for(lambda: own_fake.in_flight > 0, 30, "a step in flight")
        time.sleep(rng.uniform(0.05, 0.25))
        stack.kill("worker:ollama", signal.SIGKILL)
        kills += 1
        respawn(stack, "worker:ollama")
        time.sleep(1.0)

    counts = wait_all(stack, ids, timeout=120 + JOBS * 0.3)
    calls = calls_per_prompt(own_fake, prompts)
    duplicates = sum(n - 1 for n in calls.values())
    gap = longest_rerun_gap(own_fake, prompts)
    attempts = step_attempts(stack, ids)
    print(f"\nworker SIGKILLs: {kills}; jobs {dict(counts)}; step attempts {dict(attempts)}; "
          f"duplicate backend calls {duplicates}; longest wait before a rerun {gap:.1f} s")
    assert counts == {"succeeded": JOBS}
    assert kills == KILLS
    assert set(calls) == set(prompts)  # every job reached the backend
    assert sum(n for a, n in attempts.items() if a > 1) >= 1  # some step really was killed
    assert duplicates <= kills * 8  # at most the killed steps (worker concurrency 8) ran twice
    assert gap < 60
