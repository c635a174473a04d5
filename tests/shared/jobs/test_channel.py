"""A job's end is announced on Redis only once the transaction that ended it has committed."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import text

from shared.db import make_engine, make_sessionmaker
from shared.jobs.channel import announce_end, ended_channel
from shared.settings import Settings
from tests.fixtures.services import broker_namespace


@pytest.fixture
def listener() -> Iterator[tuple[Settings, redis.client.PubSub]]:
    url, prefix = broker_namespace()
    settings = Settings(redis_url=url, broker_key_prefix=prefix)
    client = redis.Redis.from_url(url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(ended_channel(prefix))
    yield settings, pubsub
    pubsub.close()
    client.close()


def _received(pubsub: redis.client.PubSub, seconds: float) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.1)
        if message is not None:
            got.append(message["data"])
    return got


def test_end_is_published_after_commit_and_never_on_rollback(
    listener: tuple[Settings, redis.client.PubSub],
) -> None:
    settings, pubsub = listener
    sessions = make_sessionmaker(make_engine("sqlite://"))
    with sessions() as session:
        session.execute(text("select 1"))
        announce_end(session, "job_rolled_back", settings)
        session.rollback()
    with sessions() as session:
        session.execute(text("select 1"))
        announce_end(session, "job_committed", settings)
        # Not before the commit: a waiter re-reading now would still see the job running.
        assert _received(pubsub, 0.3) == []
        session.commit()
    assert _received(pubsub, 1.0) == [b"job_committed"]


def test_publishing_can_be_switched_off(listener: tuple[Settings, redis.client.PubSub]) -> None:
    settings, pubsub = listener
    off = settings.model_copy(update={"job_end_publish": False})
    sessions = make_sessionmaker(make_engine("sqlite://"))
    with sessions() as session:
        session.execute(text("select 1"))
        announce_end(session, "job_quiet", off)
        announce_end(session, "job_loud", settings)
        session.commit()
    assert _received(pubsub, 1.0) == [b"job_loud"]
