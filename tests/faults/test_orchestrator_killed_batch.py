"""SIGKILL the orchestrator during a 2,000-row batch: the batch still ends, each row once."""

from __future__ import annotations

import signal
import time
import uuid

import pytest

from orchestrator.retention import remove_stale_temp_files
from shared.storage import is_temp_file
from tests.conftest import StackFactory
from tests.fakellm import FakeLLM
from tests.faults.batch_helpers import (
    assembling,
    assert_every_row_answered_once,
    calls_per_row,
    finished_job,
    job_status,
    longest_quiet,
    output_started,
    start_batch,
    step_counts,
    stored_rows,
    wait_until,
)
from tests.faults.conftest import point_at
from tests.faults.helpers import respawn, separate_beat

ROWS = 2000


@pytest.mark.fault
def test_orchestrator_sigkilled_mid_batch_and_at_assembly(
    make_stack: StackFactory, own_fake: FakeLLM
) -> None:
    # 2,000 rows x 50 ms over 16 slots: several seconds of chunks for the kills to land in.
    own_fake.latency = 0.05
    stack = make_stack(lanes=True, env=point_at(own_fake, LLMJOBS_BATCH_ROW_CONCURRENCY="16"))
    separate_beat(stack)  # a killed orchestrator must not leave an embedded beat behind
    tag = uuid.uuid4().hex[:8]
    key = stack.new_key()
    job_id = start_batch(stack, key, tag, ROWS)

    # Kill 1: chunk steps in flight; their step_done messages pile up or die with the process.
    wait_until(lambda: stored_rows(stack, job_id) >= 300 and own_fake.in_flight > 0, 60,
               "300 stored rows with rows in flight")
    running_at_kill = step_counts(stack, job_id)["running"]
    stack.kill("orchestrator", signal.SIGKILL)
    time.sleep(1.0)  # the workers finish their chunks with nobody listening
    respawn(stack, "orchestrator")

    # Kill 2: during the final assembly (the output workbook being written, not committed).
    output = assembling(stack, job_id)
    wait_until(lambda: output_started(output), 90, "the output assembly to start", every=0.002)
    stack.kill("orchestrator", signal.SIGKILL)
    status_at_kill = job_status(stack, job_id)
    logged_before = len(stack.logs("orchestrator"))
    time.sleep(0.5)
    respawn(stack, "orchestrator")

    job, content = finished_job(stack, key, job_id, timeout=60)
    calls = calls_per_row(own_fake, tag, ROWS)
    duplicates = sum(n - 1 for n in calls.values() if n > 1)
    # The sweep's _advance_stalled re-runs an advance whose step_done died with the process.
    readvanced = '"advanced_jobs": 1' in stack.logs("orchestrator")[logged_before:]
    leftovers = [p.name for p in output.parent.iterdir() if p.name.startswith(".")]
    print(f"\norchestrator SIGKILL x2: {running_at_kill} chunk steps running at kill 1; job "
          f"{status_at_kill} at kill 2, re-advanced by the sweep: {readvanced}; "
          f"duplicate backend calls {duplicates}; longest backend pause "
          f"{longest_quiet(own_fake, tag, ROWS):.1f} s; temporary files left by the killed "
          f"assembly: {leftovers}")
    assert running_at_kill > 0
    assert status_at_kill == "running"  # the second kill hit the final assembly, not after it
    # Its step_done message died unacked with the process (back only after the visibility
    # timeout): the sweep re-ran the advance.
    assert readvanced
    assert job["status"] == "succeeded", job
    assert {k: job["progress"][k] for k in ("total", "done", "failed")} == {
        "total": ROWS, "done": ROWS, "failed": 0}
    assert job["result"]["rows"] == ROWS
    assert_every_row_answered_once(content, tag, ROWS)
    # The workers were never killed: no row was asked twice, none skipped.
    assert set(calls.values()) == {1}, {p: n for p, n in calls.items() if n != 1}
    # What the killed assembly left half-written is removed by the cleanup once stale (an hour
    # by default; here anything not touched in the last second, the job having ended).
    time.sleep(1.1)
    remove_stale_temp_files(stack.workdir / "data", older_than_s=1.0)
    assert [p.name for p in output.parent.iterdir() if is_temp_file(p)] == []
