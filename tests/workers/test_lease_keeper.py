"""One lease keeper per worker process: every running step's lease renewed in one UPDATE."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from shared.db import session_scope
from shared.dispatch import CeleryDispatcher, set_dispatcher
from shared.ids import new_id
from shared.jobs import direct, transitions
from shared.keys import ensure_tenant
from shared.models import Job, Step, utcnow
from shared.settings import Settings
from tests.fixtures.recording import migrated_sessions
from workers import lease

SETTINGS = Settings(_env_file=None, ollama_base_url="http://127.0.0.1:9", local_enabled=False)


class Discard:
    """Broker messages go nowhere: the keeper is tested on the database alone."""

    def send(self, task: str, args: list[str], queue: str) -> None:
        return None


@pytest.fixture(params=["sqlite", "postgres"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = (
        f"sqlite:///{tmp_path / 'lease.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("own_pg_url")
    )
    set_dispatcher(Discard())
    with migrated_sessions(url) as made:
        yield made
    set_dispatcher(CeleryDispatcher())


def running_steps(sessions: sessionmaker[Session], count: int) -> list[lease.ClaimedStep]:
    with session_scope(sessions) as s:
        tenant = ensure_tenant(s, f"t-{new_id('x')}")
        jobs = [Job(id=new_id("job"), tenant_id=tenant.id, type="chat", backend="ollama",
                    model="m", input={"messages": [{"role": "user", "content": str(i)}]},
                    options={}) for i in range(count)]
        for job in jobs:
            direct.create(s, SETTINGS, job)
        step_ids = [s.scalars(select(Step.id).where(Step.job_id == j.id)).one() for j in jobs]
    claimed = []
    for step_id in step_ids:
        with session_scope(sessions) as s:
            got = lease.claim(s, step_id, 5)
        assert got is not None
        claimed.append(got)
    return claimed


def test_one_tick_renews_every_held_lease_and_reports_the_lost_ones(
    sessions: sessionmaker[Session],
) -> None:
    steps = running_steps(sessions, 3)
    keeper = lease.LeaseKeeper(sessions, lease_s=600, every_s=3600)
    lost: list[str] = []
    handles = [keeper.hold(c, on_lost=lambda c=c: lost.append(c.id)) for c in steps]
    for handle in handles:
        handle.start()
    with session_scope(sessions) as s:
        # One job is cancelled; another step was taken over (its lease token changed).
        transitions.cancel(s, s.get(Job, steps[0].job_id))  # type: ignore[arg-type]
        s.execute(update(Step).where(Step.id == steps[1].id).values(lease_token="someone-else"))
    before = utcnow()
    keeper.tick()
    keeper.close()
    assert sorted(lost) == sorted([steps[0].id, steps[1].id])
    with session_scope(sessions) as s:
        kept = s.get(Step, steps[2].id)
        assert kept is not None
        assert kept.lease_expires_at is not None
        assert kept.lease_expires_at > before + dt.timedelta(seconds=500)
    keeper.tick()  # the lost ones are no longer held: told once
    assert len(lost) == 2


def test_a_stopped_lease_is_neither_renewed_nor_reported_lost(
    sessions: sessionmaker[Session],
) -> None:
    [step] = running_steps(sessions, 1)
    keeper = lease.LeaseKeeper(sessions, lease_s=600, every_s=3600)
    lost: list[str] = []
    handle = keeper.hold(step, on_lost=lambda: lost.append(step.id))
    handle.start()
    handle.stop()
    with session_scope(sessions) as s:
        assert lease.complete(s, step.id, step.token, {"content": "done"}, 1, 1)
    keeper.tick()
    keeper.close()
    assert lost == []
