"""Sheets jobs (batch-summarize): check and store the upload, queue the job, serve its output."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import BinaryIO

from pydantic import HttpUrl, TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.services.jobs import get_job, route, store_job
from shared import audit, storage
from shared.ids import new_id
from shared.jobs.status import JobStatus
from shared.models import Job, StoredFile, utcnow
from shared.settings import Settings
from shared.spreadsheets import (
    SpreadsheetError,
    TableSpec,
    check_template,
    inspect_table,
    media_type,
)

MAX_LABELS = 50
_URL = TypeAdapter(HttpUrl)
_CHARSETS = {"utf-8": "utf-8", "utf-8-sig": "utf-8", "cp1252": "windows-1252"}


@dataclass
class SheetsRequest:
    """The form fields of POST /v1/jobs/batch-summarize, as typed values."""

    filename: str
    column: str
    sheet: str | None
    instructions: str | None
    output_column: str | None
    mode: str
    labels: list[str] | None
    backend: str | None
    model: str | None
    callback_url: str | None
    run_after: dt.datetime | None
    temperature: float | None
    max_tokens: int | None


def parse_labels(raw: list[str] | None) -> list[str] | None:
    """Labels given as repeated fields, comma-separated text or a JSON array."""
    if not raw:
        return None
    labels: list[str] = []
    for item in raw:
        text = item.strip()
        if text.startswith("["):
            try:
                values = json.loads(text)
            except ValueError:
                raise ApiError(422, "labels: not a valid JSON array", param="labels") from None
            labels += [str(v).strip() for v in values if str(v).strip()]
        else:
            labels += [part.strip() for part in text.split(",") if part.strip()]
    return list(dict.fromkeys(labels)) or None


def _check(settings: Settings, req: SheetsRequest) -> None:
    if req.mode == "classify":
        if not req.labels:
            raise ApiError(422, 'classify mode needs labels, e.g. "positive,neutral,negative"',
                           param="labels")
        if len(req.labels) > MAX_LABELS or any(len(label) > 100 for label in req.labels):
            raise ApiError(422, f"at most {MAX_LABELS} labels of at most 100 characters",
                           param="labels")
    if req.callback_url is not None:
        try:
            _URL.validate_python(req.callback_url)
        except ValidationError:
            raise ApiError(422, "callback_url must be an absolute http(s) URL",
                           param="callback_url") from None
    if req.run_after is not None:
        if req.run_after.tzinfo is None:
            raise ApiError(422, "run_after needs a time zone, e.g. 2025-06-01T22:00:00Z",
                           param="run_after")
        latest = utcnow() + dt.timedelta(seconds=settings.job_max_age_s / 2)
        if req.run_after > latest:
            raise ApiError(422, f"run_after may be at most {settings.job_max_age_s / 7200:g} "
                           "hours ahead (jobs expire after LLMJOBS_JOB_MAX_AGE_S)",
                           param="run_after")


def _inspect(settings: Settings, path: Path, req: SheetsRequest) -> TableSpec:
    spec = inspect_table(
        path,
        req.filename,
        req.column,
        req.sheet,
        settings.batch_max_rows,
        max_sheet_rows=settings.sheet_max_rows,
        max_columns=settings.sheet_max_columns,
        max_cell_chars=settings.sheet_max_cell_chars,
    )
    if req.instructions:
        check_template(req.instructions, spec.headers)
    return spec


@dataclass(frozen=True)
class CheckedUpload:
    """A stored sheets upload that passed validation, not yet recorded in the database."""

    file_id: str
    size: int
    digest: str
    spec: TableSpec
    backend: str
    model: str


def check_upload(
    settings: Settings, tenant_id: str, upload: BinaryIO, req: SheetsRequest
) -> CheckedUpload:
    """Store the upload and validate it (400/413/422 naming the field); no database needed."""
    chosen = route(settings, req.backend, req.model, with_fallback=False)
    backend, model = chosen.backend, chosen.model
    _check(settings, req)
    file_id = new_id("file")
    try:
        path, size, digest = storage.save_upload(
            settings.data_dir, tenant_id, file_id, upload, max_bytes=settings.max_upload_bytes
        )
    except storage.UploadTooLarge as exc:
        raise ApiError(413, str(exc), param="file") from None
    try:
        spec = _inspect(settings, path, req)
    except SpreadsheetError as exc:
        storage.delete(settings.data_dir, tenant_id, file_id)
        raise ApiError(exc.status, exc.message, param=exc.param) from None
    return CheckedUpload(file_id, size, digest, spec, backend, model)


def record_sheets_job(
    session: Session, settings: Settings, tenant_id: str, checked: CheckedUpload,
    req: SheetsRequest,
) -> Job:
    """Record a checked upload and its sheets job (quota, audit), queued once committed."""
    file_id, size, digest, spec = checked.file_id, checked.size, checked.digest, checked.spec
    backend, model = checked.backend, checked.model
    session.add(
        StoredFile(
            id=file_id,
            tenant_id=tenant_id,
            purpose="batch_input",
            filename=req.filename[-255:] or f"upload.{spec.format}",
            bytes=size,
            content_type=media_type(spec.format),
            storage_key=f"{tenant_id}/{file_id}",
            sha256=digest,
        )
    )
    options = {"temperature": req.temperature, "max_tokens": req.max_tokens}
    job = Job(
        id=new_id("job"),
        tenant_id=tenant_id,
        type="batch",
        status=JobStatus.QUEUED,
        backend=backend,
        model=model,
        input={
            "filename": PurePath(req.filename).name[-200:],
            "column": spec.column,
            "sheet": spec.sheet,
            "instructions": req.instructions,
            "mode": req.mode,
            "labels": req.labels,
            "output_column": req.output_column
            or ("label" if req.mode == "classify" else "summary"),
        },
        options={k: v for k, v in options.items() if v is not None},
        meta={},
        plan={"table": spec.to_dict()},
        callback_url=req.callback_url,
        progress_total=spec.total_rows,
        input_file_id=file_id,
        run_after=req.run_after,
    )
    store_job(session, settings, job)
    audit.record(session, "file.create", "file", file_id)
    return job


@dataclass(frozen=True)
class OutputFile:
    """A batch job's result file, ready to send."""

    path: Path
    media_type: str
    filename: str


def output_file(session: Session, settings: Settings, tenant_id: str, job_id: str) -> OutputFile:
    """The tenant's job's output file; 404 while it does not exist."""
    job = get_job(session, tenant_id, job_id)
    if not job.output_file_id:
        raise ApiError(404, f"job {job_id} has no output file (status {job.status}); only a "
                       "batch job that succeeded has one", param="id")
    row = session.scalar(
        select(StoredFile).where(StoredFile.id == job.output_file_id,
                                 StoredFile.tenant_id == tenant_id)
    )
    path = storage.path_for(settings.data_dir, tenant_id, job.output_file_id)
    if row is None or not path.exists():
        raise ApiError(404, f"the output file of job {job_id} is gone", param="id")
    content_type = row.content_type
    encoding = (job.plan.get("table") or {}).get("encoding")
    if content_type.startswith("text/") and encoding:
        content_type += f"; charset={_CHARSETS.get(encoding, encoding)}"
    return OutputFile(path, content_type, row.filename)
