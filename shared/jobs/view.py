"""The public view of a job: the one shape every answer and webhook payload carries."""

from __future__ import annotations

import datetime as dt
from typing import Any, NotRequired

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

from shared.jobs.status import JobStatus, StepStatus
from shared.models import Job, Step
from shared.settings import Settings

STEPS_SHOWN = 50
# Map steps are the document's chunks (summarize and analyze plans).
CHUNK_KINDS = ("map",)


class ProgressOut(TypedDict):
    """Progress as serialised: chunk counts only for jobs that split their input."""

    total: int
    done: int
    failed: int
    chunks: NotRequired[int]
    chunks_done: NotRequired[int]


class Progress(BaseModel):
    total: int
    done: int
    failed: int
    chunks: int | None = Field(None, description="Chunks of the document (map steps), if split")
    chunks_done: int | None = Field(None, description="Chunks analysed so far")

    @model_serializer(mode="wrap")
    def _omit_unsplit(self, handler: SerializerFunctionWrapHandler) -> ProgressOut:
        # Jobs that never split their input keep the plain {total, done, failed} shape.
        data: ProgressOut = handler(self)
        if self.chunks is None:
            data.pop("chunks", None)
            data.pop("chunks_done", None)
        return data


class StepCount(BaseModel):
    """How many of the plan's steps have this kind and status."""

    kind: str
    status: str
    count: int


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class StepOut(BaseModel):
    id: str
    kind: str
    status: str
    attempts: int
    backend: str
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class JobOut(BaseModel):
    """A job as clients see it."""

    id: str
    type: str
    status: JobStatus
    backend: str
    model: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    progress: Progress
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    output_file_url: str | None
    usage: Usage
    metadata: dict[str, str]
    steps: list[StepOut] = Field(default_factory=list, description="The plan (first 50 steps)")
    steps_total: int = 0
    steps_summary: list[StepCount] = Field(
        default_factory=list, description="The whole plan counted by kind and status"
    )


def job_url(settings: Settings, job_id: str) -> str:
    """The job's one absolute URL (the Location of its creation)."""
    return f"{settings.api_base_url}/v1/jobs/{job_id}"


def step_counts(session: Session, job_id: str) -> list[StepCount]:
    """One GROUP BY over the job's steps: cheap even for plans of thousands of steps."""
    rows = session.execute(
        select(Step.kind, Step.status, func.count())
        .where(Step.job_id == job_id)
        .group_by(Step.kind, Step.status)
        .order_by(Step.kind, Step.status)
    ).all()
    return [StepCount(kind=kind, status=status, count=count) for kind, status, count in rows]


def chunk_progress(counts: list[StepCount]) -> tuple[int | None, int | None]:
    """(chunks, chunks done) of a plan that split its document, else (None, None)."""
    chunks = sum(c.count for c in counts if c.kind in CHUNK_KINDS)
    if not chunks:
        return None, None
    done = sum(
        c.count for c in counts if c.kind in CHUNK_KINDS and c.status == StepStatus.SUCCEEDED
    )
    return chunks, done


def job_view(session: Session, settings: Settings, job: Job, with_steps: bool = True) -> JobOut:
    """The public shape of a job."""
    steps: list[StepOut] = []
    counts: list[StepCount] = []
    chunks: tuple[int | None, int | None] = (None, None)
    if with_steps:
        counts = step_counts(session, job.id)
        chunks = chunk_progress(counts)
        rows = session.scalars(
            select(Step).where(Step.job_id == job.id).order_by(Step.stage, Step.seq)
            .limit(STEPS_SHOWN)
        )
        steps = [
            StepOut(
                id=s.id,
                kind=s.kind,
                status=s.status,
                attempts=s.attempts,
                backend=s.backend,
                started_at=s.started_at,
                finished_at=s.finished_at,
            )
            for s in rows
        ]
    return JobOut(
        id=job.id,
        type=job.type,
        status=JobStatus(job.status),
        backend=job.backend,
        model=job.model,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        progress=Progress(
            total=job.progress_total, done=job.progress_done, failed=job.progress_failed,
            chunks=chunks[0], chunks_done=chunks[1],
        ),
        result=job.result,
        error=job.error,
        output_file_url=f"{job_url(settings, job.id)}/output" if job.output_file_id else None,
        usage=Usage(prompt_tokens=job.prompt_tokens, completion_tokens=job.completion_tokens),
        metadata=job.meta or {},
        steps=steps,
        steps_total=sum(c.count for c in counts),
        steps_summary=counts,
    )
