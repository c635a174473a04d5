"""Rate limits per key and per tenant, shared by every API process (GCRA in shared.ratelimit).

A limit of N per minute lets a burst of N through at once and then one every 60/N seconds.
All limits of a request are checked and charged at once, so a refused request charges nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import redis

from shared.ratelimit import Gcra


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
        self._gcra = Gcra(client)

    def hit(self, limits: list[tuple[str, int]]) -> Decision | None:
        """Charge one request to each (name, per-minute limit); None when all are unlimited."""
        active = [(name, limit) for name, limit in limits if limit > 0]
        if not active:
            return None
        verdict = self._gcra.take(
            [(f"{self.prefix}ratelimit:{name}", limit, 1) for name, limit in active]
        )
        return Decision(
            allowed=verdict.allowed,
            limit=active[verdict.tightest][1],
            remaining=verdict.remaining,
            reset_s=math.ceil(verdict.reset_us / 1_000_000),
            retry_after_s=max(1, math.ceil(verdict.retry_us / 1_000_000)),
        )
