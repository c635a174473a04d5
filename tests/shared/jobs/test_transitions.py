"""The job transitions every process applies: conditional, so a repeat or a race changes nothing."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.db import session_scope
from shared.ids import new_id
from shared.jobs import transitions
from shared.jobs.status import JOB_TERMINAL, JobStatus, StepStatus
from shared.keys import ensure_tenant
from shared.models import Job, Step
from tests.fixtures.recording import RecordingDispatcher


def created(session: Session) -> Job:
    tenant = ensure_tenant(session, f"t-{new_id('x')}")
    job = Job(id=new_id("job"), tenant_id=tenant.id, type="chat", backend="ollama", model="m",
              input={"messages": [{"role": "user", "content": "hi"}]})
    return transitions.create(session, job)


def test_statuses_are_the_stored_strings() -> None:
    assert [s.value for s in JobStatus] == [
        "queued", "running", "succeeded", "failed", "cancelled"]
    assert [s.value for s in StepStatus] == [
        "pending", "queued", "running", "succeeded", "failed", "cancelled"]
    assert {"succeeded", "failed", "cancelled"} == set(JOB_TERMINAL)


def test_create_queues_and_asks_for_a_plan_after_commit(
    db_sessions: sessionmaker[Session], sent: RecordingDispatcher
) -> None:
    with session_scope(db_sessions) as s:
        job_id = created(s).id
        assert sent.sent == []  # nothing leaves before the commit
    assert sent.sent == [("orchestrator.plan", job_id, "orchestrator")]
    with session_scope(db_sessions) as s:
        assert s.get(Job, job_id).status == "queued"  # type: ignore[union-attr]


def test_start_and_finish_win_once(
    db_sessions: sessionmaker[Session], sent: RecordingDispatcher
) -> None:
    with session_scope(db_sessions) as s:
        job = created(s)
        assert transitions.start(s, job)
        assert not transitions.start(s, job)
        assert job.status == "running"
        assert job.stage == 0
        assert transitions.finish(s, job, JobStatus.SUCCEEDED, result={"content": "ok"})
        assert not transitions.finish(s, job, JobStatus.FAILED, error={"type": "late"})
        assert not transitions.cancel(s, job)
        assert (job.status, job.result, job.error) == ("succeeded", {"content": "ok"}, None)
        assert job.finished_at is not None


def test_fail_and_cancel_stop_the_open_steps(
    db_sessions: sessionmaker[Session], sent: RecordingDispatcher
) -> None:
    with session_scope(db_sessions) as s:
        failing, cancelled = created(s), created(s)
        for job in (failing, cancelled):
            transitions.start(s, job)
            for seq, status in enumerate(("pending", "running", "succeeded")):
                s.add(Step(id=new_id("step"), job_id=job.id, tenant_id=job.tenant_id,
                           kind="chat", seq=seq, status=status, backend="ollama"))
        s.flush()
        assert transitions.fail(s, failing, {"type": "expired", "message": "too old"})
        assert transitions.cancel(s, cancelled)
        assert failing.status == "failed"
        assert failing.error == {
            "type": "expired", "message": "too old"}
        assert cancelled.status == "cancelled"
        assert cancelled.cancel_requested
        for job in (failing, cancelled):
            statuses = s.scalars(select(Step.status).where(Step.job_id == job.id)
                                 .order_by(Step.seq)).all()
            assert statuses == ["cancelled", "cancelled", "succeeded"]


def test_request_cancel_leaves_running_steps_to_finish(
    db_sessions: sessionmaker[Session], sent: RecordingDispatcher
) -> None:
    with session_scope(db_sessions) as s:
        job = created(s)
        assert not transitions.request_cancel(s, job, {})  # queued: nothing is running yet
        transitions.start(s, job)
        for seq, status in enumerate(("pending", "queued", "running")):
            s.add(Step(id=new_id("step"), job_id=job.id, tenant_id=job.tenant_id,
                       kind="chunk", seq=seq, status=status, backend="ollama"))
        s.flush()
        assert transitions.request_cancel(s, job, {"cancelling_at": 1})
        assert job.status == "running"
        assert job.cancel_requested
        assert job.plan == {"cancelling_at": 1}
        statuses = s.scalars(select(Step.status).where(Step.job_id == job.id)
                             .order_by(Step.seq)).all()
        assert statuses == ["cancelled", "cancelled", "running"]
