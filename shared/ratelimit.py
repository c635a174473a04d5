"""GCRA, the one rate-limit algorithm: the API's request limits and the workers' backend limits.

The generic cell rate algorithm keeps a token bucket as one timestamp per limit (its
theoretical arrival time, TAT): a limit of N per period lets a burst of N through at once and
then one every period/N. All limits of one call are checked and charged in one Lua call on
Redis's clock, so it is atomic across processes and hosts, and a refused call charges nothing.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aredis

PERIOD_US = 60_000_000  # every limit is per minute
# Above this many remembered limits the in-memory form forgets the ones already at rest.
MEMORY_PRUNE_AT = 10_000

# KEYS: one TAT key per limit. ARGV: the period (µs), then a limit and a cost per key.
# A cost above its limit is charged as the limit, so one big call waits instead of never passing.
# Returns {allowed 0/1, index of the tightest limit (1-based), remaining, reset_us, retry_us}.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period = tonumber(ARGV[1])
local new_tats = {}
local tightest, best_remaining, best_reset, retry = 1, nil, 0, 0
local allowed = 1
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 * i])
  local cost = math.min(tonumber(ARGV[2 * i + 1]), limit)
  local interval = period / limit
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local new_tat = tat + cost * interval
  local ahead = new_tat - now
  if ahead > period + 1 then  -- 1 µs of slack for float rounding
    allowed = 0
    local wait = ahead - period
    if wait > retry then retry = wait end
    ahead = tat - now
    new_tat = tat
  end
  new_tats[i] = new_tat
  local remaining = math.floor((period - ahead) / interval)
  if remaining < 0 then remaining = 0 end
  if best_remaining == nil or remaining < best_remaining then
    best_remaining, tightest, best_reset = remaining, i, ahead
  end
end
if allowed == 1 then
  for i = 1, #KEYS do
    redis.call('SET', KEYS[i], string.format('%.0f', new_tats[i]), 'PX',
               math.max(1, math.ceil((new_tats[i] - now) / 1000)))
  end
end
return {allowed, tightest, best_remaining, math.ceil(best_reset), math.ceil(retry)}
"""

# KEYS: one TAT key. ARGV: the period (µs), the limit, the cost to add (negative: give back).
_SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
tat = math.max(now, tat + tonumber(ARGV[3]) * tonumber(ARGV[1]) / tonumber(ARGV[2]))
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX',
           math.max(1, math.ceil((tat - now) / 1000)))
return 1
"""


@dataclass(frozen=True)
class Verdict:
    """One GCRA check: allowed or not, and the tightest limit's state."""

    allowed: bool
    tightest: int  # index into the limits passed
    remaining: int
    reset_us: int
    retry_us: int


# (key, limit per period, cost of this call); a limit of 0 means unlimited and is left out.
Limit = tuple[str, int, int]


def _args(limits: Sequence[Limit]) -> tuple[list[str], list[int]]:
    args = [PERIOD_US]
    for _, limit, cost in limits:
        args += [limit, cost]
    return [key for key, _, _ in limits], args


def _verdict(raw: Any) -> Verdict:
    allowed, tightest, remaining, reset_us, retry_us = raw
    return Verdict(bool(allowed), int(tightest) - 1, int(remaining), int(reset_us),
                   int(retry_us))


class Gcra:
    """GCRA over a synchronous Redis client (the API)."""

    def __init__(self, client: redis.Redis) -> None:
        self._take = client.register_script(_TAKE)

    def take(self, limits: Sequence[Limit]) -> Verdict:
        """Charge every limit at once, or none when one of them is exhausted."""
        keys, args = _args(limits)
        return _verdict(self._take(keys=keys, args=args))


class AsyncGcra:
    """GCRA over an asyncio Redis client (the workers)."""

    def __init__(self, client: aredis.Redis) -> None:
        self._take = client.register_script(_TAKE)
        self._settle = client.register_script(_SETTLE)

    async def take(self, limits: Sequence[Limit]) -> Verdict:
        """Charge every limit at once, or none when one of them is exhausted."""
        keys, args = _args(limits)
        return _verdict(await self._take(keys=keys, args=args))

    async def settle(self, key: str, limit: int, delta: int) -> None:
        """Correct a charge by `delta` (the real cost minus the estimate) once it is known."""
        await self._settle(keys=[key], args=[PERIOD_US, limit, delta])


class MemoryGcra:
    """The same GCRA over this process's memory (a fallback while Redis is unreachable)."""

    def __init__(self) -> None:
        self._tats: dict[str, float] = {}
        self._lock = threading.Lock()

    def take(self, limits: Sequence[Limit]) -> Verdict:
        """Charge every limit at once, or none when one of them is exhausted."""
        with self._lock:
            now = time.monotonic() * 1_000_000
            if len(self._tats) > MEMORY_PRUNE_AT:
                self._tats = {k: t for k, t in self._tats.items() if t > now}
            allowed, retry = True, 0.0
            rows: list[tuple[int, float, float]] = []  # (remaining, ahead, new tat)
            for key, limit, cost in limits:
                interval = PERIOD_US / limit
                tat = max(self._tats.get(key, now), now)
                new_tat = tat + min(cost, limit) * interval
                ahead = new_tat - now
                if ahead > PERIOD_US + 1:  # 1 µs of slack for float rounding
                    allowed = False
                    retry = max(retry, ahead - PERIOD_US)
                    ahead, new_tat = tat - now, tat
                rows.append((max(0, math.floor((PERIOD_US - ahead) / interval)), ahead, new_tat))
            if allowed:
                for (key, _, _), (_, _, new_tat) in zip(limits, rows, strict=True):
                    self._tats[key] = new_tat
            tightest = min(range(len(rows)), key=lambda i: rows[i][0])
            remaining, ahead, _ = rows[tightest]
            return Verdict(allowed, tightest, remaining, math.ceil(ahead), math.ceil(retry))
