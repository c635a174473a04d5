"""A spreadsheet job's output workbook is written between two transactions, never inside one."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from orchestrator import engine
from orchestrator.plans import FileWrite
from orchestrator.plans.sheets import output_file_id
from orchestrator.sweep import sweep
from shared import storage
from shared.db import session_scope
from shared.ids import new_id
from shared.jobs.status import JobStatus
from shared.keys import ensure_tenant
from shared.models import Job, RowResult, Step, StoredFile, utcnow
from shared.settings import Settings
from shared.spreadsheets import inspect_table
from tests.fixtures.recording import RecordingDispatcher
from workers import lease


def _settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, ollama_base_url="http://127.0.0.1:9", local_enabled=False,
                    data_dir=tmp_path / "data", batch_chunk_rows=2, queued_resend_after_s=0)


def _job_with_answered_rows(db_sessions: sessionmaker[Session], settings: Settings) -> str:
    """A planned spreadsheet job of three rows whose chunk steps all ended."""
    with session_scope(db_sessions) as s:
        tenant = ensure_tenant(s, f"t-{new_id('x')}")
        file_id = new_id("file")
        path = storage.path_for(settings.data_dir, tenant.id, file_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("id,text\n1,alpha\n2,beta\n3,gamma\n")
        spec = inspect_table(path, "feedback.csv", "text")
        job = Job(id=new_id("job"), tenant_id=tenant.id, type="batch", backend="ollama",
                  model="m", input={"mode": "summarize", "filename": "feedback.csv"},
                  input_file_id=file_id, plan={"table": spec.to_dict()})
        s.add(job)
        s.flush()
        job_id = job.id
    with session_scope(db_sessions) as s:
        engine.plan_job(s, settings, job_id)
    with session_scope(db_sessions) as s:
        steps = list(s.scalars(select(Step).where(Step.job_id == job_id).order_by(Step.seq)))
        assert len(steps) == 2
    for step in steps:
        with session_scope(db_sessions) as s:
            claimed = lease.claim(s, step.id, 30)
            assert claimed is not None
            for index in step.input["row_indexes"]:
                s.add(RowResult(job_id=job_id, row_index=index, step_id=step.id,
                                output=f"summary {index}", error=None, prompt_tokens=1,
                                completion_tokens=1, created_at=utcnow()))
        with session_scope(db_sessions) as s:
            assert lease.complete(s, step.id, claimed.token, {"rows": 2}, 0, 0)
    return steps[-1].id


def _stage_ended(
    db_sessions: sessionmaker[Session], settings: Settings
) -> tuple[Job, str, FileWrite]:
    """The job (detached), its last chunk step, and the workbook its end asks for."""
    last_step = _job_with_answered_rows(db_sessions, settings)
    with session_scope(db_sessions) as s:
        pending = engine.step_done(s, settings, last_step)
        step = s.get(Step, last_step)
        assert step is not None
        job = s.get(Job, step.job_id)
        assert job is not None
    assert isinstance(pending, FileWrite)
    return job, last_step, pending


def test_workbook_is_written_between_two_transactions(
    db_sessions: sessionmaker[Session], sent: RecordingDispatcher, tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    job, last_step, pending = _stage_ended(db_sessions, settings)
    assert pending.file_id == output_file_id(job.id)
    assert job.status == JobStatus.RUNNING
    with session_scope(db_sessions) as s:
        assert s.get(StoredFile, pending.file_id) is None
    assert not pending.path.exists()  # nothing was written inside the transaction

    written = pending.write()
    assert written.error is None
    assert pending.path.read_text().splitlines()[1:] == [
        "1,alpha,summary 2", "2,beta,summary 3", "3,gamma,summary 4"]  # rows keep file numbers
    with session_scope(db_sessions) as s:
        assert engine.step_done(s, settings, last_step, {written.file_id: written}) is None
    with session_scope(db_sessions) as s:
        ended = s.get(Job, job.id)
        assert ended is not None
        assert ended.status == JobStatus.SUCCEEDED
        assert ended.output_file_id == pending.file_id
        row = s.get(StoredFile, pending.file_id)
        assert row is not None
        assert row.sha256 == hashlib.sha256(pending.path.read_bytes()).hexdigest()
        assert row.bytes == pending.path.stat().st_size
        assert row.filename == "feedback-results.csv"


def test_a_file_that_cannot_be_written_fails_the_job(
    db_sessions: sessionmaker[Session], sent: RecordingDispatcher, tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    job, last_step, pending = _stage_ended(db_sessions, settings)
    assert job.input_file_id is not None
    # The input went away before the workbook could be assembled.
    storage.path_for(settings.data_dir, job.tenant_id, job.input_file_id).unlink()
    written = pending.write()
    assert written.error is not None
    with session_scope(db_sessions) as s:
        engine.step_done(s, settings, last_step, {written.file_id: written})
    with session_scope(db_sessions) as s:
        ended = s.get(Job, job.id)
        assert ended is not None
        assert ended.status == JobStatus.FAILED
        assert (ended.error or {})["message"].startswith("the output file could not be written")


def test_sweep_hands_an_unwritten_workbook_to_step_done(
    db_sessions: sessionmaker[Session], sent: RecordingDispatcher, tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    _, last_step, _ = _stage_ended(db_sessions, settings)
    sent.sent.clear()  # the orchestrator died here: its workbook was never written
    with session_scope(db_sessions) as s:
        sweep(s, settings)
    assert ("orchestrator.step_done", last_step, "orchestrator") in sent.sent
