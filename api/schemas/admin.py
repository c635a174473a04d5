"""Bodies of /v1/admin: API keys and tenant policy of the caller's tenant."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.jsontypes import NUMBER_ONLY

Scope = Literal["jobs:write", "jobs:read", "files:write", "webhooks:manage", "admin"]
DEFAULT_SCOPES: tuple[Scope, ...] = ("jobs:write", "jobs:read", "files:write", "webhooks:manage")


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field("", max_length=200, description="A label for the key")
    scopes: list[Scope] = Field(
        default_factory=lambda: list(DEFAULT_SCOPES), min_length=1,
        description="Default: every scope but admin",
    )
    expires_in_s: Annotated[int, Field(ge=60, le=10 * 366 * 86400), NUMBER_ONLY] | None = Field(
        None, description="Lifetime in seconds; none: no expiry",
    )
    rate_limit_per_min: Annotated[int, Field(ge=0, le=1_000_000), NUMBER_ONLY] | None = Field(
        None, description="Requests per minute; 0: unlimited; none: default",
    )


class KeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grace_s: Annotated[int, Field(ge=0, le=30 * 86400), NUMBER_ONLY] = Field(
        86400, description="How long the old key keeps working"
    )


class KeyOut(BaseModel):
    """A key as listed: never its secret."""

    id: str
    name: str
    prefix: str
    scopes: list[str]
    status: Literal["active", "expired", "revoked"]
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None
    rate_limit_per_min: int | None


class KeyCreated(KeyOut):
    """A new key: `secret` is shown only in this answer."""

    secret: str


class KeyRotated(BaseModel):
    new: KeyCreated
    old: KeyOut


class KeyList(BaseModel):
    data: list[KeyOut]


class TenantPolicy(BaseModel):
    """Limits and policy of the caller's tenant (null: the server default applies)."""

    model_config = ConfigDict(extra="forbid")
    rate_limit_per_min: int | None = Field(None, ge=0, le=10_000_000)
    tokens_per_day: int | None = Field(None, ge=0)
    max_running_jobs: int | None = Field(None, ge=0, le=100_000)
    redact_pii: bool = False


class AuditEventOut(BaseModel):
    id: str
    action: str
    object_type: str
    object_id: str
    key_id: str | None
    request_id: str | None
    created_at: dt.datetime


class AuditList(BaseModel):
    data: list[AuditEventOut]
    has_more: bool
    next_after: str | None
