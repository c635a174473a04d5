"""Per-backend concurrency and rate limits shared by every worker process through Redis.

Concurrency is a semaphore of leased slots (a sorted set of holder → lease expiry), so a
killed process's slot frees itself; requests and tokens per minute are one GCRA check
(shared.ratelimit, the same algorithm as the API's). A call over a limit waits for capacity
instead of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import redis.asyncio as aredis

from shared.backends import BackendConfig
from shared.ratelimit import AsyncGcra, Limit

_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
  redis.call('EXPIRE', KEYS[1], 3600)
  return 1
end
return 0
"""

POLL_S = 0.05


class BackendLimits:
    """max_concurrency, requests_per_minute and tokens_per_minute of one backend instance."""

    def __init__(
        self, client: aredis.Redis, prefix: str, config: BackendConfig, lease_s: float
    ) -> None:
        base = f"{prefix}llmjobs:limits:{config.name}"
        self.slots_key, self.rpm_key, self.tpm_key = f"{base}:slots", f"{base}:rpm", f"{base}:tpm"
        self.pause_key = f"{base}:pause"
        self.max_concurrency = config.max_concurrency
        self.rpm = config.requests_per_minute or 0
        self.tpm = config.tokens_per_minute or 0
        self.lease_s = lease_s
        self._client = client
        self._acquire = client.register_script(_ACQUIRE)
        self._gcra = AsyncGcra(client)

    @contextlib.asynccontextmanager
    async def slot(self, tokens: int) -> AsyncIterator[None]:
        """Hold one concurrency slot and the rate budget of one call, waiting for both."""
        await self._take_rate(tokens)
        holder = uuid.uuid4().hex
        await self._take_slot(holder)
        renewer = asyncio.create_task(self._renew(holder))
        try:
            yield
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await asyncio.shield(self._client.zrem(self.slots_key, holder))

    async def _take_rate(self, tokens: int) -> None:
        paused = await self._client.get(self.pause_key)
        if paused is not None:
            await asyncio.sleep(max(0.0, float(paused) - time.time()))
        limits: list[Limit] = [
            (key, limit, cost)
            for key, limit, cost in ((self.rpm_key, self.rpm, 1), (self.tpm_key, self.tpm, tokens))
            if limit > 0
        ]
        if not limits:
            return
        while True:
            verdict = await self._gcra.take(limits)
            if verdict.allowed:
                return
            await asyncio.sleep(min(verdict.retry_us / 1_000_000, 5.0))

    async def _take_slot(self, holder: str) -> None:
        delay = POLL_S
        while True:
            now = time.time()
            got = await self._acquire(
                keys=[self.slots_key],
                args=[now, self.max_concurrency, now + self.lease_s, holder],
            )
            if got:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    async def _renew(self, holder: str) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            await self._client.zadd(self.slots_key, {holder: time.time() + self.lease_s}, xx=True)

    async def settle(self, estimated: int, actual: int) -> None:
        """Charge the tokens a call really used instead of the estimate."""
        if self.tpm and actual and actual != estimated:
            await self._gcra.settle(self.tpm_key, self.tpm, actual - estimated)

    async def pause(self, seconds: float) -> None:
        """The backend said its budget is spent: hold every caller back for `seconds`."""
        if seconds > 0:
            await self._client.set(self.pause_key, str(time.time() + seconds),
                                   px=int(seconds * 1000) + 1)

    async def in_use(self) -> int:
        """Slots held right now (for tests and readiness)."""
        await self._client.zremrangebyscore(self.slots_key, "-inf", time.time())
        return int(await self._client.zcard(self.slots_key))
