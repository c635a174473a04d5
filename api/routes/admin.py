"""/v1/admin: API keys and the audit log of the caller's tenant (scope `admin`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Response

from api.deps import Admin, SessionDep
from api.schemas.admin import (
    AuditList,
    KeyCreate,
    KeyCreated,
    KeyList,
    KeyOut,
    KeyRotate,
    KeyRotated,
    TenantPolicy,
)
from api.schemas.common import error_responses
from api.services import admin as service
from shared.models import Tenant

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post(
    "/keys",
    status_code=201,
    response_model=KeyCreated,
    summary="Create an API key",
    description="A new key in the caller's tenant. The secret is in this answer only.",
    operation_id="CreateApiKey",
    responses=error_responses(401, 403, 422, 429),
)
def create_key(
    response: Response, body: Annotated[KeyCreate, Body()], caller: Admin, session: SessionDep
) -> KeyCreated:
    created = service.create(session, caller.tenant_id, body)
    response.headers["Cache-Control"] = "no-store"
    return created


@router.get(
    "/keys",
    response_model=KeyList,
    summary="List API keys",
    description="The tenant's keys with their state and last use; never their secrets.",
    operation_id="ListApiKeys",
    responses=error_responses(401, 403),
)
def list_keys(caller: Admin, session: SessionDep) -> KeyList:
    return KeyList(data=service.listing(session, caller.tenant_id))


@router.post(
    "/keys/{key_id}/revoke",
    response_model=KeyOut,
    summary="Revoke an API key",
    description="The key stops working at once. Revoking again answers the same. The "
    "tenant's last working admin key cannot be revoked (409): create another admin key first.",
    operation_id="RevokeApiKey",
    responses=error_responses(401, 403, 404, 409),
)
def revoke_key(key_id: str, caller: Admin, session: SessionDep) -> KeyOut:
    return service.revoke(session, caller.tenant_id, key_id)


@router.post(
    "/keys/{key_id}/rotate",
    response_model=KeyRotated,
    summary="Rotate an API key",
    description="A new key with the same name, scopes and limits; the old key keeps working "
    "for grace_s seconds (default 24 h), then expires.",
    operation_id="RotateApiKey",
    responses=error_responses(401, 403, 404, 409),
)
def rotate_key(
    key_id: str,
    response: Response,
    caller: Admin,
    session: SessionDep,
    body: Annotated[KeyRotate | None, Body()] = None,
) -> KeyRotated:
    rotated = service.rotate(session, caller.tenant_id, key_id, (body or KeyRotate()).grace_s)
    response.headers["Cache-Control"] = "no-store"
    return rotated


@router.get(
    "/tenant",
    response_model=TenantPolicy,
    summary="The tenant's limits and policy",
    description="Rate limit, quotas and PII redaction of the caller's tenant (null: default).",
    operation_id="GetTenantPolicy",
    responses=error_responses(401, 403),
)
def get_policy(caller: Admin, session: SessionDep) -> TenantPolicy:
    tenant = session.get(Tenant, caller.tenant_id)
    assert tenant is not None
    return TenantPolicy(rate_limit_per_min=tenant.rate_limit_per_min,
                        tokens_per_day=tenant.tokens_per_day,
                        max_running_jobs=tenant.max_running_jobs,
                        redact_pii=tenant.redact_pii)


@router.get(
    "/audit",
    response_model=AuditList,
    summary="The audit log",
    description="Who created, cancelled, deleted or rotated what, newest first.",
    operation_id="ListAuditEvents",
    responses=error_responses(401, 403, 422),
)
def audit_log(
    caller: Admin,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    after: Annotated[str | None, Query(max_length=40)] = None,
) -> AuditList:
    return service.audit_page(session, limit, after)
