"""SIGTERM a worker with steps in flight: they finish first; nothing waits for a timeout."""

from __future__ import annotations

import signal
import time
import uuid

import pytest
from sqlalchemy import select

from shared.models import Step
from tests.conftest import StackFactory
from tests.fakellm import FakeLLM
from tests.faults.conftest import point_at
from tests.faults.helpers import calls_per_prompt, respawn, submit, wait_all, wait_for

JOBS = 20


@pytest.mark.fault
def test_sigterm_lets_in_flight_steps_finish(make_stack: StackFactory, own_fake: FakeLLM) -> None:
    own_fake.latency = 2.0
    stack = make_stack(workers=("ollama",), env=point_at(own_fake))
    tag = uuid.uuid4().hex[:8]
    prompts = [f"term-{tag}-{i}" for i in range(JOBS)]
    ids = submit(stack, stack.new_key(), prompts)
    wait_for(lambda: own_fake.in_flight >= 4, 30, "steps in flight")
    with stack.sessions() as session:
        running = set(session.scalars(
            select(Step.id).where(Step.job_id.in_(ids), Step.status == "running")
        ))
    assert running
    stopped_at = time.monotonic()
    stack.kill("worker:ollama", signal.SIGTERM)  # warm shutdown: waits for running tasks
    stop_took = time.monotonic() - stopped_at
    with stack.sessions() as session:
        rows = session.execute(
            select(Step.id, Step.status).where(Step.id.in_(running))
        ).all()
        after = {row.id: row.status for row in rows}
    assert set(after.values()) == {"succeeded"}, after  # finished, not abandoned

    restarted_at = time.monotonic()
    respawn(stack, "worker:ollama")
    counts = wait_all(stack, ids, timeout=60)
    rest_took = time.monotonic() - restarted_at
    calls = calls_per_prompt(own_fake, prompts)
    print(f"\nSIGTERM: {len(running)} steps in flight finished during a {stop_took:.1f} s warm "
          f"shutdown; the other jobs ended {rest_took:.1f} s after the restart; {dict(counts)}")
    assert counts == {"succeeded": JOBS}
    assert max(calls.values()) == 1  # no step ran twice
    # The visibility timeout is an hour and the resend delay 5 s: a minute proves neither
    # was waited out.
    assert rest_took < 60
