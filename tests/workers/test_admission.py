"""The Redis-shared circuit breaker and backend limits, on the machine's real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis.asyncio as aredis

from shared.backends import BackendConfig, ChatRequest, ChatResult, TransientBackendError
from tests.fixtures.services import broker_namespace, drop_namespace
from workers.admission import Admission
from workers.breaker import BreakerOpen, CircuitBreaker
from workers.limits import BackendLimits


@pytest.fixture
def namespace() -> Iterator[tuple[str, str]]:
    url, prefix = broker_namespace()
    yield url, prefix
    drop_namespace(prefix)


def test_breaker_opens_after_n_failures_then_one_probe_closes_it(
    namespace: tuple[str, str],
) -> None:
    url, prefix = namespace

    async def go() -> None:
        client = aredis.Redis.from_url(url)
        breaker = CircuitBreaker(client, prefix, "b1", failures=3, cooldown_s=0.5,
                                 probe_lease_s=5)
        other_process = CircuitBreaker(client, prefix, "b1", failures=3, cooldown_s=0.5,
                                       probe_lease_s=5)
        assert await breaker.check() == (1, 0.0)
        assert not await breaker.failure("boom 1")
        assert not await other_process.failure("boom 2")
        assert await breaker.failure("boom 3")  # the third in a row opens it
        verdict, wait = await other_process.check()
        assert verdict == 0
        assert 0 < wait <= 0.5
        assert (await breaker.state()).state == "open"
        await asyncio.sleep(0.55)
        assert (await other_process.check())[0] == 2  # the half-open probe
        assert (await breaker.check())[0] == 0  # everyone else waits for it
        await other_process.success()
        assert await breaker.check() == (1, 0.0)
        assert (await breaker.state()).state == "closed"
        await client.aclose()

    asyncio.run(go())


def test_admission_fails_fast_on_open_breaker_when_it_can_fail_over(
    namespace: tuple[str, str],
) -> None:
    url, prefix = namespace

    async def go() -> None:
        client = aredis.Redis.from_url(url)
        breaker = CircuitBreaker(client, prefix, "b2", failures=2, cooldown_s=30,
                                 probe_lease_s=5)
        admission = Admission("b2", breaker, None, max_wait_s=0.3, fail_over=False)
        request = ChatRequest(messages=[{"role": "user", "content": "x"}])

        async def down() -> ChatResult:
            raise TransientBackendError("connection refused")

        async def rate_limited() -> ChatResult:
            raise TransientBackendError("slow down", status=429, retry_after=1)

        for _ in range(5):  # 429s say the backend is alive: they never open the breaker
            with pytest.raises(TransientBackendError):
                await admission.call(request, rate_limited)
        for _ in range(2):
            with pytest.raises(TransientBackendError):
                await admission.call(request, down)
        start = time.monotonic()
        with pytest.raises(BreakerOpen, match="circuit breaker is open"):
            await admission.call(request, down)
        assert time.monotonic() - start >= 0.25  # waited (bounded) without a fallback
        leaving = Admission("b2", breaker, None, max_wait_s=30, fail_over=True)
        start = time.monotonic()
        with pytest.raises(BreakerOpen):
            await leaving.call(request, down)
        assert time.monotonic() - start < 0.2  # with a fallback it leaves at once
        await client.aclose()

    asyncio.run(go())


def test_concurrency_slots_are_shared_and_a_dead_holders_lease_expires(
    namespace: tuple[str, str],
) -> None:
    url, prefix = namespace
    config = BackendConfig("b3", "ollama", "http://x", max_concurrency=2)

    async def go() -> None:
        client = aredis.Redis.from_url(url)
        processes = [BackendLimits(client, prefix, config, lease_s=0.6) for _ in range(3)]
        active = peak = 0

        async def work(limits: BackendLimits) -> None:
            nonlocal active, peak
            async with limits.slot(10):
                active += 1
                peak = max(peak, active)
                await asyncio.sleep(0.05)
                active -= 1

        await asyncio.gather(*(work(processes[i % 3]) for i in range(12)))
        assert peak == 2
        assert await processes[0].in_use() == 0
        # A holder that dies keeps its slot only until its lease runs out.
        await processes[0]._take_slot("killed-1")
        await processes[0]._take_slot("killed-2")
        start = time.monotonic()
        async with processes[1].slot(10):
            waited = time.monotonic() - start
        assert 0.4 <= waited < 5
        await client.aclose()

    asyncio.run(go())


def test_tokens_per_minute_makes_callers_wait_instead_of_failing(
    namespace: tuple[str, str],
) -> None:
    url, prefix = namespace
    config = BackendConfig("b4", "openai", "http://x", tokens_per_minute=6000,
                           requests_per_minute=100_000)

    async def go() -> None:
        client = aredis.Redis.from_url(url)
        limits = BackendLimits(client, prefix, config, lease_s=5)
        async with limits.slot(6000):  # a whole minute's budget at once is allowed
            pass
        start = time.monotonic()
        async with limits.slot(50):  # 50 more tokens at 100/s: about half a second
            waited = time.monotonic() - start
        assert 0.3 <= waited < 5
        await client.aclose()

    asyncio.run(go())
