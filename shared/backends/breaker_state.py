"""A backend's circuit breaker as stored in Redis: its key and a read-only view of its state.

The workers write the breaker (`workers.breaker`); the API only reads it for /readyz.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis


def breaker_key(prefix: str, backend: str) -> str:
    """The Redis hash holding one backend instance's breaker."""
    return f"{prefix}llmjobs:breaker:{backend}"


@dataclass(frozen=True)
class BreakerState:
    """A breaker as /readyz shows it."""

    state: str
    failures: int
    retry_in_s: float | None
    last_error: str | None


def read_state(client: redis.Redis, prefix: str, backend: str) -> BreakerState:
    """Current state, read synchronously (the API's readiness check)."""
    raw: dict[bytes, bytes] = client.hgetall(breaker_key(prefix, backend))  # type: ignore[assignment]
    return decode_state(raw)


def decode_state(raw: dict[Any, Any]) -> BreakerState:
    """The state of a breaker hash as read from Redis (bytes or str fields)."""
    fields = {
        (k.decode() if isinstance(k, bytes) else str(k)): (
            v.decode() if isinstance(v, bytes) else str(v)
        )
        for k, v in raw.items()
    }
    state = fields.get("state", "closed")
    until = float(fields.get("until", "0"))
    retry_in = max(0.0, until - time.time()) if state != "closed" else None
    if state == "open" and retry_in == 0.0:
        state = "half_open"  # the next call will probe
    return BreakerState(
        state=state,
        failures=int(fields.get("failures", "0")),
        retry_in_s=round(retry_in, 2) if retry_in is not None else None,
        last_error=fields.get("last_error"),
    )
