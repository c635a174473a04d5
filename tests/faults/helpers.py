"""Submitting many jobs and checking that every one of them ended."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from typing import Any

from sqlalchemy import func, select

from shared.jobs.status import JOB_TERMINAL
from shared.models import Job, Step
from tests.fakellm import FakeLLM
from tests.fixtures.stack import Stack

TERMINAL = sorted(JOB_TERMINAL)


def full_size(suite: int, full: int) -> int:
    """The suite's scaled-down count, or the full one with LLMJOBS_FAULT_FULL=1
    (`make test-fault-full`)."""
    return full if os.environ.get("LLMJOBS_FAULT_FULL") == "1" else suite


def chat_body(prompt: str, model: str = "fault-model") -> dict[str, Any]:
    return {"type": "chat", "backend": "ollama", "model": model,
            "input": {"messages": [{"role": "user", "content": prompt}]}}


def submit(stack: Stack, key: str, prompts: list[str], model: str = "fault-model") -> list[str]:
    """Create one chat job per prompt; returns the job ids."""
    ids: list[str] = []
    with stack.client(key) as client:
        for prompt in prompts:
            response = client.post("/v1/jobs", json=chat_body(prompt, model))
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])
    return ids


def statuses(stack: Stack, ids: list[str]) -> Counter[str]:
    with stack.sessions() as session:
        rows = session.execute(select(Job.status).where(Job.id.in_(ids))).scalars()
        return Counter(rows)


def wait_all(stack: Stack, ids: list[str], timeout: float) -> Counter[str]:
    """Wait until every job ended (read from the database); fail naming the stuck ones."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = statuses(stack, ids)
        if sum(counts[s] for s in TERMINAL) == len(ids):
            return counts
        time.sleep(0.5)
    with stack.sessions() as session:
        stuck = session.execute(
            select(Job.id, Job.status, Job.stage).where(Job.id.in_(ids),
                                                        Job.status.not_in(TERMINAL))
        ).all()
        steps = session.execute(
            select(Step.job_id, Step.status, Step.attempts, Step.lease_expires_at)
            .where(Step.job_id.in_([s[0] for s in stuck[:10]]))
        ).all()
    raise AssertionError(f"{len(stuck)} jobs never ended, e.g. {stuck[:5]}; steps {steps[:10]}")


def step_attempts(stack: Stack, ids: list[str]) -> Counter[int]:
    """How many steps ran once, twice, ..."""
    with stack.sessions() as session:
        rows = session.execute(
            select(Step.attempts, func.count()).where(Step.job_id.in_(ids))
            .group_by(Step.attempts)
        ).all()
    return Counter(dict(rows))


def calls_per_prompt(fake: FakeLLM, prompts: list[str]) -> Counter[str]:
    """Backend calls per prompt (a prompt is unique to its job)."""
    wanted = set(prompts)
    return Counter(r.prompt for r in fake.requests if r.prompt in wanted)


def longest_rerun_gap(fake: FakeLLM, prompts: list[str]) -> float:
    """Longest time between two calls for the same prompt (a killed step waiting to rerun)."""
    seen: dict[str, list[float]] = {}
    wanted = set(prompts)
    for r in fake.requests:
        if r.prompt in wanted:
            seen.setdefault(r.prompt, []).append(r.received_at)
    gaps = [b - a for times in seen.values() for a, b in zip(times, times[1:], strict=False)]
    return max(gaps, default=0.0)


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def respawn(stack: Stack, name: str, timeout: float = 60) -> None:
    """Start a process again under its old command and wait for this run's ' ready.' line."""
    seen = len(stack.logs(name))
    stack.spawn(name, stack.commands[name])
    proc = stack.processes[name]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{name} exited {proc.returncode}: {stack.logs(name)[-2000:]}")
        if " ready." in stack.logs(name)[seen:]:
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} not ready after {timeout} s")


def separate_beat(stack: Stack) -> None:
    """The production layout (`llm-jobs run`, compose): the schedule in its own process.

    Also what a test that SIGKILLs the orchestrator needs: an embedded beat (`-B`) is a child
    process that would outlive its killed parent.
    """
    stack.kill("orchestrator", signal.SIGTERM)
    stack.commands["orchestrator"] = ["orchestrator", "--no-beat"]
    respawn(stack, "orchestrator")
    stack.spawn("beat", ["beat"])
    wait_for(lambda: "beat: Starting" in stack.logs("beat"), 30, "beat to start")
