"""SIGTERM the batch worker with chunks in flight: nothing waits out the visibility timeout."""

from __future__ import annotations

import signal
import time
import uuid

import pytest
from sqlalchemy import select

from shared.models import Step
from tests.conftest import StackFactory
from tests.fakellm import FakeLLM
from tests.faults.batch_helpers import (
    assert_every_row_answered_once,
    calls_per_row,
    finished_job,
    longest_quiet,
    start_batch,
    stored_rows,
    wait_until,
)
from tests.faults.conftest import point_at
from tests.faults.helpers import respawn

ROWS = 1000
WORKER = "worker:ollama:batch"


@pytest.mark.fault
def test_sigterm_batch_worker_mid_chunks(make_stack: StackFactory, own_fake: FakeLLM) -> None:
    own_fake.latency = 0.1  # a chunk of 50 rows takes about a second on its share of the slots
    stack = make_stack(lanes=True, env=point_at(own_fake, LLMJOBS_BATCH_ROW_CONCURRENCY="16"))
    tag = uuid.uuid4().hex[:8]
    key = stack.new_key()
    job_id = start_batch(stack, key, tag, ROWS)
    wait_until(lambda: stored_rows(stack, job_id) >= 200 and own_fake.in_flight >= 4, 60,
               "200 stored rows with rows in flight")
    with stack.sessions() as session:
        running = set(session.scalars(
            select(Step.id).where(Step.job_id == job_id, Step.status == "running")))
    assert running
    stopped_at = time.monotonic()
    stack.kill(WORKER, signal.SIGTERM)  # warm shutdown: the running chunks may finish first
    stop_took = time.monotonic() - stopped_at
    with stack.sessions() as session:
        rows = session.execute(select(Step.id, Step.status).where(Step.id.in_(running))).all()
        after = {row.id: row.status for row in rows}
    rows_at_stop = stored_rows(stack, job_id)
    # Finished, or back in the queue at once; never left "running" for a lapsed lease to find.
    assert set(after.values()) <= {"succeeded", "queued"}, after

    restarted_at = time.monotonic()
    respawn(stack, WORKER)
    job, content = finished_job(stack, key, job_id, timeout=90)
    rest_took = time.monotonic() - restarted_at
    calls = calls_per_row(own_fake, tag, ROWS)
    duplicates = sum(n - 1 for n in calls.values() if n > 1)
    quiet = longest_quiet(own_fake, tag, ROWS)
    print(f"\nbatch worker SIGTERM: {len(running)} chunk steps running, afterwards "
          f"{sorted(after.values())}; warm shutdown took {stop_took:.1f} s with {rows_at_stop}/"
          f"{ROWS} rows stored; the rest took {rest_took:.1f} s after the restart; longest "
          f"backend pause {quiet:.1f} s; duplicate backend calls {duplicates}")
    assert job["status"] == "succeeded", job
    assert {k: job["progress"][k] for k in ("total", "done", "failed")} == {
        "total": ROWS, "done": ROWS, "failed": 0}
    assert rows_at_stop < ROWS  # the shutdown really hit the batch mid-way
    assert_every_row_answered_once(content, tag, ROWS)
    assert min(calls.values()) == 1
    assert duplicates == 0  # a warm shutdown finishes its rows: none is asked again
    # The broker's visibility timeout is an hour and the step lease 6 s: the longest pause
    # (shutdown and restart included) stays far below both the hour and a minute.
    assert quiet < 60
