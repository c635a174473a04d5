"""Rate limits per key and per tenant, shared by every API process (GCRA in shared.ratelimit).

GCRA (the generic cell rate algorithm, a token bucket kept as one timestamp per limit, in
shared.ratelimit): a limit of N per minute lets a burst of N through at once and then one
every 60/N seconds. All limits of a request are checked and charged in one Lua call, so it is
atomic across processes and a refused request charges nothing.

When Redis cannot be reached, `rate_limit_on_redis_down` decides: `local` (the default) keeps
limiting with the same algorithm in this process's memory, so each API process allows a key
its full limit (N processes: at most N times the limit); `refuse` answers 503; `open` lets
requests through unlimited, an operator's explicit choice. Redis is asked again every
`RETRY_REDIS_S` by one request, so an outage costs one failed attempt per interval, not
one per request (give the client few retries: each failed attempt is that request's wait).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Literal

import redis

from shared.logging import get_logger
from shared.ratelimit import Gcra, MemoryGcra

log = get_logger(__name__)

RETRY_REDIS_S = 1.0
OnRedisDown = Literal["local", "refuse", "open"]


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


class LimiterUnavailable(Exception):
    """Redis is unreachable and the configured mode refuses requests meanwhile."""


def _decision(limit: int, allowed: bool, remaining: int, reset_us: float,
              retry_us: float) -> Decision:
    return Decision(
        allowed=allowed,
        limit=limit,
        remaining=remaining,
        reset_s=math.ceil(reset_us / 1_000_000),
        retry_after_s=max(1, math.ceil(retry_us / 1_000_000)),
    )


class LocalLimiter:
    """The GCRA over this process's memory, for while Redis is unreachable."""

    def __init__(self) -> None:
        self._gcra = MemoryGcra()

    def hit(self, active: list[tuple[str, int]]) -> Decision:
        """Check and charge every (name, limit > 0) at once, as the script does."""
        verdict = self._gcra.take([(name, limit, 1) for name, limit in active])
        return _decision(active[verdict.tightest][1], verdict.allowed, verdict.remaining,
                         verdict.reset_us, verdict.retry_us)


class RateLimiter:
    """Checks and charges a request against its key's and its tenant's limits."""

    def __init__(
        self, client: redis.Redis, prefix: str = "", on_redis_down: OnRedisDown = "local"
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.on_redis_down = on_redis_down
        self.local = LocalLimiter()
        self._gcra = Gcra(client)
        self._retry_at = 0.0  # monotonic time to ask Redis again; 0 while it answers
        self._state = threading.Lock()

    def hit(self, limits: list[tuple[str, int]]) -> Decision | None:
        """Charge one request to each (name, per-minute limit); None when all are unlimited.

        Raises LimiterUnavailable when Redis is down and the mode is `refuse`.
        """
        active = [(name, limit) for name, limit in limits if limit > 0]
        if not active:
            return None
        if self._should_ask_redis():
            try:
                decision = self._remote(active)
            except redis.RedisError as exc:
                self._went_down(exc)
            else:
                self._came_back()
                return decision
        if self.on_redis_down == "refuse":
            raise LimiterUnavailable("the rate limiter's Redis is unreachable")
        if self.on_redis_down == "open":
            return None
        return self.local.hit(active)

    def _should_ask_redis(self) -> bool:
        if self._retry_at == 0.0:
            return True
        with self._state:
            # While Redis is down one request at a time probes it; the others go on locally.
            now = time.monotonic()
            if now < self._retry_at:
                return False
            self._retry_at = now + RETRY_REDIS_S
            return True

    def _remote(self, active: list[tuple[str, int]]) -> Decision:
        verdict = self._gcra.take(
            [(f"{self.prefix}ratelimit:{name}", limit, 1) for name, limit in active]
        )
        return _decision(active[verdict.tightest][1], verdict.allowed, verdict.remaining,
                         verdict.reset_us, verdict.retry_us)

    def _went_down(self, exc: redis.RedisError) -> None:
        with self._state:
            first = self._retry_at == 0.0
            self._retry_at = max(self._retry_at, time.monotonic() + RETRY_REDIS_S)
        if not first:
            return
        # Once per outage, not per request: an outage must not flood the log.
        if self.on_redis_down == "open":
            log.warning("rate limiter's Redis unreachable; requests are NOT limited until it "
                        "is back (LLMJOBS_RATE_LIMIT_ON_REDIS_DOWN=open)", error=str(exc)[:200])
        elif self.on_redis_down == "refuse":
            log.error("rate limiter's Redis unreachable; answering 503 until it is back",
                      error=str(exc)[:200])
        else:
            log.warning("rate limiter's Redis unreachable; limiting in this process's memory "
                        "until it is back", error=str(exc)[:200])

    def _came_back(self) -> None:
        if self._retry_at == 0.0:
            return
        with self._state:
            was_down, self._retry_at = self._retry_at != 0.0, 0.0
        if was_down:
            log.info("rate limiter's Redis reachable again; limits are shared again")
