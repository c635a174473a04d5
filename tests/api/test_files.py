"""/v1/files over HTTP: OpenAI shapes, sniffed types, safe storage paths, tenant isolation."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import openai

from tests.fixtures.stack import Stack
from tests.shared.test_extract import make_long_pdf, make_png

FILE_FIELDS = {"id", "object", "bytes", "created_at", "filename", "purpose", "status"}


def upload(
    client: httpx.Client, name: str, data: bytes, purpose: str = "analysis"
) -> httpx.Response:
    return client.post("/v1/files", files={"file": (name, data)}, data={"purpose": purpose})


def stored_files(stack: Stack) -> list[Path]:
    root = stack.workdir / "data"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_upload_read_download_list_delete(stack: Stack) -> None:
    data = b"Quarterly report.\n\nRevenue grew by 12 percent.\n"
    with stack.client(stack.new_key()) as client:
        before = int(time.time())
        created = upload(client, "report.txt", data)
        assert created.status_code == 200, created.text
        obj = created.json()
        assert set(obj) == FILE_FIELDS
        assert obj["id"].startswith("file_")
        assert obj["object"] == "file"
        assert obj["bytes"] == len(data)
        assert obj["filename"] == "report.txt"
        assert obj["purpose"] == "analysis"
        assert obj["status"] == "processed"
        assert before - 1 <= obj["created_at"] <= time.time() + 1

        assert client.get(f"/v1/files/{obj['id']}").json() == obj
        content = client.get(f"/v1/files/{obj['id']}/content")
        assert content.status_code == 200
        assert content.content == data
        assert content.headers["content-type"].startswith("text/plain")

        listed = client.get("/v1/files").json()
        assert listed["object"] == "list"
        assert [f["id"] for f in listed["data"]] == [obj["id"]]
        assert listed["has_more"] is False

        deleted = client.delete(f"/v1/files/{obj['id']}")
        assert deleted.status_code == 200
        assert deleted.json() == {"id": obj["id"], "object": "file", "deleted": True}
        gone = client.get(f"/v1/files/{obj['id']}")
        assert gone.status_code == 404
        assert gone.json()["error"]["type"] == "not_found"
        assert client.delete(f"/v1/files/{obj['id']}").status_code == 404
    assert not any(obj["id"] in str(p) for p in stored_files(stack))


def test_content_type_is_sniffed_not_taken_from_the_name(stack: Stack, tmp_path: Path) -> None:
    pdf = make_long_pdf(tmp_path / "doc.pdf", pages=2).read_bytes()
    png = make_png(tmp_path / "image.png").read_bytes()
    with stack.client(stack.new_key()) as client:
        as_bin = upload(client, "scan.bin", pdf).json()
        fake_pdf = upload(client, "photo.pdf", png).json()
        pdf_content = client.get(f"/v1/files/{as_bin['id']}/content")
        png_content = client.get(f"/v1/files/{fake_pdf['id']}/content")
    assert pdf_content.headers["content-type"] == "application/pdf"
    assert pdf_content.content == pdf
    assert png_content.headers["content-type"] == "image/png"
    assert 'filename="photo.pdf"' in png_content.headers["content-disposition"]


def test_stored_path_never_uses_the_client_name(stack: Stack) -> None:
    with stack.client(stack.new_key()) as client:
        obj = upload(client, "../../../etc/evil name.txt", b"hello").json()
    assert obj["filename"] == "evil name.txt"
    paths = [p for p in stored_files(stack) if p.name == obj["id"]]
    assert len(paths) == 1
    assert paths[0].parent.parent == stack.workdir / "data" / "files"
    assert paths[0].read_bytes() == b"hello"
    assert not any("evil" in str(p) for p in stored_files(stack))


def test_another_tenant_gets_404_everywhere(stack: Stack) -> None:
    with stack.client(stack.new_key()) as owner, stack.client(stack.new_key()) as other:
        obj = upload(owner, "mine.txt", b"private text").json()
        for response in (
            other.get(f"/v1/files/{obj['id']}"),
            other.get(f"/v1/files/{obj['id']}/content"),
            other.delete(f"/v1/files/{obj['id']}"),
        ):
            assert response.status_code == 404, response.text
            assert response.json()["error"]["type"] == "not_found"
        assert other.get("/v1/files").json()["data"] == []
        job = other.post(
            "/v1/jobs",
            json={"type": "analyze",
                  "input": {"document": {"file_id": obj["id"]}, "analysis": "summary"}},
        )
        assert job.status_code == 422
        assert job.json()["error"]["param"] == "input.document.file_id"
        assert owner.get(f"/v1/files/{obj['id']}/content").content == b"private text"


def test_bad_uploads_say_what_to_fix(stack: Stack, tmp_path: Path) -> None:
    png = make_png(tmp_path / "x.png").read_bytes()
    with stack.client(stack.new_key()) as client:
        wrong_purpose = upload(client, "a.txt", b"text", purpose="fine-tune")
        assert wrong_purpose.status_code == 422
        assert wrong_purpose.json()["error"]["param"] == "purpose"
        no_file = client.post("/v1/files", data={"purpose": "analysis"})
        assert no_file.status_code == 422
        assert no_file.json()["error"]["param"] == "file"
        empty = upload(client, "empty.txt", b"")
        assert empty.status_code == 422
        assert "empty" in empty.json()["error"]["message"]
        binary_batch = upload(client, "input.jsonl", png, purpose="batch")
        assert binary_batch.status_code == 422
        assert "JSONL" in binary_batch.json()["error"]["message"]
        batch = upload(client, "input.jsonl", b'{"custom_id": "1"}\n', purpose="batch").json()
        as_document = client.post(
            "/v1/jobs",
            json={"type": "analyze",
                  "input": {"document": {"file_id": batch["id"]}, "analysis": "summary"}},
        )
        assert as_document.status_code == 422
        assert "purpose 'analysis'" in as_document.json()["error"]["message"]
        assert client.post("/v1/files").status_code == 422


def test_upload_over_the_limit_is_413(make_stack: Callable[..., Stack]) -> None:
    small = make_stack(env={"LLMJOBS_MAX_UPLOAD_BYTES": "10000"})
    with small.client(small.new_key()) as client:
        too_big = upload(client, "big.txt", b"x" * 20000)
        assert too_big.status_code == 413
        assert too_big.json()["error"]["type"] == "payload_too_large"
        assert upload(client, "ok.txt", b"x" * 5000).status_code == 200
    assert len(stored_files(small)) == 1


def test_openai_sdk_uses_the_same_endpoint(stack: Stack, tmp_path: Path) -> None:
    key = stack.new_key()
    client = openai.OpenAI(api_key=key, base_url=f"{stack.api_url}/v1", max_retries=0)
    lines = b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n'
    path = tmp_path / "batch.jsonl"
    path.write_bytes(lines)
    with path.open("rb") as fh:
        created = client.files.create(file=fh, purpose="batch")
    assert created.id.startswith("file_")
    assert created.object == "file"
    assert created.bytes == len(lines)
    assert created.filename == "batch.jsonl"
    assert created.purpose == "batch"
    assert created.status == "processed"
    assert client.files.retrieve(created.id).id == created.id
    assert client.files.content(created.id).content == lines
    assert [f.id for f in client.files.list(purpose="batch")] == [created.id]
    deleted = client.files.delete(created.id)
    assert deleted.deleted is True
    assert deleted.id == created.id
