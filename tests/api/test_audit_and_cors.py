"""The audit log records creates, cancels and deletes (no prompt text); CORS is opt-in."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from sqlalchemy import select

from api.app import create_app
from shared.models import AuditEvent
from shared.settings import Settings
from tests.fakellm import FakeLLM, Hang
from tests.fixtures.stack import Stack


def test_creates_cancels_and_deletes_are_audited(stack: Stack, fake_llm: FakeLLM) -> None:
    model = f"m-{uuid.uuid4().hex[:10]}"
    fake_llm.rule(model, lambda req: Hang())
    with stack.client(stack.new_key()) as client:
        job = client.post("/v1/jobs", json={
            "type": "chat", "backend": "ollama", "model": model,
            "input": {"messages": [{"role": "user", "content": "PROMPT-TEXT-NEVER-AUDITED"}]}})
        assert client.post(f"/v1/jobs/{job.json()['id']}/cancel").status_code == 200
        upload = client.post("/v1/files", files={"file": ("a.txt", b"hello")},
                             data={"purpose": "analysis"})
        assert upload.status_code < 300, upload.text
        file_id = upload.json()["id"]
        assert client.delete(f"/v1/files/{file_id}").status_code < 300
        events = client.get("/v1/admin/audit").json()["data"]
    assert [(e["action"], e["object_id"]) for e in events] == [
        ("file.delete", file_id),
        ("file.create", file_id),
        ("job.cancel", job.json()["id"]),
        ("job.create", job.json()["id"]),
    ]
    assert all(e["key_id"].startswith("key_") and e["request_id"] for e in events)
    with stack.sessions() as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.object_id == file_id)).all()
        assert len(rows) == 2
    log = stack.logs("api")
    assert '"audit"' in log
    assert "PROMPT-TEXT-NEVER-AUDITED" not in log


def _preflight(settings: Settings) -> httpx.Response:
    app = create_app(settings)

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.options("/v1/jobs", headers={
                "Origin": "https://excel.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,idempotency-key",
            })

    return asyncio.run(go())


def test_cors_allows_only_listed_origins() -> None:
    allowed = _preflight(Settings(cors_origins="https://excel.example, https://other.example"))
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://excel.example"
    assert "idempotency-key" in allowed.headers["access-control-allow-headers"].lower()
    off = _preflight(Settings())
    assert "access-control-allow-origin" not in off.headers
    other = _preflight(Settings(cors_origins="https://other.example"))
    assert "access-control-allow-origin" not in other.headers
