"""What a job type's planner looks like: first steps, then what follows each finished stage."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from shared.backends import BackendConfig
from shared.jobs.plan import StepSpec as StepSpec
from shared.jobs.plan import first_failure as first_failure
from shared.jobs.plan import llm_input as llm_input
from shared.jobs.status import JobStatus
from shared.models import Job, Step
from shared.settings import Settings


class PlanError(ValueError):
    """The job cannot be planned (bad or unreadable input); fails the job with this message."""

    def __init__(
        self, message: str, code: str = "invalid_input", details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details or {}  # extra fields of the job's error (e.g. per-line errors)


@dataclass(frozen=True)
class WrittenFile:
    """An output file written outside the orchestrator's transaction, or why it could not be."""

    file_id: str
    bytes: int = 0
    sha256: str = ""
    error: str | None = None


@dataclass(frozen=True)
class FileWrite:
    """An output file a finished stage needs before the job can end.

    It is written after the orchestrator's transaction commits (on SQLite a transaction holds
    the database's write lock, and a workbook of many rows takes a while to write); a second,
    short transaction then records it and ends the job. Killed in between, the message is
    delivered again (or the sweep finds the stalled job) and the file is written again.
    """

    file_id: str
    path: Path
    write: Callable[[], WrittenFile]


@dataclass
class Outcome:
    """After a stage: more steps, or the job's result, or its error."""

    steps: list[StepSpec] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    output_file_id: str | None = None
    file_write: FileWrite | None = None  # the stage ends once this file is written
    status: JobStatus = JobStatus.SUCCEEDED  # or CANCELLED: stopped early, kept its output


@dataclass
class PlanContext:
    """What a planner may look at."""

    job: Job
    backend: BackendConfig | None
    settings: Settings
    # Output files written since the last transaction, by file id.
    written: dict[str, WrittenFile] = field(default_factory=dict)

    @property
    def context_tokens(self) -> int:
        return self.backend.context_tokens if self.backend else self.settings.context_tokens


class Planner(Protocol):
    """Plans one job type as stages of steps."""

    def first(self, ctx: PlanContext) -> list[StepSpec]: ...

    def advance(self, ctx: PlanContext, stage: int, steps: list[Step]) -> Outcome: ...
