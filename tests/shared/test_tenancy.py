"""A session bound to a tenant never reads, updates or deletes another tenant's rows."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import delete, func, select, update

from shared.db import make_engine, make_sessionmaker
from shared.migrate import upgrade
from shared.models import Job, Step, Tenant
from shared.tenancy import bind_tenant, tenant_classes


def test_bound_session_sees_only_its_tenant(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with sessions() as s:
        s.add_all([Tenant(id="ten_a", name="a"), Tenant(id="ten_b", name="b")])
        s.flush()
        for t in ("a", "b"):
            s.add(Job(id=f"job_{t}", tenant_id=f"ten_{t}", type="chat", backend="x"))
            s.flush()
            s.add(Step(id=f"step_{t}", job_id=f"job_{t}", tenant_id=f"ten_{t}", kind="chat",
                       backend="x"))
        s.commit()
    assert {Job, Step} <= set(tenant_classes())
    with sessions() as s:
        bind_tenant(s, "ten_a")
        assert [j.id for j in s.scalars(select(Job))] == ["job_a"]
        assert s.get(Job, "job_b") is None
        assert s.scalar(select(func.count()).select_from(Step)) == 1
        joined = s.execute(select(Job.id, Step.id).join(Step, Step.job_id == Job.id)).all()
        assert [tuple(r) for r in joined] == [("job_a", "step_a")]
        assert s.execute(update(Job).where(Job.id == "job_b").values(status="x")).rowcount == 0
        assert s.execute(delete(Step).where(Step.id == "step_b")).rowcount == 0
        s.commit()
    with sessions() as s:  # unbound (orchestrator, workers): everything
        assert s.scalar(select(func.count()).select_from(Job)) == 2
        assert s.get(Job, "job_b").status == "queued"  # type: ignore[union-attr]
    engine.dispose()
