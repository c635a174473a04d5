"""GET /v1/jobs/{id}?wait=N: hold the request until the job ends, off the database meanwhile."""

from __future__ import annotations

import time

from sqlalchemy.orm import Session, sessionmaker

from api.dbgate import DbGate
from api.schemas.jobs import JobOut
from api.services import jobs as service
from api.waiters import JobWaiters
from shared.db import read_session
from shared.jobs.status import JOB_ACTIVE
from shared.jobs.view import job_view
from shared.models import Job
from shared.settings import Settings
from shared.tenancy import bind_tenant

# Below Power Automate's 120 s limit on one action's answer, with room for the network.
MAX_WAIT_S = 110


def read_view(
    sessions: sessionmaker[Session], settings: Settings, tenant_id: str, job_id: str
) -> tuple[Job, JobOut]:
    """The tenant's job and its public shape, read in a short transaction of its own."""
    with read_session(sessions) as session:
        bind_tenant(session, tenant_id)
        job = service.get_job(session, tenant_id, job_id)
        return job, job_view(session, settings, job)


async def wait_for_end(
    gate: DbGate, sessions: sessionmaker[Session], waiters: JobWaiters,
    settings: Settings, tenant_id: str, job_id: str, seconds: float,
) -> tuple[Job, JobOut]:
    """The job as soon as it ended, or as it is once `seconds` passed.

    Holds a database slot and connection only during each read: a notice of the job's end
    (or the periodic re-read, should a notice be lost) triggers the next one.
    """

    async def read() -> tuple[Job, JobOut]:
        return await gate.run(read_view, sessions, settings, tenant_id, job_id)

    return await waiters.wait_until(
        job_id, read, lambda seen: seen[0].status not in JOB_ACTIVE, time.monotonic() + seconds
    )
