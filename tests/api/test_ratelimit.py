"""The GCRA script on the machine's Redis: bursts, refusals, several limits at once."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from api.ratelimit import LimiterUnavailable, RateLimiter
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


def _dead_redis() -> redis.Redis:
    with socket.socket() as sock:  # a port nothing listens on once the socket is closed
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    return redis.Redis(port=port, socket_connect_timeout=1, retry=Retry(NoBackoff(), 1))


def test_local_mode_keeps_limiting_when_redis_is_unreachable() -> None:
    limiter = RateLimiter(_dead_redis(), on_redis_down="local")
    decisions = [limiter.hit([("key:a", 10), ("tenant:t", 15)]) for _ in range(12)]
    allowed = [d for d in decisions if d is not None and d.allowed]
    assert len(allowed) == 10
    assert [d.remaining for d in allowed[:2]] == [9, 8]
    refused = decisions[-1]
    assert refused is not None
    assert not refused.allowed
    assert refused.headers()["RateLimit-Limit"] == "10"
    assert refused.headers()["Retry-After"] == "6"  # one slot every 60/10 s
    # The tenant's limit is shared by its keys here too: 5 left of 15.
    other = [limiter.hit([("key:b", 10), ("tenant:t", 15)]) for _ in range(7)]
    assert sum(1 for d in other if d is not None and d.allowed) == 5


def test_refuse_mode_raises_and_open_mode_lets_through() -> None:
    with pytest.raises(LimiterUnavailable):
        RateLimiter(_dead_redis(), on_redis_down="refuse").hit([("key:a", 10)])
    opened = RateLimiter(_dead_redis(), on_redis_down="open")
    assert all(opened.hit([("key:a", 1)]) is None for _ in range(5))
