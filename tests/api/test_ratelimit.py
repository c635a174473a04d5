"""The GCRA script on the machine's Redis: bursts, refusals, several limits at once."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import redis

from api.ratelimit import RateLimiter
from tests.fixtures.services import broker_namespace, drop_namespace


@pytest.fixture
def limiter() -> Iterator[RateLimiter]:
    url, prefix = broker_namespace()
    client = redis.Redis.from_url(url)
    yield RateLimiter(client, prefix)
    drop_namespace(prefix)
    client.close()


def test_a_burst_gets_exactly_the_limit(limiter: RateLimiter) -> None:
    name = f"key:{secrets.token_hex(4)}"
    decisions = [limiter.hit([(name, 100)]) for _ in range(200)]
    allowed = [d for d in decisions if d is not None and d.allowed]
    # 200 calls take milliseconds; the next token is 600 ms away.
    assert len(allowed) == 100
    assert [d.remaining for d in allowed[:3]] == [99, 98, 97]
    refused = [d for d in decisions if d is not None and not d.allowed]
    assert all(d.remaining == 0 and d.retry_after_s == 1 for d in refused)
    assert refused[0].headers()["Retry-After"] == "1"
    assert refused[0].headers()["RateLimit-Limit"] == "100"
    assert 55 <= refused[0].reset_s <= 60


def test_the_tighter_of_key_and_tenant_limits_applies(limiter: RateLimiter) -> None:
    tenant = f"tenant:{secrets.token_hex(4)}"
    first, second = f"key:{secrets.token_hex(4)}", f"key:{secrets.token_hex(4)}"
    a = [limiter.hit([(first, 10), (tenant, 15)]) for _ in range(12)]
    assert sum(d.allowed for d in a if d) == 10
    b = [limiter.hit([(second, 10), (tenant, 15)]) for _ in range(12)]
    # Refused calls of the first key charged nothing: the tenant had 5 left for the second.
    assert sum(d.allowed for d in b if d) == 5
    assert b[-1] is not None
    assert b[-1].limit == 15


def test_zero_means_unlimited(limiter: RateLimiter) -> None:
    assert limiter.hit([("key:x", 0), ("tenant:y", 0)]) is None
