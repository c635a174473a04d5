"""Webhook events as rows: who receives what, which secrets sign it, sending after commit."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.dispatch import enqueue_delivery
from shared.ids import new_id
from shared.models import utcnow
from shared.models.webhooks import TenantSigningSecret, WebhookDelivery, WebhookSubscription
from shared.webhooks.signing import generate_secret

EVENT_TYPES = ("job.succeeded", "job.failed", "job.cancelled", "job.progress")
# A job's own callback_url hears only how the job ended.
CALLBACK_EVENTS = ("job.succeeded", "job.failed", "job.cancelled")


def event_body(event_type: str, data: dict[str, Any], when: dt.datetime) -> dict[str, Any]:
    """The delivered JSON: `{"type", "timestamp", "data"}`."""
    return {
        "type": event_type,
        "timestamp": when.isoformat().replace("+00:00", "Z"),
        "data": data,
    }


def subscribers(session: Session, tenant_id: str, event_type: str) -> list[WebhookSubscription]:
    """The tenant's live subscriptions that asked for `event_type`."""
    rows = session.scalars(
        select(WebhookSubscription).where(
            WebhookSubscription.tenant_id == tenant_id,
            WebhookSubscription.deleted_at.is_(None),
            WebhookSubscription.disabled_at.is_(None),
        )
    )
    # Few subscriptions per tenant; filtering the JSON list here works on every database.
    return [s for s in rows if event_type in (s.events or [])]


def add_delivery(
    session: Session,
    *,
    tenant_id: str,
    event_type: str,
    payload: dict[str, Any],
    job_id: str | None,
    subscription_id: str | None = None,
    callback_url: str | None = None,
) -> WebhookDelivery:
    """A pending delivery, sent right after commit."""
    now = utcnow()
    delivery = WebhookDelivery(
        id=new_id("msg"),
        tenant_id=tenant_id,
        subscription_id=subscription_id,
        callback_url=callback_url,
        job_id=job_id,
        event_type=event_type,
        payload=payload,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        sent_at=now,
    )
    session.add(delivery)
    enqueue_delivery(session, delivery.id)
    return delivery


def signing_secrets(subscription: WebhookSubscription, now: dt.datetime) -> list[str]:
    """Secrets that sign this subscription's deliveries: current, plus previous while rotating."""
    found = [subscription.secret]
    expires = subscription.previous_secret_expires_at
    if subscription.previous_secret and (expires is None or expires > now):
        found.append(subscription.previous_secret)
    return found


def tenant_secret(session: Session, tenant_id: str) -> str:
    """The tenant's callback signing secret, created on first use."""
    row = session.get(TenantSigningSecret, tenant_id)
    if row is not None:
        return row.secret
    try:
        # A savepoint: two requests creating it at once must not spoil the outer transaction.
        with session.begin_nested():
            session.add(TenantSigningSecret(tenant_id=tenant_id, secret=generate_secret()))
    except IntegrityError:
        pass
    row = session.get(TenantSigningSecret, tenant_id, populate_existing=True)
    assert row is not None
    return row.secret
