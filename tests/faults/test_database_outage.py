"""PostgreSQL drops every connection of the system, several times: steps retry, none stuck."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests.conftest import StackFactory
from tests.fakellm import FakeLLM
from tests.faults.conftest import point_at
from tests.faults.helpers import statuses, step_attempts, submit, wait_all, wait_for
from tests.fixtures.services import PG_ADMIN_URL, create_pg_database, drop_pg_database

JOBS = 120
KILLS = 4


@pytest.fixture
def fresh_pg() -> Iterator[str]:
    url = create_pg_database()
    yield url
    drop_pg_database(url)


def terminate_connections(database: str) -> int:
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            return len(conn.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :db AND pid <> pg_backend_pid()"),
                {"db": database},
            ).all())
    finally:
        admin.dispose()


@pytest.mark.fault
def test_killed_database_connections_are_retried(
    make_stack: StackFactory, own_fake: FakeLLM, fresh_pg: str
) -> None:
    own_fake.latency = 0.4
    stack = make_stack(workers=("ollama",), env=point_at(own_fake), database_url=fresh_pg)
    tag = uuid.uuid4().hex[:8]
    ids = submit(stack, stack.new_key(), [f"pg-{tag}-{i}" for i in range(JOBS)])
    database = fresh_pg.rsplit("/", 1)[1]
    terminated = 0
    wait_for(lambda: own_fake.in_flight > 0, 30, "steps in flight")
    at_first_kill = statuses(stack, ids)
    for _ in range(KILLS):
        terminated += terminate_connections(database)
        time.sleep(0.8)

    counts = wait_all(stack, ids, timeout=120)
    logs = "".join(stack.logs(name) for name in stack.processes)
    retried = len(re.findall(r"retry: Retry in \S+: OperationalError", logs))
    print(f"\npostgres: {KILLS} kills, {terminated} connections terminated; "
          f"jobs at the first kill {dict(at_first_kill)}; final {dict(counts)}; "
          f"tasks retried after a lost connection {retried}; "
          f"step attempts {dict(step_attempts(stack, ids))}")
    assert terminated >= KILLS  # every kill hit live connections of the system
    assert at_first_kill["succeeded"] < JOBS  # the kills landed while work was in progress
    assert counts == {"succeeded": JOBS}
    assert all(p.poll() is None for p in stack.processes.values())
