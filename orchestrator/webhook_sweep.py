"""Send webhook deliveries whose next attempt is due, and re-send ones whose message was lost."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from shared.db import changed
from shared.dispatch import enqueue_delivery
from shared.models import utcnow
from shared.models.webhooks import WebhookDelivery
from shared.settings import Settings

BATCH = 500


def send_due_deliveries(session: Session, settings: Settings) -> int:
    """Enqueue due, unleased deliveries not sent recently; returns how many were sent."""
    now = utcnow()
    resend_cutoff = now - dt.timedelta(seconds=settings.webhook_resend_after_s)
    due = session.scalars(
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= now,
            or_(WebhookDelivery.lease_expires_at.is_(None),
                WebhookDelivery.lease_expires_at < now),
            or_(WebhookDelivery.sent_at.is_(None), WebhookDelivery.sent_at < resend_cutoff),
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(BATCH)
    ).all()
    sent = 0
    for delivery_id in due:
        # Conditional on sent_at so two sweeps (or a sweep and a redeliver) send it once.
        won = changed(session,
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.status == "pending",
                or_(WebhookDelivery.sent_at.is_(None), WebhookDelivery.sent_at < resend_cutoff),
            )
            .values(sent_at=now)
        )
        if won:
            enqueue_delivery(session, delivery_id)
            sent += 1
    return sent
