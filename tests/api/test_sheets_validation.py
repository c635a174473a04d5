"""POST /v1/jobs/batch-summarize refuses bad input at once, naming the field to fix."""

from __future__ import annotations

import io
import uuid
import zipfile
from typing import Any

import pytest
from sqlalchemy import select

from shared.models import Job, StoredFile
from tests.fixtures.stack import Stack
from tests.fixtures.workbooks import feedback_workbook, submit

CSV = b"Comment,Region\ngood,EU\nbad,US\n"


def error_of(response: Any, status: int, param: str | None) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["request_id"].startswith("req_")
    return str(error["message"])


def xlsm_bytes() -> bytes:
    data = io.BytesIO(feedback_workbook(3, str))
    out = io.BytesIO()
    with zipfile.ZipFile(data) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item.filename))
        dst.writestr("xl/vbaProject.bin", b"macro")
    return out.getvalue()


@pytest.mark.parametrize(
    ("content", "filename", "fields", "status", "param", "says"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(200), "photo.xlsx", {}, 400, "file", "not a spreadsheet"),
        (bytes.fromhex("D0CF11E0A1B11AE1") + bytes(500), "old.xls", {}, 400, "file", "password"),
        (b"", "empty.csv", {}, 400, "file", "empty"),
        (CSV, "f.csv", {"column": "Missing"}, 422, "column", '"Comment"'),
        (b"Comment,Region\n", "f.csv", {}, 422, "column", "no data rows"),
        (CSV, "f.csv", {"mode": "classify"}, 422, "labels", "needs labels"),
        (CSV, "f.csv", {"mode": "translate"}, 422, "mode", "mode"),
        (CSV, "f.csv", {"backend": "nope"}, 422, "backend", "configured"),
        (CSV, "f.csv", {"instructions": "Use {row[Nope]}"}, 422, "instructions", "Nope"),
        (CSV, "f.csv", {"run_after": "tonight"}, 422, "run_after", "run_after"),
        (CSV, "f.csv", {"run_after": "2030-01-01T22:00:00"}, 422, "run_after", "time zone"),
        (CSV, "f.csv", {"callback_url": "not a url"}, 422, "callback_url", "http"),
    ],
)
def test_bad_input_is_refused_with_the_field(
    stack: Stack,
    content: bytes,
    filename: str,
    fields: dict[str, str],
    status: int,
    param: str,
    says: str,
) -> None:
    with stack.client(stack.new_key()) as client:
        response = submit(client, content, filename, **{"column": "Comment", **fields})
    assert says in error_of(response, status, param)


def test_macro_workbook_is_refused_clearly(stack: Stack) -> None:
    with stack.client(stack.new_key()) as client:
        response = submit(client, xlsm_bytes(), "macros.xlsm", column="Comment")
    assert ".xlsm" in error_of(response, 422, "file")


def test_missing_column_field_is_named(stack: Stack) -> None:
    with stack.client(stack.new_key()) as client:
        response = client.post("/v1/jobs/batch-summarize", files={"file": ("f.csv", CSV)})
    assert "column" in error_of(response, 422, "column")


def test_too_many_rows_is_413(stack: Stack) -> None:
    rows = b"".join(b"x%d\n" % i for i in range(100_001))
    with stack.client(stack.new_key()) as client:
        response = submit(client, b"text\n" + rows, "big.csv", column="text")
    assert "100,000" in error_of(response, 413, "file")


def test_upload_is_stored_under_ids_never_the_client_name(stack: Stack) -> None:
    model = f"m-{uuid.uuid4().hex[:8]}"
    with stack.client(stack.new_key()) as client:
        created = submit(client, CSV, "../../etc/evil.csv", column="Comment", model=model,
                         labels="a,b")
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
    with stack.sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        stored = session.scalar(select(StoredFile).where(StoredFile.id == job.input_file_id))
    assert stored is not None
    assert stored.purpose == "batch_input"
    assert stored.storage_key == f"{job.tenant_id}/{stored.id}"
    assert stored.bytes == len(CSV)
    assert (stack.workdir / "data" / "files" / job.tenant_id / stored.id).read_bytes() == CSV
    assert job.type == "batch"
    assert job.input["filename"] == "evil.csv"
    assert job.plan["table"]["column"] == "Comment"
