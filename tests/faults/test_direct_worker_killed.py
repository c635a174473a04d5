"""SIGKILL the worker running a one-step job's call: the sweep re-sends it, the job ends once."""

from __future__ import annotations

import signal
import time
import uuid

import pytest
from sqlalchemy import select

from shared.models import Job, Step
from shared.models.webhooks import WebhookDelivery
from tests.conftest import StackFactory
from tests.fakellm import FakeLLM, Reply, Slow
from tests.faults.conftest import point_at
from tests.faults.helpers import chat_body, respawn, wait_for


@pytest.mark.fault
def test_sigkill_during_a_direct_call_reruns_it_and_ends_the_job_once(
    make_stack: StackFactory, own_fake: FakeLLM
) -> None:
    # No webhooks worker: the delivery row is what shows how many events the end queued.
    stack = make_stack(workers=("ollama",),
                       env=point_at(own_fake, LLMJOBS_WEBHOOK_ALLOW_HOSTS="127.0.0.1"))
    name = f"direct-{uuid.uuid4().hex[:8]}"
    own_fake.script(name, Slow(60, "never delivered"), Reply("the answer"))
    body = {**chat_body("kill me", name), "callback_url": "http://127.0.0.1:9/end"}
    with stack.client(stack.new_key()) as client:
        created = client.post("/v1/jobs", json=body)
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    assert created.json()["status"] == "running"
    wait_for(lambda: own_fake.in_flight > 0, 30, "the call in flight")
    stack.kill("worker:ollama", signal.SIGKILL)
    respawn(stack, "worker:ollama")

    # Every read until the end: a stored answer never sits next to a running job.
    seen: set[tuple[str, str]] = set()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with stack.sessions() as session:
            row = session.execute(
                select(Job.status, Step.status).join(Step, Step.job_id == Job.id)
                .where(Job.id == job_id)
            ).one()
        seen.add((row[0], row[1]))
        if row[0] == "succeeded":
            break
        time.sleep(0.05)
    assert ("running", "succeeded") not in seen, seen
    assert ("succeeded", "succeeded") in seen, seen

    with stack.sessions() as session:
        job = session.get(Job, job_id)
        steps = session.scalars(select(Step).where(Step.job_id == job_id)).all()
        events = session.scalars(select(WebhookDelivery.event_type).where(
            WebhookDelivery.job_id == job_id)).all()
    assert job is not None
    assert job.result == {"message": {"role": "assistant", "content": "the answer"},
                          "finish_reason": "stop"}
    assert len(steps) == 1
    assert steps[0].attempts == 2  # the killed run and the one the sweep re-sent
    assert steps[0].result is not None
    assert steps[0].result["content"] == "the answer"
    assert events == ["job.succeeded"]
    # One call died with its worker, one answered: nothing was answered and paid twice.
    assert len(own_fake.requests_for(name)) == 2
    assert "orchestrator.step_done" not in stack.logs("orchestrator")
    assert "requeued_steps" in stack.logs("orchestrator")
