"""Request and response bodies of /v1/webhooks."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

WebhookEvent = Literal["job.succeeded", "job.failed", "job.cancelled", "job.progress"]
DEFAULT_EVENTS: list[WebhookEvent] = ["job.succeeded", "job.failed", "job.cancelled"]


class WebhookCreate(BaseModel):
    """A new subscription."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(
        min_length=1, max_length=2048, title="Receiver URL",
        description="http(s) URL that receives the signed POSTs; must resolve to public addresses",
    )
    events: list[WebhookEvent] = Field(
        default_factory=lambda: list(DEFAULT_EVENTS), min_length=1, max_length=4,
        title="Events", description="Events to receive; default: every way a job can end",
    )
    description: str = Field("", max_length=500, title="Description",
                             description="A note for people reading the subscription list")


class WebhookOut(BaseModel):
    """A subscription (without its secret)."""

    id: str = Field(title="Subscription ID")
    url: str = Field(title="Receiver URL")
    events: list[WebhookEvent] = Field(title="Events")
    description: str = Field(title="Description")
    status: Literal["active", "disabled"] = Field(title="Status")
    disabled_reason: str | None = Field(title="Why disabled")
    created_at: dt.datetime = Field(title="Created at")
    disabled_at: dt.datetime | None = Field(title="Disabled at")


class WebhookCreated(WebhookOut):
    """A new subscription, with the signing secret shown this once."""

    secret: str = Field(title="Signing secret",
                        description="whsec_… secret verifying the webhook-signature header")


class WebhookList(BaseModel):
    data: list[WebhookOut]


class WebhookSecret(BaseModel):
    """A signing secret; after a rotation the previous one also signs until it expires."""

    secret: str = Field(title="Signing secret")
    previous_secret_expires_at: dt.datetime | None = Field(
        None, title="Previous secret valid until")


class AttemptOut(BaseModel):
    status_code: int | None
    latency_ms: int
    response_snippet: str
    error: str | None
    created_at: dt.datetime


class DeliveryOut(BaseModel):
    """One event sent (or being sent) to one receiver; `id` is the `webhook-id` header."""

    id: str
    event_type: str
    job_id: str | None
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    next_attempt_at: dt.datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None
    attempt_log: list[AttemptOut] = Field(default_factory=list,
                                          description="Attempts, oldest first (last 20)")


class DeliveryList(BaseModel):
    data: list[DeliveryOut]
    has_more: bool
    next_after: str | None


class WebhookEventOut(BaseModel):
    """The body POSTed to receivers (Standard Webhooks headers sign it)."""

    type: WebhookEvent = Field(title="Event type")
    timestamp: dt.datetime = Field(title="Timestamp")
    data: dict[str, object] = Field(title="Job", description="The job object, as GET /v1/jobs/{id}")
