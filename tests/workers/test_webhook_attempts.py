"""One delivery attempt against a real receiver and a real database, without Celery."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from shared.db import make_engine, make_sessionmaker, session_scope
from shared.keys import ensure_tenant
from shared.migrate import upgrade
from shared.models import utcnow
from shared.models.webhooks import WebhookAttempt, WebhookDelivery, WebhookSubscription
from shared.settings import Settings
from shared.webhooks import generate_secret
from tests.fixtures.receiver import Receiver
from workers.webhook_delivery import deliver

ALLOW = Settings(webhook_allow_hosts="127.0.0.1", webhook_timeout_s=5)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture(params=["sqlite", "postgres"])
def sessions(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[sessionmaker[Session]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'w.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    upgrade(url)
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    engine.dispose()


def make_delivery(
    sessions: sessionmaker[Session],
    url: str,
    *,
    attempts: int = 0,
    due_in_s: float = 0,
    failing_for: dt.timedelta | None = None,
    deleted: bool = False,
) -> tuple[str, str]:
    """A subscription and one due delivery; returns (subscription id, delivery id)."""
    now = utcnow()
    with session_scope(sessions) as session:
        tenant = ensure_tenant(session, "t")
        sub = WebhookSubscription(
            id=f"wh_{uuid.uuid4().hex[:16]}", tenant_id=tenant.id, url=url,
            events=["job.succeeded"], secret=generate_secret(),
            failing_since=now - failing_for if failing_for else None,
            deleted_at=now if deleted else None,
        )
        session.add(sub)
        session.flush()
        delivery = WebhookDelivery(
            id=f"msg_{uuid.uuid4().hex[:16]}", tenant_id=tenant.id, subscription_id=sub.id,
            job_id="job_1", event_type="job.succeeded", payload={"type": "job.succeeded"},
            status="pending", attempts=attempts,
            next_attempt_at=now + dt.timedelta(seconds=due_in_s),
        )
        session.add(delivery)
        return sub.id, delivery.id


def rows(sessions: sessionmaker[Session], sub_id: str, delivery_id: str) -> tuple[
        WebhookSubscription, WebhookDelivery, list[WebhookAttempt]]:
    with session_scope(sessions) as session:
        sub = session.get(WebhookSubscription, sub_id)
        delivery = session.get(WebhookDelivery, delivery_id)
        attempts = list(session.query(WebhookAttempt).filter_by(delivery_id=delivery_id))
        assert sub is not None
        assert delivery is not None
        return sub, delivery, attempts


def test_2xx_succeeds_and_records_the_attempt(
    sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    url = receiver.new_path()
    sub_id, delivery_id = make_delivery(sessions, url, failing_for=dt.timedelta(hours=1))
    assert deliver(sessions, ALLOW, delivery_id) == "succeeded"
    sub, delivery, attempts = rows(sessions, sub_id, delivery_id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 1, 200)
    assert sub.failing_since is None
    assert [(a.status_code, a.response_snippet, a.error) for a in attempts] == [(200, "ok", None)]
    assert receiver.received(url)[0].headers["webhook-id"] == delivery_id
    # A second message for the same delivery (duplicate, sweep) sends nothing.
    assert deliver(sessions, ALLOW, delivery_id) == "skipped"
    assert len(receiver.received(url)) == 1


def test_not_yet_due_is_skipped(sessions: sessionmaker[Session], receiver: Receiver) -> None:
    url = receiver.new_path()
    _, delivery_id = make_delivery(sessions, url, due_in_s=60)
    assert deliver(sessions, ALLOW, delivery_id) == "skipped"
    assert receiver.received(url) == []


def test_500_schedules_the_next_attempt_for_the_sweep(
    sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    url = receiver.new_path(500)
    sub_id, delivery_id = make_delivery(sessions, url)
    before = utcnow()
    assert deliver(sessions, ALLOW, delivery_id) == "retry"
    sub, delivery, attempts = rows(sessions, sub_id, delivery_id)
    assert delivery.status == "pending"
    assert delivery.next_attempt_at is not None
    wait = (delivery.next_attempt_at - before).total_seconds()
    assert 4 <= wait <= 6.5
    assert delivery.sent_at is None
    assert delivery.lease_expires_at is None
    assert sub.failing_since is not None
    assert [a.error for a in attempts] == ["HTTP 500"]


def test_last_attempt_failing_marks_the_delivery_failed_and_keeps_it(
    sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    url = receiver.new_path(503)
    sub_id, delivery_id = make_delivery(sessions, url, attempts=7)
    assert deliver(sessions, ALLOW, delivery_id) == "failed"
    sub, delivery, _ = rows(sessions, sub_id, delivery_id)
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 8, None)
    assert delivery.finished_at is not None
    assert sub.disabled_at is None


def test_subscription_failing_for_days_is_disabled(
    sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    url = receiver.new_path(500)
    sub_id, delivery_id = make_delivery(sessions, url, failing_for=dt.timedelta(days=6))
    assert deliver(sessions, ALLOW, delivery_id) == "failed"
    sub, delivery, _ = rows(sessions, sub_id, delivery_id)
    assert delivery.status == "failed"
    assert sub.disabled_at is not None
    assert "5 days" in (sub.disabled_reason or "")


def test_410_disables_at_once(sessions: sessionmaker[Session], receiver: Receiver) -> None:
    url = receiver.new_path(410)
    sub_id, delivery_id = make_delivery(sessions, url)
    assert deliver(sessions, ALLOW, delivery_id) == "failed"
    sub, delivery, _ = rows(sessions, sub_id, delivery_id)
    assert delivery.attempts == 1
    assert sub.disabled_at is not None


def test_private_address_is_refused_at_delivery_without_the_allow_list(
    sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    url = receiver.new_path()
    sub_id, delivery_id = make_delivery(sessions, url)
    assert deliver(sessions, Settings(), delivery_id) == "retry"
    _, delivery, attempts = rows(sessions, sub_id, delivery_id)
    assert receiver.received(url) == []
    assert attempts[0].status_code is None
    assert (attempts[0].error or "").startswith("refused: host 127.0.0.1 is a loopback address")
    assert delivery.status == "pending"


def test_deleted_subscription_abandons_its_deliveries(
    sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    url = receiver.new_path()
    sub_id, delivery_id = make_delivery(sessions, url, deleted=True)
    assert deliver(sessions, ALLOW, delivery_id) == "abandoned"
    _, delivery, _ = rows(sessions, sub_id, delivery_id)
    assert delivery.status == "failed"
    assert receiver.received(url) == []
