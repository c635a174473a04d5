"""Database models. Every model module is imported here so migrations see all tables."""

from shared.models.base import Base, UTCDateTime, utcnow
from shared.models.core import ApiKey, Job, RowResult, Step, StoredFile, Tenant
from shared.models.tenancy import AuditEvent, IdempotencyRecord, StepRedaction
from shared.models.webhooks import (  # noqa: F401
    TenantSigningSecret,
    WebhookAttempt,
    WebhookDelivery,
    WebhookProgressMark,
    WebhookSubscription,
)

__all__ = [
    "ApiKey",
    "AuditEvent",
    "IdempotencyRecord",
    "StepRedaction",
    "Base",
    "Job",
    "RowResult",
    "Step",
    "StoredFile",
    "Tenant",
    "UTCDateTime",
    "utcnow",
]
