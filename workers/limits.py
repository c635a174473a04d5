"""Per-backend concurrency and rate limits shared by every worker process through Redis.

Concurrency is a semaphore of leased slots (a sorted set of holder → lease expiry), so a
killed process's slot frees itself; requests and tokens per minute are one GCRA in Lua.
A call over a limit waits for capacity instead of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import redis.asyncio as aredis

from shared.backends import BackendConfig

_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
  redis.call('EXPIRE', KEYS[1], 3600)
  return 1
end
return 0
"""

# GCRA over two limits at once: KEYS = requests TAT, tokens TAT; ARGV = now, rpm, tpm, tokens.
# Each limit tolerates a burst of one minute's allowance. Returns '0' (taken) or the wait.
_RATE = """
local now = tonumber(ARGV[1])
local waits, tats = {}, {}
local costs = {1, tonumber(ARGV[4])}
for i = 1, 2 do
  local limit = tonumber(ARGV[i + 1])
  if limit > 0 then
    local interval = 60.0 / limit
    local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
    if tat < now then tat = now end
    tats[i] = tat + math.min(costs[i], limit) * interval
    waits[i] = tats[i] - now - 60.0
  else
    waits[i] = 0
  end
end
local wait = math.max(waits[1], waits[2])
if wait > 0 then return tostring(wait) end
for i = 1, 2 do
  if tats[i] then redis.call('SET', KEYS[i], tostring(tats[i]), 'EX', 120) end
end
return '0'
"""

# Correct the tokens TAT by the difference between the estimate and the real usage.
_ADJUST = """
local now = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
tat = math.max(now, tat + tonumber(ARGV[2]) * 60.0 / tonumber(ARGV[3]))
redis.call('SET', KEYS[1], tostring(tat), 'EX', 120)
return 1
"""

POLL_S = 0.05


def estimate_tokens(messages: list[dict[str, str]], max_tokens: int | None) -> int:
    """A cheap upper-ish estimate before the call: ~4 characters a token plus the answer."""
    chars = sum(len(m.get("content") or "") for m in messages)
    return chars // 4 + (max_tokens or 256)


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
        self._rate = client.register_script(_RATE)
        self._adjust = client.register_script(_ADJUST)

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
        if not self.rpm and not self.tpm:
            return
        while True:
            wait = float(
                await self._rate(
                    keys=[self.rpm_key, self.tpm_key],
                    args=[time.time(), self.rpm, self.tpm, tokens],
                )
            )
            if wait <= 0:
                return
            await asyncio.sleep(min(wait, 5.0))

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
            await self._adjust(
                keys=[self.tpm_key], args=[time.time(), actual - estimated, self.tpm]
            )

    async def pause(self, seconds: float) -> None:
        """The backend said its budget is spent: hold every caller back for `seconds`."""
        if seconds > 0:
            await self._client.set(self.pause_key, str(time.time() + seconds),
                                   px=int(seconds * 1000) + 1)

    async def in_use(self) -> int:
        """Slots held right now (for tests and readiness)."""
        await self._client.zremrangebyscore(self.slots_key, "-inf", time.time())
        return int(await self._client.zcard(self.slots_key))
