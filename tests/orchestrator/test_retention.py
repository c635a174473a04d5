"""Retention: old finished jobs, their rows and files, and ended deliveries are purged."""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from orchestrator.retention import purge, remove_stale_temp_files
from shared.db import make_engine, make_sessionmaker, session_scope
from shared.ids import new_id
from shared.keys import authenticate, create_key
from shared.migrate import upgrade
from shared.models import Job, RowResult, Step, StoredFile, utcnow
from shared.models.webhooks import WebhookAttempt, WebhookDelivery
from shared.settings import Settings
from shared.storage import path_for
from tests.conftest import StackFactory

DAY = dt.timedelta(days=1)


def _job(tenant: str, status: str, age: dt.timedelta, **extra: Any) -> Job:
    now = utcnow()
    finished = now - age if status in ("succeeded", "failed", "cancelled") else None
    return Job(id=new_id("job"), tenant_id=tenant, type="chat", status=status, backend="ollama",
               model="m", input={}, created_at=now - age - dt.timedelta(minutes=1),
               finished_at=finished, **extra)


def _file(data_dir: Path, tenant: str, age: dt.timedelta) -> StoredFile:
    file_id = new_id("file")
    path = path_for(data_dir, tenant, file_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return StoredFile(id=file_id, tenant_id=tenant, purpose="batch", filename="in.csv", bytes=1,
                      content_type="text/csv", storage_key=f"files/{tenant}/{file_id}",
                      sha256="0" * 64, created_at=utcnow() - age)


def test_purge_removes_only_what_aged_out(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    upgrade(url)
    sessions = make_sessionmaker(make_engine(url))
    settings = Settings(database_url=url, data_dir=tmp_path / "data", retention_days=7)
    with session_scope(sessions) as session:
        secret = create_key(session, f"t-{uuid.uuid4().hex[:6]}").secret
    with session_scope(sessions) as session:
        key = authenticate(session, secret)
        assert key is not None
        tenant = key.tenant_id
        old_input = _file(settings.data_dir, tenant, 30 * DAY)
        kept_input = _file(settings.data_dir, tenant, 30 * DAY)  # a recent job still reads it
        orphan_new = _file(settings.data_dir, tenant, DAY)
        session.add_all([old_input, kept_input, orphan_new])
        old = _job(tenant, "succeeded", 8 * DAY, input_file_id=old_input.id)
        old_failed = _job(tenant, "failed", 30 * DAY)
        recent = _job(tenant, "succeeded", 2 * DAY, input_file_id=kept_input.id)
        old_running = _job(tenant, "running", 0 * DAY)
        old_running.created_at = utcnow() - 30 * DAY
        session.add_all([old, old_failed, recent, old_running])
        session.flush()
        for job in (old, recent, old_running):
            session.add(Step(id=new_id("step"), job_id=job.id, tenant_id=tenant, kind="chat",
                             status="succeeded", backend="ollama", input={}))
            session.add(RowResult(job_id=job.id, row_index=0, step_id="s", output="o"))
        ended = WebhookDelivery(id=new_id("wh"), tenant_id=tenant, callback_url="https://x",
                                event_type="job.succeeded", status="delivered",
                                created_at=utcnow() - 8 * DAY)
        pending = WebhookDelivery(id=new_id("wh"), tenant_id=tenant, callback_url="https://x",
                                  event_type="job.succeeded", status="pending",
                                  created_at=utcnow() - 8 * DAY)
        fresh = WebhookDelivery(id=new_id("wh"), tenant_id=tenant, callback_url="https://x",
                                event_type="job.failed", status="failed", created_at=utcnow())
        session.add_all([ended, pending, fresh])
        session.flush()
        session.add(WebhookAttempt(delivery_id=ended.id, status_code=200))
    old_path = path_for(settings.data_dir, tenant, old_input.id)
    assert old_path.exists()

    with session_scope(sessions) as session:
        report = purge(session, settings)
    assert report.counts() == {"jobs": 2, "steps": 1, "row_results": 1, "files": 1,
                               "deliveries": 1}
    with sessions() as session:
        jobs = set(session.scalars(select(Job.id)))
        assert jobs == {recent.id, old_running.id}
        assert session.scalar(select(func.count()).select_from(Step)) == 2
        assert session.scalar(select(func.count()).select_from(RowResult)) == 2
        assert set(session.scalars(select(StoredFile.id))) == {kept_input.id, orphan_new.id}
        assert set(session.scalars(select(WebhookDelivery.id))) == {pending.id, fresh.id}
        assert session.scalar(select(func.count()).select_from(WebhookAttempt)) == 0
    assert not old_path.exists()  # the bytes went with the row, after the commit
    assert path_for(settings.data_dir, tenant, kept_input.id).exists()

    with session_scope(sessions) as session:
        assert not any(purge(session, settings).counts().values())  # nothing left to do
    off = Settings(database_url=url, data_dir=tmp_path / "data", retention_days=0)
    with session_scope(sessions) as session:
        assert not any(purge(session, off, now=utcnow() + 1000 * DAY).counts().values())


def test_the_sweep_runs_the_purge(make_stack: StackFactory) -> None:
    # Jobs age out 3 s after they end; the purge may run every second.
    stack = make_stack(env={"LLMJOBS_RETENTION_DAYS": str(3 / 86400),
                            "LLMJOBS_RETENTION_INTERVAL_S": "1"})
    with stack.client(stack.new_key()) as client:
        body = {"type": "chat", "backend": "ollama", "model": f"m-{uuid.uuid4().hex[:8]}",
                "input": {"messages": [{"role": "user", "content": "short-lived"}]}}
        job = client.post("/v1/jobs", json=body).json()
        assert stack.wait_job(client, job["id"])["status"] == "succeeded"
        deadline = time.monotonic() + 30
        while client.get(f"/v1/jobs/{job['id']}").status_code != 404:
            assert time.monotonic() < deadline, "the finished job was never purged"
            time.sleep(0.5)
    assert '"purged_jobs": 1' in stack.logs("orchestrator")


def test_temporary_files_left_by_killed_writers_are_removed_once_stale(tmp_path: Path) -> None:
    tenant_dir = tmp_path / "files" / "ten_1"
    tenant_dir.mkdir(parents=True)
    now = time.time()
    old, fresh = now - 2 * 3600, now - 60

    def touch(name: str, mtime: float) -> Path:
        path = tenant_dir / name
        path.write_bytes(b"partial")
        os.utime(path, (mtime, mtime))
        return path

    stale_upload = touch(".upload-abc123", old)
    stale_result = touch(".file_out.xyz.tmp", old)
    writing_now = touch(".upload-def456", fresh)
    kept_file = touch("file_old", old)  # a stored file: only the retention purge removes it
    assert remove_stale_temp_files(tmp_path, now=now) == 2
    assert not stale_upload.exists()
    assert not stale_result.exists()
    assert writing_now.exists()
    assert kept_file.exists()
    assert remove_stale_temp_files(tmp_path, now=now) == 0
    assert remove_stale_temp_files(tmp_path / "nothing-here", now=now) == 0
