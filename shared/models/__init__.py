"""Database models. Every model module is imported here so migrations see all tables."""

from shared.models.base import Base, UTCDateTime, utcnow
from shared.models.core import ApiKey, Job, RowResult, Step, StoredFile, Tenant

__all__ = [
    "ApiKey",
    "Base",
    "Job",
    "RowResult",
    "Step",
    "StoredFile",
    "Tenant",
    "UTCDateTime",
    "utcnow",
]
