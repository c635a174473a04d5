"""Creating, reading, listing and cancelling jobs for one tenant."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.schemas.jobs import AnalyzeJobCreate, ChatJobCreate, SummarizeJobCreate
from api.services.webhooks import vet_url
from shared import audit
from shared.backends import configured_backends
from shared.backends.routing import Route, RoutingError, resolve
from shared.ids import new_id
from shared.jobs import direct, transitions
from shared.jobs.status import JobStatus
from shared.metrics import record_job_created
from shared.models import Job
from shared.quotas import submission_problem
from shared.settings import Settings
from shared.tokens import messages_tokens


def route(
    settings: Settings,
    backend: str | list[str] | None,
    model: str | None,
    *,
    with_fallback: bool = True,
) -> Route:
    """The job's route; the resolver's refusal as an error answer (422 naming the field, 503)."""
    try:
        return resolve(settings, backend, model, with_fallback=with_fallback)
    except RoutingError as exc:
        raise ApiError(exc.status, exc.message, type=exc.type, param=exc.param) from None


def check_quota(session: Session, settings: Settings, tenant_id: str) -> None:
    """429 naming the quota when the tenant may not submit more work now."""
    problem = submission_problem(session, settings, tenant_id)
    if problem:
        raise ApiError(429, problem, param="quota")


def store_job(session: Session, settings: Settings, job: Job) -> Job:
    """Admit a new job (quota), store it and record who created it.

    A one-step job is stored running with its step sent to its backend (shared.jobs.direct);
    others are stored queued for the orchestrator.
    """
    check_quota(session, settings, job.tenant_id)
    direct.create(session, settings, job)
    audit.record(session, "job.create", "job", job.id)
    return job


def create_job(
    session: Session,
    settings: Settings,
    tenant_id: str,
    body: ChatJobCreate | SummarizeJobCreate | AnalyzeJobCreate,
    **extra: Any,
) -> Job:
    """Store a job: a one-step job goes straight to its backend, others to the orchestrator."""
    chosen = route(settings, body.backend, body.model)
    backend, model = chosen.backend, chosen.model
    if chosen.plan():
        # The fallback chain rides in the plan; workers move a step along it (workers/fallback).
        extra["plan"] = {**(extra.get("plan") or {}), **chosen.plan()}
    if body.callback_url:
        vet_url(settings, str(body.callback_url), "callback_url")
    job_input = body.input.model_dump(mode="json", exclude_none=True)
    _check_size(settings, job_input)
    if body.type == "chat":
        _check_context(settings, backend, job_input, body.options.max_tokens)
    job = Job(
        id=new_id("job"),
        tenant_id=tenant_id,
        type=body.type,
        status=JobStatus.QUEUED,
        backend=backend,
        model=model,
        input=job_input,
        options=body.options.model_dump(exclude_none=True),
        meta=dict(body.metadata),
        callback_url=str(body.callback_url) if body.callback_url else None,
        **extra,
    )
    store_job(session, settings, job)
    record_job_created(session, job)
    return job


def _check_size(settings: Settings, job_input: dict[str, Any]) -> None:
    messages = job_input.get("messages")
    if messages is not None and len(messages) > settings.max_messages:
        raise ApiError(
            422, f"too many messages: at most {settings.max_messages}", param="input.messages"
        )
    text = job_input.get("text") or (job_input.get("document") or {}).get("text") or ""
    if len(text) > settings.max_text_chars:
        raise ApiError(
            413,
            f"text too long: {len(text)} characters, the limit is {settings.max_text_chars}",
            param="input.text",
        )


def _check_context(
    settings: Settings, backend: str, job_input: dict[str, Any], max_tokens: int | None
) -> None:
    """A chat must fit its backend's context window (long texts are chunked; chats cannot)."""
    config = configured_backends(settings).get(backend)
    if config is None:
        return
    prompt = messages_tokens(job_input["messages"])
    needed = prompt + (max_tokens or 0)
    if needed > config.context_tokens:
        raise ApiError(
            422,
            f"the conversation needs about {needed} tokens ({prompt} of messages"
            f"{f' + max_tokens {max_tokens}' if max_tokens else ''}); backend {backend!r} has a "
            f"context window of {config.context_tokens}: shorten the messages or use a "
            "summarize job",
            param="input.messages",
        )


def get_job(session: Session, tenant_id: str, job_id: str) -> Job:
    """The tenant's job; 404 for unknown ids and other tenants' jobs alike."""
    job = session.scalar(select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id))
    if job is None:
        raise ApiError(404, f"no job {job_id!r}", param="id")
    return job


def list_jobs(
    session: Session,
    tenant_id: str,
    *,
    status: str | None,
    job_type: str | None,
    limit: int,
    after: str | None,
) -> tuple[list[Job], bool]:
    """A page of the tenant's jobs, newest first (ids are time-ordered)."""
    query = select(Job).where(Job.tenant_id == tenant_id)
    if status:
        query = query.where(Job.status == status)
    if job_type:
        query = query.where(Job.type == job_type)
    if after:
        query = query.where(Job.id < after)
    rows = list(session.scalars(query.order_by(Job.id.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def cancel(session: Session, tenant_id: str, job_id: str) -> Job:
    """Cancel the tenant's job; 409 when it already ended."""
    job = get_job(session, tenant_id, job_id)
    if not transitions.cancel(session, job):
        raise ApiError(409, f"job {job_id} already ended ({job.status}); nothing to cancel")
    audit.record(session, "job.cancel", "job", job.id)
    return job
