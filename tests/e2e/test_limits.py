"""Rate limits, idempotency, body limits and quotas over HTTP against a running stack."""

from __future__ import annotations

import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlparse

import httpx
from sqlalchemy import func, select, update

from shared.db import session_scope
from shared.keys import ALL_SCOPES, create_key
from shared.models import AuditEvent, Job, Tenant
from tests.fakellm import FakeLLM, Reply, Slow
from tests.fixtures.stack import Stack


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_key(stack: Stack, tenant: str, **kwargs: Any) -> tuple[str, str]:
    """A key with all scopes: (secret, tenant id)."""
    with session_scope(stack.sessions) as session:
        key = create_key(session, tenant, "test", ALL_SCOPES, **kwargs)
    return key.secret, key.tenant_id


def chat(content: str, model: str) -> dict[str, Any]:
    return {"type": "chat", "backend": "ollama", "model": model,
            "input": {"messages": [{"role": "user", "content": content}]}}


def test_a_burst_of_200_against_a_100_per_minute_key(stack: Stack) -> None:
    key, _ = make_key(stack, unique("burst"), rate_limit_per_min=100)
    with stack.client(key) as client, ThreadPoolExecutor(16) as pool:
        started = time.monotonic()
        answers = list(pool.map(lambda _: client.get("/v1/jobs?limit=1"), range(200)))
        elapsed = time.monotonic() - started
    allowed = [r for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code == 429]
    assert len(allowed) + len(refused) == 200
    # GCRA refills one request every 0.6 s, so a slow burst may earn a few more.
    assert 100 <= len(allowed) <= 100 + int(elapsed / 0.6) + 1, (len(allowed), elapsed)
    for r in refused:
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["type"] == "rate_limited"
    for r in answers:
        assert r.headers["ratelimit-limit"] == "100"
        assert int(r.headers["ratelimit-remaining"]) >= 0
        assert int(r.headers["ratelimit-reset"]) >= 0


def test_errors_carry_rate_limit_headers_too(stack: Stack) -> None:
    key, _ = make_key(stack, unique("hdr"))
    with stack.client(key) as client:
        missing = client.get("/v1/jobs/job_doesnotexist")
        invalid = client.post("/v1/jobs", json={"type": "chat"})
    for r in (missing, invalid):
        assert r.status_code in (404, 422)
        assert "ratelimit-limit" in r.headers
        assert "ratelimit-remaining" in r.headers


def test_50_concurrent_posts_with_one_key_create_one_job(
    any_stack: Stack, fake_llm: FakeLLM
) -> None:
    key, tenant_id = make_key(any_stack, unique("idem"))
    body = chat("once only", unique("m"))
    headers = {"Idempotency-Key": "flow-run-1"}
    with any_stack.client(key) as client, ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(
            lambda _: client.post("/v1/jobs", json=body, headers=headers), range(50)
        ))
        statuses = {r.status_code for r in answers}
        assert statuses == {202}, [r.text for r in answers if r.status_code != 202][:3]
        ids = {r.json()["id"] for r in answers}
        assert len(ids) == 1
        assert {r.headers["location"] for r in answers} == {
            f"{any_stack.api_url}/v1/jobs/{ids.pop()}"
        }
        assert sum(r.headers.get("idempotent-replayed") == "true" for r in answers) == 49

        other = client.post("/v1/jobs", json=chat("another text", "x"), headers=headers)
        assert other.status_code == 409
        assert other.json()["error"]["type"] == "conflict"
        assert other.json()["error"]["param"] == "Idempotency-Key"
        again = client.post("/v1/jobs", json=body, headers=headers)
        assert again.status_code == 202
        assert again.json()["id"] == answers[0].json()["id"]
        fresh = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "flow-run-2"})
        assert fresh.json()["id"] != answers[0].json()["id"]
    with any_stack.sessions() as session:
        count = session.scalar(select(func.count()).select_from(Job)
                               .where(Job.tenant_id == tenant_id))
        creates = session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.tenant_id == tenant_id, AuditEvent.action == "job.create"))
    assert count == 2
    assert creates == 2


def test_100_concurrent_posts_and_polls_all_answer(any_stack: Stack, fake_llm: FakeLLM) -> None:
    """More callers at once than the API has threads: none is left hanging.

    Each request holds its transaction (on SQLite the write lock) across several thread
    hops; callers beyond the database slots must wait without taking a thread.
    """
    key, tenant_id = make_key(any_stack, unique("crowd"))

    def call(i: int) -> httpx.Response:
        if i % 2:
            return client.get("/v1/jobs?limit=5")
        return client.post("/v1/jobs", json=chat(f"crowd {i}", unique("m")))

    with any_stack.client(key) as client, ThreadPoolExecutor(100) as pool:
        answers = list(pool.map(call, range(200)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] * 100 + [202] * 100, [r.text for r in answers
                                                   if r.status_code >= 300][:3]
    with any_stack.sessions() as session:
        count = session.scalar(select(func.count()).select_from(Job)
                               .where(Job.tenant_id == tenant_id))
    assert count == 100


def test_idempotent_upload_ignores_the_multipart_boundary(stack: Stack) -> None:
    key, _ = make_key(stack, unique("upl"))
    line = b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n'
    headers = {"Idempotency-Key": "upload-1"}
    with stack.client(key) as client:
        first, second = (
            client.post("/v1/files", files={"file": ("in.jsonl", line)},
                        data={"purpose": "batch"}, headers=headers)
            for _ in range(2)
        )
        assert first.status_code < 300, first.text
        assert second.status_code == first.status_code
        assert second.json()["id"] == first.json()["id"]
        listed = client.get("/v1/files").json()["data"]
    assert len(listed) == 1


def _raw_post(stack: Stack, path: str, head: dict[str, str], chunks: Any) -> tuple[int, int]:
    """Send a body piece by piece until the server answers: (status, bytes sent)."""
    url = urlparse(stack.api_url)
    sock = socket.create_connection((url.hostname, url.port), timeout=20)
    lines = [f"POST {path} HTTP/1.1", f"Host: {url.hostname}"]
    lines += [f"{k}: {v}" for k, v in head.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    sent = 0
    sock.settimeout(0.05)
    reply = b""
    try:
        for chunk in chunks:
            try:
                reply += sock.recv(65536)
            except TimeoutError:
                pass
            if reply:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        sock.settimeout(20)
        while b"\r\n" not in reply:
            more = sock.recv(65536)
            if not more:
                break
            reply += more
    finally:
        sock.close()
    return int(reply.split(b" ", 2)[1]), sent


def test_a_20_mb_json_body_gets_413_without_being_read(stack: Stack) -> None:
    key, _ = make_key(stack, unique("big"))
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    size = 20 * 1024 * 1024
    piece = b" " * 65536
    # Declared: refused on the header alone, before a byte of the body is sent.
    status, sent = _raw_post(stack, "/v1/jobs", {**auth, "Content-Length": str(size)},
                             iter([piece] * (size // len(piece))))
    assert status == 413
    assert sent < 2 * 1024 * 1024
    # Chunked (no length): refused once the limit (1 MiB) is passed, not after 20 MB.
    framed = b"%x\r\n" % len(piece) + piece + b"\r\n"
    status, sent = _raw_post(stack, "/v1/jobs", {**auth, "Transfer-Encoding": "chunked"},
                             iter([framed] * (size // len(piece))))
    assert status == 413
    assert sent < 4 * 1024 * 1024
    # Uploads have their own, larger limit (50 MiB), also checked on the header.
    status, _ = _raw_post(stack, "/v1/files",
                          {"Authorization": f"Bearer {key}", "Content-Length": str(60 << 20),
                           "Content-Type": "multipart/form-data; boundary=x"}, iter([]))
    assert status == 413


def test_request_limits_answer_before_work_is_queued(stack: Stack) -> None:
    key, tenant_id = make_key(stack, unique("lim"))
    with stack.client(key) as client:
        page = client.get("/v1/jobs?limit=101")
        assert page.status_code == 422
        assert page.json()["error"]["param"] == "limit"
        many = {"type": "chat", "backend": "ollama", "input": {
            "messages": [{"role": "user", "content": "hi"}] * 300}}
        too_many = client.post("/v1/jobs", json=many)
        assert too_many.status_code == 422, too_many.text
        assert "messages" in too_many.json()["error"]["message"]
    with stack.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Job)
                              .where(Job.tenant_id == tenant_id)) == 0


def test_tokens_per_day_quota_answers_429_naming_it(stack: Stack, fake_llm: FakeLLM) -> None:
    model = unique("m")
    fake_llm.script(model, Reply("fine"))
    key, tenant_id = make_key(stack, unique("quota"))
    with stack.client(key) as client:
        job = client.post("/v1/jobs", json=chat("use some tokens", model)).json()
        done = stack.wait_job(client, job["id"])
        used = done["usage"]["prompt_tokens"] + done["usage"]["completion_tokens"]
        assert used > 0
        with session_scope(stack.sessions) as session:
            session.execute(update(Tenant).where(Tenant.id == tenant_id)
                            .values(tokens_per_day=used))
        refused = client.post("/v1/jobs", json=chat("one more", model))
    assert refused.status_code == 429
    message = refused.json()["error"]["message"]
    assert "tokens-per-day quota" in message
    assert f"{used} of {used}" in message


def test_running_jobs_cap_holds_jobs_queued_until_a_slot_frees(
    stack: Stack, fake_llm: FakeLLM
) -> None:
    model = unique("m")
    fake_llm.rule(model, lambda req: Slow(0.8, "done"))
    key, tenant_id = make_key(stack, unique("cap"))
    with session_scope(stack.sessions) as session:
        session.execute(update(Tenant).where(Tenant.id == tenant_id).values(max_running_jobs=1))
    with stack.client(key) as client:
        ids = [client.post("/v1/jobs", json=chat(f"job {i}", model)).json()["id"]
               for i in range(3)]
        most = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with stack.sessions() as session:
                statuses = list(session.scalars(select(Job.status).where(Job.id.in_(ids))))
            most = max(most, statuses.count("running"))
            if all(s == "succeeded" for s in statuses):
                break
            time.sleep(0.05)
        assert [stack.wait_job(client, i)["status"] for i in ids] == ["succeeded"] * 3
    assert most == 1
    assert len(fake_llm.requests_for(model)) == 3


def test_cors_is_off_by_default(stack: Stack) -> None:
    preflight = httpx.options(
        f"{stack.api_url}/v1/jobs",
        headers={"Origin": "https://excel.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
