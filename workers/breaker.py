"""A circuit breaker per backend instance, its state in Redis so every worker process shares it.

closed → (N consecutive failed calls) → open → (cool-down over) → half_open: one probe call
goes through → closed on success, open again on failure.
"""

from __future__ import annotations

import time

import redis.asyncio as aredis

from shared.backends import TransientBackendError
from shared.backends.breaker_state import BreakerState, breaker_key, decode_state

# Returns {verdict, seconds}: 1 = go, 2 = go as the half-open probe, 0 = wait `seconds`.
_ALLOW = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'closed' then return {1, '0'} end
local now = tonumber(ARGV[1])
local until_ = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if now < until_ then return {0, tostring(until_ - now)} end
redis.call('HSET', KEYS[1], 'state', 'half_open', 'until', tostring(now + tonumber(ARGV[2])))
return {2, '0'}
"""

# Returns 1 when this failure opened the breaker.
_FAIL = """
local now = tonumber(ARGV[1])
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('HSET', KEYS[1], 'last_error', ARGV[4])
redis.call('EXPIRE', KEYS[1], 86400)
if state == 'half_open' or (state == 'closed' and failures >= tonumber(ARGV[2])) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', tostring(now + tonumber(ARGV[3])),
             'opened_at', tostring(now))
  return 1
end
if state == 'closed' then redis.call('HSET', KEYS[1], 'state', 'closed') end
return 0
"""


class BreakerOpen(TransientBackendError):
    """The backend's breaker is open: it failed repeatedly and is cooling down."""


class CircuitBreaker:
    """One backend instance's breaker, used from the worker's asyncio loop."""

    def __init__(
        self,
        client: aredis.Redis,
        prefix: str,
        backend: str,
        *,
        failures: int,
        cooldown_s: float,
        probe_lease_s: float,
    ) -> None:
        self.backend = backend
        self.key = breaker_key(prefix, backend)
        self.failures, self.cooldown_s, self.probe_lease_s = failures, cooldown_s, probe_lease_s
        self._client = client
        self._allow = client.register_script(_ALLOW)
        self._fail = client.register_script(_FAIL)

    async def check(self) -> tuple[int, float]:
        """(1 go | 2 go as probe | 0 wait, seconds until the next probe)."""
        verdict, seconds = await self._allow(
            keys=[self.key], args=[time.time(), self.probe_lease_s]
        )
        return int(verdict), float(seconds)

    async def success(self) -> None:
        """The backend answered: close the breaker and forget past failures."""
        await self._client.delete(self.key)

    async def failure(self, error: str) -> bool:
        """A call failed for availability reasons; True when that opened the breaker."""
        opened = await self._fail(
            keys=[self.key],
            args=[time.time(), self.failures, self.cooldown_s, error[:300]],
        )
        return bool(opened)

    async def state(self) -> BreakerState:
        """Current state (for logs and tests)."""
        return decode_state(await self._client.hgetall(self.key))
