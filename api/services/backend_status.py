"""Breaker state and queue depth of each backend instance, read from Redis for /readyz."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from shared.backends.breaker_state import read_state
from shared.queues import llm_queue
from shared.settings import Settings


@dataclass(frozen=True)
class BackendStatus:
    """What readiness shows besides reachability."""

    breaker: str | None
    breaker_failures: int | None
    queue_depth: int | None


def backend_status(
    settings: Settings, client: redis.Redis, names: list[str]
) -> dict[str, BackendStatus]:
    """Per backend: breaker state and messages waiting in its queues (None when unknown)."""
    prefix = settings.broker_key_prefix
    out: dict[str, BackendStatus] = {}
    try:
        for name in names:
            state = read_state(client, prefix, name)
            # Celery's Redis transport keeps each queue as a list under the (prefixed) name.
            depth = sum(
                int(client.llen(f"{prefix}{llm_queue(name, lane)}"))
                for lane in ("interactive", "batch")
            )
            out[name] = BackendStatus(state.state, state.failures, depth)
    except redis.RedisError:
        out = {name: BackendStatus(None, None, None) for name in names}
    return out
