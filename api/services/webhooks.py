"""Webhook subscriptions and their deliveries, for one tenant."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.schemas.webhooks import (
    AttemptOut,
    DeliveryOut,
    WebhookCreate,
    WebhookCreated,
    WebhookOut,
)
from shared import audit
from shared.dispatch import enqueue_delivery
from shared.ids import new_id
from shared.models import utcnow
from shared.models.webhooks import WebhookAttempt, WebhookDelivery, WebhookSubscription
from shared.settings import Settings
from shared.webhooks import UnsafeURL, check_url, generate_secret

ATTEMPTS_SHOWN = 20
# Long enough for receivers to deploy the new secret; both sign until then.
ROTATION_OVERLAP = dt.timedelta(hours=24)


def vet_url(settings: Settings, url: str, param: str) -> None:
    """422 naming the reason when `url` is not a safe webhook target."""
    try:
        check_url(url, settings.webhook_allow_list)
    except UnsafeURL as exc:
        raise ApiError(422, f"{param} refused: {exc.reason}", param=param) from None


def create(session: Session, settings: Settings, tenant_id: str,
           body: WebhookCreate) -> WebhookCreated:
    """Store a subscription; its secret is returned only here."""
    vet_url(settings, body.url, "url")
    sub = WebhookSubscription(
        id=new_id("wh"),
        tenant_id=tenant_id,
        url=body.url,
        events=list(dict.fromkeys(body.events)),
        secret=generate_secret(),
        description=body.description,
        created_at=utcnow(),
    )
    session.add(sub)
    session.flush()
    audit.record(session, "webhook.create", "webhook", sub.id)
    return WebhookCreated(**out(sub).model_dump(), secret=sub.secret)


def out(sub: WebhookSubscription) -> WebhookOut:
    """The public shape of a subscription."""
    return WebhookOut(
        id=sub.id,
        url=sub.url,
        events=sub.events,
        description=sub.description,
        status="disabled" if sub.disabled_at else "active",
        disabled_reason=sub.disabled_reason,
        created_at=sub.created_at,
        disabled_at=sub.disabled_at,
    )


def _find(session: Session, tenant_id: str, webhook_id: str,
          include_deleted: bool = False) -> WebhookSubscription:
    query = select(WebhookSubscription).where(
        WebhookSubscription.id == webhook_id, WebhookSubscription.tenant_id == tenant_id)
    if not include_deleted:
        query = query.where(WebhookSubscription.deleted_at.is_(None))
    sub = session.scalar(query)
    if sub is None:
        raise ApiError(404, f"no webhook subscription {webhook_id!r}", param="webhook_id")
    return sub


def get(session: Session, tenant_id: str, webhook_id: str) -> WebhookSubscription:
    """The tenant's live subscription; 404 for unknown, deleted and other tenants' ids."""
    return _find(session, tenant_id, webhook_id)


def list_all(session: Session, tenant_id: str) -> list[WebhookSubscription]:
    """The tenant's live subscriptions, oldest first."""
    return list(session.scalars(
        select(WebhookSubscription)
        .where(WebhookSubscription.tenant_id == tenant_id,
               WebhookSubscription.deleted_at.is_(None))
        .order_by(WebhookSubscription.created_at, WebhookSubscription.id)
    ))


def delete(session: Session, tenant_id: str, webhook_id: str) -> None:
    """Unsubscribe (kept as a tombstone so a repeated DELETE still answers 204)."""
    sub = _find(session, tenant_id, webhook_id, include_deleted=True)
    if sub.deleted_at is None:
        sub.deleted_at = utcnow()
        audit.record(session, "webhook.delete", "webhook", sub.id)


def rotate(session: Session, tenant_id: str, webhook_id: str) -> WebhookSubscription:
    """A new secret; the old one keeps signing for ROTATION_OVERLAP."""
    sub = _find(session, tenant_id, webhook_id)
    now = utcnow()
    sub.previous_secret, sub.previous_secret_expires_at = sub.secret, now + ROTATION_OVERLAP
    sub.secret = generate_secret()
    return sub


def deliveries(session: Session, tenant_id: str, webhook_id: str, limit: int,
               after: str | None) -> tuple[list[DeliveryOut], bool]:
    """A page of the subscription's deliveries, newest first."""
    sub = _find(session, tenant_id, webhook_id)
    query = select(WebhookDelivery).where(WebhookDelivery.subscription_id == sub.id,
                                          WebhookDelivery.tenant_id == tenant_id)
    if after:
        query = query.where(WebhookDelivery.id < after)
    rows = list(session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit + 1)))
    return [delivery_out(session, d) for d in rows[:limit]], len(rows) > limit


def delivery_out(session: Session, delivery: WebhookDelivery) -> DeliveryOut:
    """The public shape of a delivery with its latest attempts."""
    attempts = list(session.scalars(
        select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery.id)
        .order_by(WebhookAttempt.id.desc()).limit(ATTEMPTS_SHOWN)
    ))
    fields: dict[str, Any] = {
        name: getattr(delivery, name)
        for name in ("id", "event_type", "job_id", "status", "attempts", "next_attempt_at",
                     "last_status_code", "last_error", "created_at", "finished_at")
    }
    log = [AttemptOut(status_code=a.status_code, latency_ms=a.latency_ms,
                      response_snippet=a.response_snippet, error=a.error,
                      created_at=a.created_at) for a in reversed(attempts)]
    return DeliveryOut(**fields, attempt_log=log)


def redeliver(session: Session, tenant_id: str, webhook_id: str,
              delivery_id: str) -> WebhookDelivery:
    """Send a delivery again now (same webhook-id); 409 when the subscription is disabled."""
    sub = _find(session, tenant_id, webhook_id)
    delivery = session.scalar(select(WebhookDelivery).where(
        WebhookDelivery.id == delivery_id, WebhookDelivery.subscription_id == sub.id,
        WebhookDelivery.tenant_id == tenant_id))
    if delivery is None:
        raise ApiError(404, f"no delivery {delivery_id!r} for webhook {webhook_id}",
                       param="delivery_id")
    if sub.disabled_at is not None:
        raise ApiError(409, f"webhook {sub.id} is disabled ({sub.disabled_reason}); "
                            "create a new subscription to receive events again")
    now = utcnow()
    delivery.status = "pending"
    delivery.next_attempt_at = now
    delivery.sent_at = now
    delivery.finished_at = None
    session.flush()
    enqueue_delivery(session, delivery.id)
    return delivery
