"""Per-process worker state: database sessions, backend adapters, admission and one event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

import redis.asyncio as aredis
from sqlalchemy.orm import Session, sessionmaker

from shared.backends import BackendConfig, PermanentBackendError, configured_backends
from shared.settings import Settings
from workers.admission import Admission
from workers.backends import build_adapter
from workers.backends.base import Adapter
from workers.breaker import CircuitBreaker
from workers.lease import ClaimedStep, HeldLease, LeaseKeeper
from workers.limits import BackendLimits

T = TypeVar("T")


class WorkerRuntime:
    """Everything a worker process builds once, at start: adapters, Redis, an asyncio loop."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.backends: dict[str, BackendConfig] = configured_backends(settings)
        self.redis = aredis.Redis.from_url(
            settings.broker_url, socket_timeout=10, health_check_interval=10
        )
        self._adapters: dict[str, Adapter] = {
            name: build_adapter(config, settings) for name, config in self.backends.items()
        }
        prefix = settings.broker_key_prefix
        self._breakers = {
            name: CircuitBreaker(
                self.redis, prefix, name,
                failures=settings.breaker_failures,
                cooldown_s=settings.breaker_cooldown_s,
                # A probe whose worker died frees the half-open slot after one call's time.
                probe_lease_s=(config.timeout_s or settings.backend_timeout_s) + 5,
            )
            for name, config in self.backends.items()
        }
        self._limits = {
            name: BackendLimits(self.redis, prefix, config, settings.limit_lease_s)
            for name, config in self.backends.items()
        }
        self._leases = LeaseKeeper(sessions, lease_s=settings.step_lease_s,
                                   every_s=settings.heartbeat_s)
        # One loop per process keeps connection pools warm across tasks and threads.
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="llm-loop",
                                        daemon=True)
        self._thread.start()

    def adapter(self, backend: str) -> Adapter:
        """The adapter of a configured backend."""
        adapter = self._adapters.get(backend)
        if adapter is None:
            raise PermanentBackendError(f"backend {backend!r} is not configured here")
        return adapter

    def admission(self, backend: str, fail_over: bool) -> Admission:
        """Breaker and limits of a configured backend instance (shared through Redis)."""
        return Admission(
            backend, self._breakers[backend], self._limits[backend],
            max_wait_s=self.settings.breaker_max_wait_s, fail_over=fail_over,
        )

    def heartbeat(self, claimed: ClaimedStep, on_lost: Callable[[], Any]) -> HeldLease:
        """Holds `claimed`'s lease while it runs (from `start()` to `stop()`)."""
        return self._leases.hold(claimed, on_lost)

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Run a coroutine on the process loop."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        """Close adapters and Redis, stop the loop."""
        self._leases.close()
        for adapter in self._adapters.values():
            self.submit(adapter.aclose()).result(timeout=5)
        self.submit(self.redis.aclose()).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)


_runtime: WorkerRuntime | None = None


def start_runtime(settings: Settings, sessions: sessionmaker[Session]) -> WorkerRuntime:
    """Build this process's runtime (at process start)."""
    global _runtime
    _runtime = WorkerRuntime(settings, sessions)
    return _runtime


def get_runtime() -> WorkerRuntime:
    """The runtime this process built at start."""
    if _runtime is None:
        raise RuntimeError("the worker runtime was not built at process start (start_runtime)")
    return _runtime


def stop_runtime() -> None:
    """Close the runtime (at shutdown)."""
    global _runtime
    if _runtime is not None:
        _runtime.close()
    _runtime = None
