"""Rate limits per key and per tenant, shared by every API process through one Redis script.

GCRA (the generic cell rate algorithm, a token bucket kept as one timestamp per limit): a
limit of N per minute lets a burst of N through at once and then one every 60/N seconds. All
limits of a request are checked and charged in one Lua call, so it is atomic across
processes and a refused request charges nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import redis

PERIOD_US = 60_000_000

# KEYS: one timestamp key per limit. ARGV: the limits (per minute), in the same order.
# Returns {allowed 0/1, index of the tightest limit (1-based), remaining, reset_us, retry_us}.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period = tonumber(ARGV[#ARGV])
local new_tats = {}
local tightest, best_remaining, best_reset, retry = 1, nil, 0, 0
local allowed = 1
for i = 1, #KEYS do
  local limit = tonumber(ARGV[i])
  local interval = period / limit
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
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


@dataclass(frozen=True)
class Decision:
    """The outcome of one check and what the RateLimit-* headers should say."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    retry_after_s: int

    def headers(self) -> dict[str, str]:
        """RateLimit-Limit/Remaining/Reset (and Retry-After when refused)."""
        out = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
        }
        if not self.allowed:
            out["Retry-After"] = str(self.retry_after_s)
        return out


class RateLimiter:
    """Checks and charges a request against its key's and its tenant's limits."""

    def __init__(self, client: redis.Redis, prefix: str = "") -> None:
        self.client = client
        self.prefix = prefix
        self._script = client.register_script(_GCRA)

    def hit(self, limits: list[tuple[str, int]]) -> Decision | None:
        """Charge one request to each (name, per-minute limit); None when all are unlimited."""
        active = [(name, limit) for name, limit in limits if limit > 0]
        if not active:
            return None
        keys = [f"{self.prefix}ratelimit:{name}" for name, _ in active]
        args = [limit for _, limit in active] + [PERIOD_US]
        allowed, tightest, remaining, reset_us, retry_us = self._script(keys=keys, args=args)
        return Decision(
            allowed=bool(allowed),
            limit=active[int(tightest) - 1][1],
            remaining=int(remaining),
            reset_s=math.ceil(int(reset_us) / 1_000_000),
            retry_after_s=max(1, math.ceil(int(retry_us) / 1_000_000)),
        )
