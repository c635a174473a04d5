"""OpenAI Batch API jobs: validate the JSONL, answer lines in chunk steps, write the result files.

Lines run as "rows" chunk steps on the batch lane (workers/steps/openai_batch_lines.py answers
them); each line's response or error is a RowResult keyed by line number. When the chunks are
done, the output and error JSONL files are written here, in line order.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, object_session

from orchestrator.plans.base import Outcome, PlanContext, PlanError, StepSpec
from shared import storage
from shared.ids import new_id
from shared.jobs.status import JobStatus
from shared.models import Job, RowResult, Step, StoredFile, utcnow
from shared.openai_batch_input import expires_at, raw_lines, validate

EXECUTOR = "openai_chat"
def result_file_ids(job_id: str) -> tuple[str, str]:
    """Output and error file ids, fixed per job so a repeated finalize overwrites, not adds."""
    suffix = job_id.split("_", 1)[1]
    return f"file_{suffix}out", f"file_{suffix}err"


class OpenAIBatchPlanner:
    """Validation at planning; chunk steps of lines; the result files at the end."""

    def first(self, ctx: PlanContext) -> list[StepSpec]:
        job = ctx.job
        if not job.input_file_id:
            raise PlanError("the batch has no input file")
        path = storage.path_for(ctx.settings.data_dir, job.tenant_id, job.input_file_id)
        try:
            checked = validate(path, str(job.input["endpoint"]), ctx.settings)
        except OSError as exc:
            raise PlanError(f"the input file could not be read: {exc}") from exc
        if checked.errors:
            first = checked.errors[0]
            where = f"line {first['line']}: " if first["line"] else ""
            raise PlanError(
                f"the input file has invalid lines; {where}{first['message']}",
                code="invalid_batch_input",
                details={"data": checked.errors},
            )
        # Flushed with the plan's own UPDATE: steps are made on the backend the lines name.
        job.backend = checked.backend or job.backend
        job.model = checked.model
        job.progress_total = len(checked.lines)
        size = max(1, ctx.settings.batch_chunk_rows)
        lines = checked.lines
        return [
            StepSpec(
                "rows",
                {
                    "executor": EXECUTOR,
                    "row_indexes": [line.number for line in lines[i : i + size]],
                    "spans": [[ln.number, ln.offset, ln.length] for ln in lines[i : i + size]],
                    "expires_at": expires_at(job).timestamp(),
                },
                lane="batch",
            )
            for i in range(0, len(lines), size)
        ]

    def advance(self, ctx: PlanContext, stage: int, steps: list[Step]) -> Outcome:
        session = object_session(ctx.job)
        if session is None:
            raise PlanError("the batch job is detached from its session", code="internal")
        job = ctx.job
        expired = utcnow() >= expires_at(job)
        stored = {
            index: (output, error)
            for index, output, error in session.execute(
                select(RowResult.row_index, RowResult.output, RowResult.error)
                .where(RowResult.job_id == job.id)
            )
        }
        reasons = {
            n: (s.error or {}).get("message") or f"the chunk step ended {s.status}"
            for s in steps for n in s.input.get("row_indexes", [])
        }
        path = storage.path_for(ctx.settings.data_dir, job.tenant_id, job.input_file_id or "")
        outputs: list[bytes] = []
        errors: list[bytes] = []
        for number, _, raw in raw_lines(path):
            if number not in reasons:
                continue
            custom_id = json.loads(raw)["custom_id"]
            output, error = stored.get(number, (None, None))
            if output is None and error is None:
                if job.cancel_requested and not expired:
                    continue  # cancelled before it ran: not part of either file
                code = "batch_expired" if expired else "not_answered"
                message = ("this request could not be executed before the completion window "
                           "expired" if expired else f"not answered: {reasons[number]}")
                error = json.dumps({"code": code, "message": message})
            if output is not None:
                outputs.append(_line(custom_id, json.loads(output)))
            else:
                errors.append(_error_line(custom_id, json.loads(error or "{}")))
        out_id, err_id = result_file_ids(job.id)
        output_file_id = _store(session, ctx, out_id, outputs, "batch_output.jsonl")
        error_file_id = _store(session, ctx, err_id, errors, "batch_errors.jsonl")
        _set_progress(session, job, len(outputs), len(errors))
        status = "expired" if expired else "cancelled" if job.cancel_requested else "completed"
        result = {
            "batch_status": status,
            "output_file_id": output_file_id,
            "error_file_id": error_file_id,
            "completed": len(outputs),
            "failed": len(errors),
        }
        if expired:
            return Outcome(
                error={"type": "expired",
                       "message": "the batch did not finish within its 24h completion window; "
                                  "finished requests are in its output file"},
                result=result, output_file_id=output_file_id,
            )
        return Outcome(result=result, output_file_id=output_file_id,
                       status=JobStatus.CANCELLED if job.cancel_requested
                       else JobStatus.SUCCEEDED)


def _line(custom_id: str, body: dict[str, Any]) -> bytes:
    record = {
        "id": new_id("batch_req"),
        "custom_id": custom_id,
        "response": {"status_code": 200, "request_id": new_id("req"), "body": body},
        "error": None,
    }
    return json.dumps(record).encode() + b"\n"


def _error_line(custom_id: str, error: dict[str, Any]) -> bytes:
    # A backend's answer (status + body) is a response; a request never answered is an error.
    response = None
    if "status_code" in error:
        response = {"status_code": error["status_code"], "request_id": new_id("req"),
                    "body": error.get("body")}
        error_field = None
    else:
        error_field = {"code": error.get("code"), "message": error.get("message")}
    record = {"id": new_id("batch_req"), "custom_id": custom_id, "response": response,
              "error": error_field}
    return json.dumps(record).encode() + b"\n"


def _store(
    session: Session, ctx: PlanContext, file_id: str, lines: list[bytes], filename: str
) -> str | None:
    if not lines:
        return None
    job = ctx.job
    path, size, digest = storage.save_upload(ctx.settings.data_dir, job.tenant_id, file_id,
                                             iter(lines))
    row = session.get(StoredFile, file_id) or StoredFile(id=file_id, tenant_id=job.tenant_id)
    row.purpose = "batch_output"
    row.filename = filename
    row.bytes = size
    row.content_type = "application/jsonl"
    row.storage_key = str(Path("files") / job.tenant_id / file_id)
    row.sha256 = digest or hashlib.sha256(b"").hexdigest()
    session.add(row)
    session.flush()
    return file_id


def _set_progress(session: Session, job: Job, done: int, failed: int) -> None:
    prompt, completion = session.execute(
        select(func.coalesce(func.sum(RowResult.prompt_tokens), 0),
               func.coalesce(func.sum(RowResult.completion_tokens), 0))
        .where(RowResult.job_id == job.id)
    ).one()
    job.progress_done, job.progress_failed = done, failed
    job.prompt_tokens, job.completion_tokens = int(prompt), int(completion)
    session.flush()
