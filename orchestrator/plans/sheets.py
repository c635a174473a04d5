"""Sheets jobs: rows split into chunk steps, then the output workbook assembled locally."""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePath
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, object_session

from orchestrator.plans.base import (
    FileWrite,
    Outcome,
    PlanContext,
    PlanError,
    StepSpec,
    WrittenFile,
)
from shared import storage
from shared.models import RowResult, Step, StoredFile
from shared.spreadsheets import SpreadsheetError, TableSpec, iter_rows, media_type, write_output


def table_spec(ctx: PlanContext) -> TableSpec:
    """The inspected table stored on the job at submission."""
    return TableSpec(**ctx.job.plan["table"])


def input_path(ctx: PlanContext) -> Path:
    """Where the job's uploaded file is stored."""
    if not ctx.job.input_file_id:
        raise PlanError("the batch job has no input file")
    return storage.path_for(ctx.settings.data_dir, ctx.job.tenant_id, ctx.job.input_file_id)


def output_file_id(job_id: str) -> str:
    """One output file per job, named after it, so a repeated assembly overwrites, not adds."""
    return "file_" + job_id.split("_", 1)[1]


class SheetsPlanner:
    """Rows in chunk steps on the batch lane; the output written without another model call."""

    def first(self, ctx: PlanContext) -> list[StepSpec]:
        spec = table_spec(ctx)
        try:
            indexes = [row.index for row in iter_rows(input_path(ctx), spec)]
        except (OSError, SpreadsheetError, ValueError) as exc:
            raise PlanError(f"the input file could not be read: {exc}") from exc
        if not indexes:
            raise PlanError("the input file has no rows to answer")
        ctx.job.progress_total = len(indexes)
        size = max(1, ctx.settings.batch_chunk_rows)
        common: dict[str, Any] = {
            "instructions": ctx.job.input.get("instructions"),
            "mode": ctx.job.input.get("mode", "summarize"),
            "labels": ctx.job.input.get("labels"),
            "options": ctx.job.options,
        }
        return [
            StepSpec("rows", {"row_indexes": indexes[i : i + size], **common}, lane="batch")
            for i in range(0, len(indexes), size)
        ]

    def advance(self, ctx: PlanContext, stage: int, steps: list[Step]) -> Outcome:
        session = object_session(ctx.job)
        if session is None:
            raise PlanError("the batch job is detached from its session", code="internal")
        results = _results(session, ctx.job.id, steps)
        total = len(results)
        failed = sum(1 for _, error in results.values() if error is not None)
        prompt, completion = session.execute(
            select(
                func.coalesce(func.sum(RowResult.prompt_tokens), 0),
                func.coalesce(func.sum(RowResult.completion_tokens), 0),
            ).where(RowResult.job_id == ctx.job.id)
        ).one()
        job = ctx.job
        job.progress_total, job.progress_done, job.progress_failed = total, total - failed, failed
        job.prompt_tokens, job.completion_tokens = int(prompt), int(completion)
        session.flush()
        if total and failed == total:
            first = next(error for _, error in results.values() if error is not None)
            return Outcome(
                error={
                    "type": "all_rows_failed",
                    "message": f"every one of the {total} rows failed; the first error: {first}",
                }
            )
        file_id = output_file_id(ctx.job.id)
        written = ctx.written.get(file_id)
        if written is None:
            return Outcome(file_write=_file_write(ctx, file_id, results))
        if written.error is not None:
            raise PlanError(f"the output file could not be written: {written.error}",
                            code="internal")
        _record(session, ctx, written)
        spec = table_spec(ctx)
        return Outcome(
            result={
                "rows": total,
                "failed": failed,
                "empty_rows": spec.empty_rows,
                "output_file_id": file_id,
            },
            output_file_id=file_id,
        )


def _results(
    session: Session, job_id: str, steps: list[Step]
) -> dict[int, tuple[str | None, str | None]]:
    stored = {
        index: (output, error)
        for index, output, error in session.execute(
            select(RowResult.row_index, RowResult.output, RowResult.error).where(
                RowResult.job_id == job_id
            )
        )
    }
    results: dict[int, tuple[str | None, str | None]] = {}
    for step in steps:
        # A chunk that failed as a whole (worker lost too often) leaves its rows unanswered.
        reason = (step.error or {}).get("message") or f"the chunk step ended {step.status}"
        for index in step.input.get("row_indexes", []):
            results[index] = stored.get(index, (None, f"not answered: {reason}"))
    return results


def _file_write(
    ctx: PlanContext, file_id: str, results: dict[int, tuple[str | None, str | None]]
) -> FileWrite:
    """The output workbook, to write once the orchestrator's transaction has committed."""
    job = ctx.job
    src = input_path(ctx)
    dst = storage.path_for(ctx.settings.data_dir, job.tenant_id, file_id)
    spec = table_spec(ctx)
    output_column = job.input.get("output_column") or "summary"

    def write() -> WrittenFile:
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            # Written to a temporary file and renamed: the path holds a whole workbook or none.
            write_output(src, dst, spec, results, output_column=output_column)
            data = dst.read_bytes()
        except (OSError, SpreadsheetError, ValueError) as exc:
            return WrittenFile(file_id, error=str(exc))
        return WrittenFile(file_id, len(data), hashlib.sha256(data).hexdigest())

    return FileWrite(file_id, dst, write)


def _record(session: Session, ctx: PlanContext, written: WrittenFile) -> None:
    job = ctx.job
    spec = table_spec(ctx)
    filename = job.input.get("filename") or f"batch.{spec.format}"
    name = PurePath(filename)
    row = session.get(StoredFile, written.file_id) or StoredFile(
        id=written.file_id, tenant_id=job.tenant_id
    )
    row.purpose = "batch_output"
    row.filename = f"{name.stem}-results{name.suffix or '.' + spec.format}"
    row.bytes = written.bytes
    row.content_type = media_type(spec.format)
    row.storage_key = f"{job.tenant_id}/{written.file_id}"
    row.sha256 = written.sha256
    session.add(row)
    session.flush()
