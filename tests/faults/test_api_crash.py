"""The API died between its commit and its enqueue: the sweep finds the job and runs it."""

from __future__ import annotations

import uuid

import pytest

from shared.db import session_scope
from shared.ids import new_id
from shared.keys import authenticate
from shared.models import Job
from tests.conftest import StackFactory
from tests.fakellm import FakeLLM
from tests.faults.conftest import point_at
from tests.faults.helpers import calls_per_prompt, wait_all


@pytest.mark.fault
def test_job_committed_without_its_message_is_started_by_the_sweep(
    make_stack: StackFactory, own_fake: FakeLLM
) -> None:
    stack = make_stack(workers=("ollama",), env=point_at(own_fake))
    key = stack.new_key()
    prompt = f"orphan-{uuid.uuid4().hex[:8]}"
    with session_scope(stack.sessions) as session:
        caller = authenticate(session, key)
        assert caller is not None
        job_id = new_id("job")
        # Exactly the row the API writes, and no orchestrator.plan message after it.
        session.add(Job(
            id=job_id, tenant_id=caller.tenant_id, type="chat", status="queued",
            backend="ollama", model="fault-model",
            input={"messages": [{"role": "user", "content": prompt}]},
        ))
    assert wait_all(stack, [job_id], timeout=60) == {"succeeded": 1}
    assert calls_per_prompt(own_fake, [prompt]) == {prompt: 1}
    with stack.client(key) as client:
        job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["result"]["message"]["content"] == f"echo: {prompt}"
    assert '"resent_plans": 1' in stack.logs("orchestrator")
