"""Batch jobs under faults: a workbook uploaded, its output read back row by row."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from orchestrator.plans.sheets import output_file_id
from shared import storage
from shared.models import Job, RowResult, Step
from tests.fakellm import FakeLLM
from tests.fixtures.stack import Stack
from tests.fixtures.workbooks import feedback_workbook, read_workbook, submit

INSTRUCTIONS = "Summarize {value}"


def comment(tag: str, i: int) -> str:
    """Row i's text, unique to the test, so the fake's requests can be counted per row."""
    return f"row {tag} {i}"


def prompt_of(tag: str, i: int) -> str:
    """What the backend is asked for row i (INSTRUCTIONS filled in)."""
    return f"Summarize {comment(tag, i)}"


def start_batch(stack: Stack, key: str, tag: str, rows: int) -> str:
    """Upload a `rows`-row workbook for batch-summarize on the ollama backend; the job id."""
    data = feedback_workbook(rows, lambda i: comment(tag, i))
    with stack.client(key) as client:
        created = submit(client, data, "feedback.xlsx", column="Comment", backend="ollama",
                         model="fault-model", instructions=INSTRUCTIONS)
    assert created.status_code == 202, created.text
    job_id: str = created.json()["id"]
    return job_id


def stored_rows(stack: Stack, job_id: str) -> int:
    with stack.sessions() as session:
        return session.scalar(
            select(func.count()).select_from(RowResult).where(RowResult.job_id == job_id)
        ) or 0


def step_counts(stack: Stack, job_id: str) -> Counter[str]:
    """The job's chunk steps by status."""
    with stack.sessions() as session:
        rows = session.execute(
            select(Step.status, func.count()).where(Step.job_id == job_id).group_by(Step.status)
        ).all()
    return Counter(dict(rows))


def job_status(stack: Stack, job_id: str) -> str:
    with stack.sessions() as session:
        return str(session.scalar(select(Job.status).where(Job.id == job_id)))


def assembling(stack: Stack, job_id: str) -> Path:
    """Where the job's output appears: a hidden temporary file while it is written, then it."""
    with stack.sessions() as session:
        tenant = str(session.scalar(select(Job.tenant_id).where(Job.id == job_id)))
    return storage.path_for(stack.workdir / "data", tenant, output_file_id(job_id))


def output_started(path: Path) -> bool:
    """The output's temporary file (or the file itself) exists: the assembly is under way."""
    try:
        names = [p.name for p in path.parent.iterdir()]
    except FileNotFoundError:
        return False
    return any(n == path.name or n.startswith(f".{path.name}.") for n in names)


def finished_job(stack: Stack, key: str, job_id: str, timeout: float) -> tuple[dict[str, Any],
                                                                               bytes]:
    """Poll until the job ends; the job and its output file."""
    with stack.client(key) as client:
        job = stack.wait_job(client, job_id, timeout=timeout)
        output = client.get(f"/v1/jobs/{job_id}/output")
    assert output.status_code == 200, output.text
    return job, output.content


def assert_every_row_answered_once(content: bytes, tag: str, rows: int) -> None:
    """The output workbook holds each input row once, in order, with its own answer."""
    ws = read_workbook(content)["Feedback"]
    # No row failed, so no error column is added.
    assert [c.value for c in ws[1]] == ["Id", "Comment", "Region", "Double", "summary"]
    seen = []
    for line in range(2, ws.max_row + 1):
        ident, text, _region, _double, summary = (c.value for c in ws[line][:5])
        assert text == comment(tag, ident), (line, text)
        assert summary == f"echo: {prompt_of(tag, ident)}", (line, summary)
        seen.append(ident)
    assert seen == list(range(rows))


def calls_per_row(fake: FakeLLM, tag: str, rows: int) -> Counter[str]:
    """Backend calls per row prompt (every row's prompt counted, asked or not)."""
    wanted = {prompt_of(tag, i) for i in range(rows)}
    calls = Counter(r.prompt for r in fake.requests if r.prompt in wanted)
    for prompt in wanted:
        calls.setdefault(prompt, 0)
    return calls


def longest_quiet(fake: FakeLLM, tag: str, rows: int) -> float:
    """Longest time between two consecutive backend calls of the batch (work waiting)."""
    wanted = {prompt_of(tag, i) for i in range(rows)}
    times = sorted(r.received_at for r in fake.requests if r.prompt in wanted)
    return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)


def wait_until(predicate: Any, timeout: float, what: str, every: float = 0.02) -> None:
    """Poll fast: the moments the tests aim their kills at are short."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
