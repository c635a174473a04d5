"""One-step jobs on SQLite and PostgreSQL: written by the API, ended by the worker's commit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from orchestrator import engine
from orchestrator.plans import PlanContext, planner_for
from orchestrator.sweep import MAX_LEASE_LOSSES, sweep
from shared.db import session_scope
from shared.ids import new_id
from shared.jobs import direct
from shared.keys import ensure_tenant
from shared.models import Job, Step, Tenant, utcnow
from shared.models.webhooks import WebhookDelivery
from shared.settings import Settings
from tests.fixtures.recording import RecordingDispatcher, lose_workers, migrated_sessions
from workers import lease

SETTINGS = Settings(
    _env_file=None,
    ollama_base_url="http://127.0.0.1:9",
    local_enabled=False,
    context_tokens=1024,
    queued_resend_after_s=0,
)


@pytest.fixture(params=["sqlite", "postgres"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = (
        f"sqlite:///{tmp_path / 'direct.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("own_pg_url")
    )
    with migrated_sessions(url) as made:
        yield made


def chat_job(tenant_id: str, content: str = "hi", **extra: object) -> Job:
    fields: dict[str, object] = {"options": {"temperature": 0.2}, **extra}
    return Job(id=new_id("job"), tenant_id=tenant_id, type="chat", backend="ollama", model="m",
               input={"messages": [{"role": "user", "content": content}]}, **fields)


def create(sessions: sessionmaker[Session], cap: int | None = None, **extra: object) -> str:
    with session_scope(sessions) as s:
        tenant = ensure_tenant(s, f"t-{new_id('x')}")
        tenant.max_running_jobs = cap
        job = chat_job(tenant.id, **extra)
        direct.create(s, SETTINGS, job)
        return job.id


def only_step(s: Session, job_id: str) -> Step:
    steps = list(s.scalars(select(Step).where(Step.job_id == job_id)))
    assert len(steps) == 1
    return steps[0]


def claim(sessions: sessionmaker[Session], job_id: str) -> lease.ClaimedStep:
    with session_scope(sessions) as s:
        claimed = lease.claim(s, only_step(s, job_id).id, 30)
    assert claimed is not None
    return claimed


def test_chat_job_is_written_running_with_its_step_sent_to_the_backend(
    sessions: sessionmaker[Session], sent: RecordingDispatcher
) -> None:
    job_id = create(sessions)
    with session_scope(sessions) as s:
        job = s.get(Job, job_id)
        assert job is not None
        step = only_step(s, job_id)
        assert (job.status, job.stage, job.progress_total) == ("running", 0, 1)
        assert job.started_at is not None
        assert (step.status, step.stage, step.seq, step.kind, step.lane) == (
            "queued", 0, 0, "chat", "interactive")
        assert step.dispatched_at is not None
        # Exactly the step the orchestrator's planner would have made.
        ctx = PlanContext(job=job, backend=None, settings=SETTINGS)
        [spec] = planner_for("chat").first(ctx)
        assert (step.kind, step.lane, step.input) == (spec.kind, spec.lane, spec.input)
    assert sent.sent == [("llm.run_step", step.id, "llm.ollama")]


def test_storing_the_result_ends_the_job_in_the_same_commit(
    sessions: sessionmaker[Session], sent: RecordingDispatcher
) -> None:
    job_id = create(sessions, callback_url="https://hooks.example.com/done")
    claimed = claim(sessions, job_id)
    with session_scope(sessions) as s:
        assert lease.complete(s, claimed.id, claimed.token, {"content": "hello"}, 3, 2)
    with session_scope(sessions) as s:
        job = s.get(Job, job_id)
        assert job is not None
        assert job.status == "succeeded"
        # The shape the orchestrator's chat planner gives a finished job.
        assert job.result == {"message": {"role": "assistant", "content": "hello"},
                              "finish_reason": "stop"}
        assert (job.prompt_tokens, job.completion_tokens, job.progress_done) == (3, 2, 1)
        assert job.stage == 1
        deliveries = list(s.scalars(select(WebhookDelivery).where(
            WebhookDelivery.job_id == job_id)))
        assert [d.event_type for d in deliveries] == ["job.succeeded"]
    assert "orchestrator.step_done" not in sent.tasks()
    assert "orchestrator.plan" not in sent.tasks()


def test_a_rolled_back_store_leaves_neither_the_step_nor_the_job_ended(
    sessions: sessionmaker[Session], sent: RecordingDispatcher
) -> None:
    job_id = create(sessions)
    claimed = claim(sessions, job_id)

    def store_then_die() -> None:
        with session_scope(sessions) as s:
            assert lease.complete(s, claimed.id, claimed.token, {"content": "hello"}, 3, 2)
            assert s.get(Job, job_id).status == "succeeded"  # type: ignore[union-attr]
            raise RuntimeError("the process dies before the commit")

    with pytest.raises(RuntimeError):
        store_then_die()
    with session_scope(sessions) as s:
        assert s.get(Job, job_id).status == "running"  # type: ignore[union-attr]
        assert only_step(s, job_id).status == "running"
        assert not list(s.scalars(select(WebhookDelivery).where(
            WebhookDelivery.job_id == job_id)))


def test_a_failed_step_fails_the_job_with_the_orchestrators_error_shape(
    sessions: sessionmaker[Session], sent: RecordingDispatcher
) -> None:
    job_id = create(sessions)
    claimed = claim(sessions, job_id)
    error = {"type": "backend_error", "message": "bad request", "backend": "ollama",
             "status": 400}
    with session_scope(sessions) as s:
        assert lease.fail(s, claimed.id, claimed.token, error)
    with session_scope(sessions) as s:
        job = s.get(Job, job_id)
        assert job is not None
        assert job.status == "failed"
        assert job.error == {**error, "step_id": claimed.id}
        assert job.progress_failed == 1
    assert "orchestrator.step_done" not in sent.tasks()


def test_a_cancelled_job_is_not_ended_by_its_worker(
    sessions: sessionmaker[Session], sent: RecordingDispatcher
) -> None:
    job_id = create(sessions)
    claimed = claim(sessions, job_id)
    with session_scope(sessions) as s:
        assert direct.transitions.cancel(s, s.get(Job, job_id))  # type: ignore[arg-type]
    with session_scope(sessions) as s:
        assert not lease.complete(s, claimed.id, claimed.token, {"content": "late"}, 1, 1)
    with session_scope(sessions) as s:
        job = s.get(Job, job_id)
        assert job is not None
        assert (job.status, job.result) == ("cancelled", None)


@pytest.mark.parametrize("why", ["running_cap", "n_answers", "run_after"])
def test_other_jobs_are_planned_by_the_orchestrator(
    sessions: sessionmaker[Session], sent: RecordingDispatcher, why: str
) -> None:
    with session_scope(sessions) as s:
        tenant = ensure_tenant(s, f"t-{new_id('x')}")
        if why == "running_cap":
            tenant.max_running_jobs = 1
            direct.create(s, SETTINGS, chat_job(tenant.id, "first"))
        extra: dict[str, object] = {}
        if why == "n_answers":
            extra["options"] = {"n": 2}
        if why == "run_after":
            extra["run_after"] = utcnow() + dt.timedelta(hours=1)
        job = chat_job(tenant.id, "second", **extra)
        direct.create(s, SETTINGS, job)
        job_id = job.id
    with session_scope(sessions) as s:
        stored = s.get(Job, job_id)
        assert stored is not None
        assert (stored.status, stored.stage) == ("queued", -1)
        assert not list(s.scalars(select(Step).where(Step.job_id == job_id)))
    assert ("orchestrator.plan", job_id, "orchestrator") in sent.sent


def test_a_planned_one_step_chat_ends_with_its_step_too(
    sessions: sessionmaker[Session], sent: RecordingDispatcher
) -> None:
    with session_scope(sessions) as s:
        tenant = ensure_tenant(s, f"t-{new_id('x')}")
        job = chat_job(tenant.id)
        s.add(job)
        s.flush()
        job_id = job.id
    with session_scope(sessions) as s:
        engine.plan_job(s, SETTINGS, job_id)
    claimed = claim(sessions, job_id)
    with session_scope(sessions) as s:
        assert lease.complete(s, claimed.id, claimed.token, {"content": "hi"}, 1, 1)
    with session_scope(sessions) as s:
        assert s.get(Job, job_id).status == "succeeded"  # type: ignore[union-attr]
    assert "orchestrator.step_done" not in sent.tasks()


def test_sweep_ends_a_running_job_whose_only_step_already_ended(
    sessions: sessionmaker[Session], sent: RecordingDispatcher
) -> None:
    job_id = create(sessions)
    claimed = claim(sessions, job_id)
    # A state the worker's one transaction never leaves; the sweep ends it all the same.
    with session_scope(sessions) as s:
        s.execute(update(Step).where(Step.id == claimed.id).values(
            status="succeeded", result={"content": "found"}, lease_token=None,
            finished_at=utcnow()))
        s.execute(update(Job).where(Job.id == job_id).values(
            updated_at=utcnow() - dt.timedelta(minutes=5)))
    with session_scope(sessions) as s:
        assert sweep(s, SETTINGS).advanced_jobs == 1
    with session_scope(sessions) as s:
        job = s.get(Job, job_id)
        assert job is not None
        assert job.status == "succeeded"
        assert job.result["message"]["content"] == "found"  # type: ignore[index]


def test_sweep_resends_a_lost_step_and_fails_the_job_of_one_that_keeps_killing_workers(
    sessions: sessionmaker[Session], sent: RecordingDispatcher
) -> None:
    job_id = create(sessions)
    with session_scope(sessions) as s:
        step_id = only_step(s, job_id).id
    sent.sent.clear()
    with session_scope(sessions) as s:
        assert sweep(s, SETTINGS).resent_steps >= 1  # other tests' steps share the database
    assert ("llm.run_step", step_id, "llm.ollama") in sent.sent
    lose_workers(sessions, SETTINGS, step_id, MAX_LEASE_LOSSES)
    with session_scope(sessions) as s:
        job = s.get(Job, job_id)
        assert job is not None
        assert job.status == "failed"
        assert job.error is not None
        assert job.error["type"] == "worker_lost"
        assert job.error["step_id"] == step_id
    assert "orchestrator.step_done" not in sent.tasks()


def test_the_running_cap_counts_direct_jobs(
    sessions: sessionmaker[Session], sent: RecordingDispatcher
) -> None:
    with session_scope(sessions) as s:
        tenant = ensure_tenant(s, f"t-{new_id('x')}")
        tenant.max_running_jobs = 2
        tenant_id = tenant.id
        jobs = [chat_job(tenant_id, f"q{i}") for i in range(3)]
        for job in jobs:
            direct.create(s, SETTINGS, job)
    with session_scope(sessions) as s:
        statuses = [s.get(Job, j.id).status for j in jobs]  # type: ignore[union-attr]
        assert s.get(Tenant, tenant_id) is not None
    assert statuses == ["running", "running", "queued"]


def test_a_short_summary_is_one_step_and_a_long_one_is_planned(
    sessions: sessionmaker[Session], sent: RecordingDispatcher
) -> None:
    paragraph = " ".join(f"Sentence {i} talks about the quarterly figures." for i in range(60))
    with session_scope(sessions) as s:
        tenant = ensure_tenant(s, f"t-{new_id('x')}")
        short, long = (
            Job(id=new_id("job"), tenant_id=tenant.id, type="summarize", backend="ollama",
                model="m", input={"text": text, "max_words": 40}, options={})
            for text in ("A short note about lunch.", "\n\n".join([paragraph] * 40))
        )
        direct.create(s, SETTINGS, short)
        direct.create(s, SETTINGS, long)
    with session_scope(sessions) as s:
        job = s.get(Job, short.id)
        assert job is not None
        assert s.get(Job, long.id).status == "queued"  # type: ignore[union-attr]
        step = only_step(s, short.id)
        ctx = PlanContext(job=job, backend=None, settings=SETTINGS)
        [spec] = planner_for("summarize").first(ctx)
        assert (step.kind, step.lane, step.input) == (spec.kind, spec.lane, spec.input)
    claimed = claim(sessions, short.id)
    with session_scope(sessions) as s:
        assert lease.complete(s, claimed.id, claimed.token, {"content": " In short. "}, 9, 3)
    with session_scope(sessions) as s:
        done = s.get(Job, short.id)
        assert done is not None
        assert (done.status, done.result) == ("succeeded", {"summary": "In short."})
    assert ("orchestrator.plan", long.id, "orchestrator") in sent.sent
