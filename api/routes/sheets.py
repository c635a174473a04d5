"""/v1/jobs/batch-summarize (a workbook in, one answer per row) and /v1/jobs/{id}/output."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from fastapi.responses import FileResponse

from api.deps import JobsRead, JobsWrite, SessionDep, SettingsDep, commit_in_new_slot, leave_db
from api.schemas.common import error_responses
from api.schemas.jobs import JobOut
from api.services import sheets as service
from api.urls import polling_headers
from shared import storage
from shared.jobs.view import job_view

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


_OUTPUT_TYPES: dict[str, object] = {
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {},
    "text/csv": {},
    "application/x-ndjson": {},
}


@router.post(
    "/batch-summarize",
    status_code=202,
    response_model=JobOut,
    summary="Summarize spreadsheet rows",
    description="Upload a .xlsx, .csv or .jsonl file; every non-empty cell of `column` is "
    "summarized (or classified) and the same file comes back with an answer column. Answers "
    "at once with 202, a Location to poll and Retry-After; the file is checked first "
    "(400/413/422 naming the field).",
    operation_id="BatchSummarize",
    responses=error_responses(400, 401, 413, 422, 429),
)
async def batch_summarize(
    request: Request,
    response: Response,
    file: Annotated[UploadFile, File(description=".xlsx, .csv or .jsonl")],
    column: Annotated[str, Form(min_length=1, max_length=255,
                                description="Header name or column letter of the input")],
    caller: JobsWrite,
    session: SessionDep,
    settings: SettingsDep,
    sheet: Annotated[str | None, Form(max_length=255, description="Default: the first")] = None,
    instructions: Annotated[
        str | None,
        Form(max_length=4000, description="Per-row prompt; {value} and {row[Header]} are filled "
             "in, otherwise the cell is appended"),
    ] = None,
    output_column: Annotated[
        str | None, Form(max_length=255, description="Default: summary (classify: label)")
    ] = None,
    mode: Annotated[Literal["summarize", "classify"], Form()] = "summarize",
    labels: Annotated[
        list[str] | None,
        Form(description="classify: labels, comma-separated, repeated or a JSON array"),
    ] = None,
    backend: Annotated[str | None, Form(description="Default: the configured one")] = None,
    model: Annotated[str | None, Form(max_length=200)] = None,
    callback_url: Annotated[str | None, Form(max_length=2000)] = None,
    run_after: Annotated[
        dt.datetime | None, Form(description="RFC 3339 time before which the batch waits")
    ] = None,
    temperature: Annotated[float | None, Form(ge=0, le=2)] = None,
    max_tokens: Annotated[int | None, Form(ge=1, le=32768)] = None,
) -> JobOut:
    req = service.SheetsRequest(
        filename=file.filename or "",
        column=column,
        sheet=sheet or None,
        instructions=instructions or None,
        output_column=output_column or None,
        mode=mode,
        labels=service.parse_labels(labels),
        backend=backend or None,
        model=model or None,
        callback_url=callback_url or None,
        run_after=run_after,
        temperature=temperature,
        max_tokens=max_tokens,
    )
    # Parsing a large or hostile upload takes a while: it runs in a thread, holding neither
    # a transaction nor a database slot, so other callers are not kept waiting.
    await leave_db(session)
    checked = await anyio.to_thread.run_sync(
        service.check_upload, settings, caller.tenant_id, file.file, req
    )

    def record() -> JobOut:
        job = service.record_sheets_job(session, settings, caller.tenant_id, checked, req)
        return job_view(session, settings, job)

    out = await commit_in_new_slot(
        request, session, record,
        lambda: storage.delete(settings.data_dir, caller.tenant_id, checked.file_id),
    )
    polling_headers(response, settings, out.id)
    return out


@router.get(
    "/{job_id}/output",
    response_class=FileResponse,
    summary="Download a batch job's output",
    description="The input file with the answer column (and an error column when rows failed) "
    "added, in the input's format. 404 until the job has succeeded.",
    operation_id="GetJobOutput",
    responses={200: {"content": _OUTPUT_TYPES, "description": "The output file"},
               **error_responses(401, 404)},
)
def get_output(
    job_id: str, caller: JobsRead, session: SessionDep, settings: SettingsDep
) -> FileResponse:
    out = service.output_file(session, settings, caller.tenant_id, job_id)
    return FileResponse(out.path, media_type=out.media_type, filename=out.filename)
