"""The job state machine on SQLite and PostgreSQL: idempotent, cancel-safe, sweep-backed."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from orchestrator import engine
from orchestrator.sweep import sweep
from shared.db import session_scope
from shared.ids import new_id
from shared.jobs import transitions
from shared.keys import ensure_tenant
from shared.models import Job, Step, utcnow
from shared.settings import Settings
from tests.fixtures.recording import RecordingDispatcher, lose_workers
from workers import lease

SETTINGS = Settings(
    _env_file=None,
    ollama_base_url="http://127.0.0.1:9",
    local_enabled=False,
    context_tokens=1024,
    queued_resend_after_s=0,
)


def new_job(session: Session, job_type: str = "chat", **input_: object) -> str:
    tenant = ensure_tenant(session, f"t-{new_id('x')}")
    job_input = input_ or {"messages": [{"role": "user", "content": "hi"}]}
    job = Job(id=new_id("job"), tenant_id=tenant.id, type=job_type, backend="ollama",
              model="m", input=job_input)
    session.add(job)
    session.flush()
    return job.id


def steps_of(session: Session, job_id: str) -> list[Step]:
    return list(session.scalars(select(Step).where(Step.job_id == job_id).order_by(Step.seq)))


def finish_step(db_sessions: sessionmaker[Session], step_id: str, content: str) -> None:
    with session_scope(db_sessions) as s:
        claimed = lease.claim(s, step_id, 30)
        assert claimed is not None
    with session_scope(db_sessions) as s:
        assert lease.complete(s, step_id, claimed.token, {"content": content}, 3, 2)


def test_plan_twice_creates_one_plan(db_sessions: sessionmaker[Session],
                                     sent: RecordingDispatcher) -> None:
    with session_scope(db_sessions) as s:
        job_id = new_job(s)
    for _ in range(2):
        with session_scope(db_sessions) as s:
            engine.plan_job(s, SETTINGS, job_id)
    with session_scope(db_sessions) as s:
        steps = steps_of(s, job_id)
        assert [st.status for st in steps] == ["queued"]
        assert s.get(Job, job_id).status == "running"  # type: ignore[union-attr]
    assert [t for t, _, _ in sent.sent] == ["llm.run_step"]
    assert sent.sent[0][2] == "llm.ollama"


def test_step_done_twice_finishes_once(db_sessions: sessionmaker[Session],
                                       sent: RecordingDispatcher) -> None:
    with session_scope(db_sessions) as s:
        job_id = new_job(s)
    with session_scope(db_sessions) as s:
        engine.plan_job(s, SETTINGS, job_id)
        step_id = steps_of(s, job_id)[0].id
    finish_step(db_sessions, step_id, "hello")
    for _ in range(2):
        with session_scope(db_sessions) as s:
            engine.step_done(s, SETTINGS, step_id)
    with session_scope(db_sessions) as s:
        job = s.get(Job, job_id)
        assert job is not None
        assert job.status == "succeeded"
        assert job.result == {"message": {"role": "assistant", "content": "hello"},
                              "finish_reason": "stop"}
        assert (job.prompt_tokens, job.completion_tokens) == (3, 2)
        assert job.stage == 1


def test_a_stale_worker_cannot_overwrite_a_re_run_step(db_sessions: sessionmaker[Session],
                                                       sent: RecordingDispatcher) -> None:
    with session_scope(db_sessions) as s:
        job_id = new_job(s)
        engine.plan_job(s, SETTINGS, job_id)
        step_id = steps_of(s, job_id)[0].id
    with session_scope(db_sessions) as s:
        first = lease.claim(s, step_id, 30)
        assert first is not None
        # The lease lapses (the worker hung); the sweep hands the step to another worker.
        s.execute(update(Step).where(Step.id == step_id)
                  .values(lease_expires_at=utcnow() - dt.timedelta(seconds=1)))
    with session_scope(db_sessions) as s:
        assert sweep(s, SETTINGS).requeued_steps == 1
    with session_scope(db_sessions) as s:
        second = lease.claim(s, step_id, 30)
        assert second is not None
        assert second.attempts == 2
    with session_scope(db_sessions) as s:
        assert not lease.complete(s, step_id, first.token, {"content": "stale"}, 1, 1)
    with session_scope(db_sessions) as s:
        assert lease.complete(s, step_id, second.token, {"content": "fresh"}, 1, 1)
        assert steps_of(s, job_id)[0].result == {"content": "fresh"}


def test_cancel_never_sends_unsent_steps(db_sessions: sessionmaker[Session],
                                         sent: RecordingDispatcher) -> None:
    text = "\n\n".join(f"Paragraph {i}. " + "word " * 300 for i in range(30))
    with session_scope(db_sessions) as s:
        job_id = new_job(s, "summarize", text=text)
        engine.plan_job(s, SETTINGS, job_id)
    with session_scope(db_sessions) as s:
        steps = steps_of(s, job_id)
        assert len(steps) > 5
        assert all(st.kind == "map" for st in steps)
        assert transitions.cancel(s, s.get(Job, job_id))  # type: ignore[arg-type]
    sent_before = len(sent.sent)
    with session_scope(db_sessions) as s:
        claimed = lease.claim(s, steps[0].id, 30)
        assert claimed is None
        engine.step_done(s, SETTINGS, steps[0].id)
        assert {st.status for st in steps_of(s, job_id)} == {"cancelled"}
        assert s.get(Job, job_id).status == "cancelled"  # type: ignore[union-attr]
        assert not transitions.cancel(s, s.get(Job, job_id))  # type: ignore[arg-type]
    assert len(sent.sent) == sent_before


def test_sweep_plans_a_job_whose_message_was_lost(db_sessions: sessionmaker[Session],
                                                  sent: RecordingDispatcher) -> None:
    with session_scope(db_sessions) as s:
        job_id = new_job(s)
        s.execute(update(Job).where(Job.id == job_id)
                  .values(updated_at=utcnow() - dt.timedelta(minutes=5)))
    with session_scope(db_sessions) as s:
        report = sweep(s, SETTINGS)
    assert report.resent_plans >= 1
    assert ("orchestrator.plan", job_id, "orchestrator") in sent.sent


def test_sweep_fails_a_step_whose_worker_keeps_dying(db_sessions: sessionmaker[Session],
                                                      sent: RecordingDispatcher) -> None:
    with session_scope(db_sessions) as s:
        job_id = new_job(s)
        engine.plan_job(s, SETTINGS, job_id)
        step_id = steps_of(s, job_id)[0].id
    lose_workers(db_sessions, SETTINGS, step_id, 5)
    with session_scope(db_sessions) as s:
        step = s.get(Step, step_id)
        assert step is not None
        assert step.status == "failed"
        assert "died 5 times" in (step.error or {})["message"]
