"""/v1/batches: the OpenAI Batch API; each batch runs as one llm-jobs job of chunk steps."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query

from api.deps import JobsRead, JobsWrite, SessionDep, SettingsDep
from api.schemas.common import error_responses
from api.schemas.openai_batches import Batch, BatchCreate, BatchList
from api.services import openai_batches as service

router = APIRouter(prefix="/v1/batches", tags=["openai"])



@router.post(
    "",
    response_model=Batch,
    summary="Create a batch",
    description="Run every line of a purpose=batch JSONL file (≤ 50,000 requests to "
    "/v1/chat/completions) as one job. The batch starts `validating`; an invalid file ends "
    "`failed` with `errors.data[].line`.",
    operation_id="CreateBatch",
    responses=error_responses(400, 401, 404, 422),
)
def create_batch(
    body: Annotated[BatchCreate, Body()],
    caller: JobsWrite,
    session: SessionDep,
    settings: SettingsDep,
) -> Batch:
    job = service.create_batch(session, settings, caller.tenant_id, body)
    return service.batch_out(session, job)


@router.get(
    "/{batch_id}",
    response_model=Batch,
    summary="Get a batch",
    operation_id="GetBatch",
    responses=error_responses(401, 404),
)
def get_batch(batch_id: str, caller: JobsRead, session: SessionDep) -> Batch:
    return service.batch_out(session, service.get_batch_job(session, caller.tenant_id, batch_id))


@router.get(
    "",
    response_model=BatchList,
    summary="List batches",
    description="The tenant's batches, newest first; `after` is the last id of a page.",
    operation_id="ListBatches",
    responses=error_responses(401, 422),
)
def list_batches(
    caller: JobsRead,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[
        str | None,
        Query(max_length=46, pattern=r"^batch_[0-9A-Za-z]+$",
              description="A batch id: the last_id of a page"),
    ] = None,
) -> BatchList:
    rows, has_more = service.list_batches(session, caller.tenant_id, limit, after)
    data = [service.batch_out(session, j) for j in rows]
    return BatchList(
        data=data,
        has_more=has_more,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
    )


@router.post(
    "/{batch_id}/cancel",
    response_model=Batch,
    summary="Cancel a batch",
    description="`cancelling` until running chunks end, then `cancelled` with the finished "
    "requests in the output file. 409 when the batch already ended.",
    operation_id="CancelBatch",
    responses=error_responses(401, 404, 409),
)
def cancel_batch(batch_id: str, caller: JobsWrite, session: SessionDep) -> Batch:
    job = service.get_batch_job(session, caller.tenant_id, batch_id)
    return service.batch_out(session, service.cancel_batch(session, job))
