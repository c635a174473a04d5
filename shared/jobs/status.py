"""Job and step statuses: the exact strings stored in the database."""

from __future__ import annotations

import enum


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepStatus(enum.StrEnum):
    # A planned step whose stage has not started yet.
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


JOB_TERMINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
)
JOB_ACTIVE: frozenset[JobStatus] = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})
STEP_TERMINAL: frozenset[StepStatus] = frozenset(
    {StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.CANCELLED}
)
STEP_ACTIVE: frozenset[StepStatus] = frozenset(
    {StepStatus.PENDING, StepStatus.QUEUED, StepStatus.RUNNING}
)


def job_is_terminal(status: str) -> bool:
    """True once a job can no longer change."""
    return status in JOB_TERMINAL


def step_is_terminal(status: str) -> bool:
    """True once a step can no longer change."""
    return status in STEP_TERMINAL
