"""One delivery attempt: claim the row, vet the URL again, POST signed, record, schedule."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from sqlalchemy import or_, update
from sqlalchemy.orm import Session, sessionmaker

from shared.db import changed, session_scope
from shared.logging import get_logger
from shared.models import utcnow
from shared.models.webhooks import WebhookAttempt, WebhookDelivery, WebhookSubscription
from shared.settings import Settings
from shared.webhooks import (
    CheckedTarget,
    DeliveryResult,
    UnsafeURL,
    build_headers,
    check_url,
    next_attempt_delay,
    post_signed,
)
from shared.webhooks.events import signing_secrets, tenant_secret

log = get_logger(__name__)
# Held while an attempt is in flight, beyond its timeout, so the sweep never sends a twin.
LEASE_SLACK_S = 30.0


@dataclass(frozen=True)
class Prepared:
    """What an attempt needs, read in the claiming transaction."""

    msg_id: str
    url: str
    secrets: list[str]
    body: bytes


def deliver(sessions: sessionmaker[Session], settings: Settings, delivery_id: str) -> str:
    """Attempt a due delivery once; returns what happened (for logs and tests)."""
    with session_scope(sessions) as session:
        prepared = _claim(session, settings, delivery_id)
    if isinstance(prepared, str):
        return prepared
    result = _post(settings, prepared)
    with session_scope(sessions) as session:
        outcome = _record(session, settings, delivery_id, result)
    log.info("webhook attempt", delivery_id=delivery_id, status_code=result.status_code,
             latency_ms=result.latency_ms, error=result.error, outcome=outcome)
    return outcome


def _claim(session: Session, settings: Settings, delivery_id: str) -> Prepared | str:
    now = utcnow()
    lease = now + dt.timedelta(seconds=settings.webhook_timeout_s + LEASE_SLACK_S)
    won = changed(session,
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= now,
            or_(WebhookDelivery.lease_expires_at.is_(None),
                WebhookDelivery.lease_expires_at < now),
        )
        .values(lease_expires_at=lease)
    )
    if not won:
        # Already delivered, not yet due, or another worker holds it: a duplicate message.
        return "skipped"
    delivery = session.get(WebhookDelivery, delivery_id)
    assert delivery is not None
    body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    if delivery.subscription_id is None:
        secret = tenant_secret(session, delivery.tenant_id)
        return Prepared(delivery.id, delivery.callback_url or "", [secret], body)
    sub = session.get(WebhookSubscription, delivery.subscription_id)
    if sub is None or sub.deleted_at is not None or sub.disabled_at is not None:
        why = "the subscription was deleted" if sub is None or sub.deleted_at else (
            f"the subscription is disabled: {sub.disabled_reason}")
        _close(delivery, "failed", now, error=why)
        return "abandoned"
    return Prepared(delivery.id, sub.url, signing_secrets(sub, now), body)


def _post(settings: Settings, prepared: Prepared) -> DeliveryResult:
    try:
        # Vetted again at every attempt: DNS may point somewhere else since registration.
        target: CheckedTarget = check_url(prepared.url, settings.webhook_allow_list)
    except UnsafeURL as exc:
        return DeliveryResult(status_code=None, latency_ms=0, response_snippet="",
                              error=f"refused: {exc.reason}", retry_after_s=None, ok=False,
                              gone=False)
    # webhook-id is the delivery id, the same on every retry, so receivers can de-duplicate.
    headers = build_headers(prepared.secrets, prepared.msg_id, prepared.body)
    return post_signed(target, prepared.body, headers, timeout_s=settings.webhook_timeout_s)


def _record(session: Session, settings: Settings, delivery_id: str,
            result: DeliveryResult) -> str:
    now = utcnow()
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        return "gone"
    session.add(WebhookAttempt(
        delivery_id=delivery_id,
        status_code=result.status_code,
        latency_ms=result.latency_ms,
        response_snippet=result.response_snippet,
        error=result.error,
        created_at=now,
    ))
    delivery.attempts += 1
    delivery.last_status_code = result.status_code
    delivery.last_error = result.error
    delivery.lease_expires_at = None
    sub = (session.get(WebhookSubscription, delivery.subscription_id)
           if delivery.subscription_id else None)
    if result.ok:
        _close(delivery, "succeeded", now)
        if sub is not None:
            sub.failing_since = None
        return "succeeded"
    if result.gone:
        if sub is not None:
            _disable(sub, now, "the receiver answered 410 Gone")
        _close(delivery, "failed", now, error=result.error)
        return "failed"
    if sub is not None:
        sub.failing_since = sub.failing_since or now
        limit = dt.timedelta(days=settings.webhook_disable_after_days)
        if now - sub.failing_since > limit:
            _disable(sub, now, f"every delivery failed for more than "
                               f"{settings.webhook_disable_after_days:g} days")
            _close(delivery, "failed", now, error=result.error)
            return "failed"
    delay = next_attempt_delay(delivery.attempts, result.retry_after_s)
    if delay is None:
        _close(delivery, "failed", now, error=result.error)
        return "failed"
    delivery.next_attempt_at = now + dt.timedelta(seconds=delay)
    # The sweep sends it when due: broker countdowns are unreliable over hours.
    delivery.sent_at = None
    return "retry"


def _close(delivery: WebhookDelivery, status: str, now: dt.datetime,
           error: str | None = None) -> None:
    delivery.status = status
    delivery.next_attempt_at = None
    delivery.lease_expires_at = None
    delivery.finished_at = now
    if error is not None:
        delivery.last_error = error


def _disable(sub: WebhookSubscription, now: dt.datetime, reason: str) -> None:
    if sub.disabled_at is None:
        sub.disabled_at = now
        sub.disabled_reason = reason
        log.warning("webhook subscription disabled", subscription_id=sub.id, reason=reason)
