"""Per-process worker state: database sessions, backend adapters and one event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

import redis.asyncio as aredis
from sqlalchemy.orm import Session, sessionmaker

from shared.backends import BackendConfig, PermanentBackendError, configured_backends
from shared.db import make_engine, make_sessionmaker
from shared.settings import Settings, get_settings
from workers.backends import build_adapter
from workers.backends.base import Adapter
from workers.breaker import CircuitBreaker
from workers.guard import BackendGuard
from workers.limits import BackendLimits

T = TypeVar("T")


class WorkerRuntime:
    """Everything a worker process builds once: engine, adapters, an asyncio loop thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings.database_url)
        self.sessions: sessionmaker[Session] = make_sessionmaker(self.engine)
        self.backends: dict[str, BackendConfig] = configured_backends(settings)
        self._adapters: dict[str, Adapter] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._limits: dict[str, BackendLimits] = {}
        self._redis: aredis.Redis | None = None
        self._lock = threading.Lock()
        # One loop per process keeps connection pools warm across tasks and threads.
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="llm-loop",
                                        daemon=True)
        self._thread.start()

    def adapter(self, backend: str) -> Adapter:
        """The adapter of a configured backend, built on first use."""
        with self._lock:
            if backend not in self._adapters:
                config = self.backends.get(backend)
                if config is None:
                    raise PermanentBackendError(f"backend {backend!r} is not configured here")
                self._adapters[backend] = build_adapter(config, self.settings)
            return self._adapters[backend]

    @property
    def redis(self) -> aredis.Redis:
        """The shared-state Redis client, used only on this process's loop."""
        if self._redis is None:
            self._redis = aredis.Redis.from_url(
                self.settings.broker_url, socket_timeout=10, health_check_interval=10
            )
        return self._redis

    def guard(self, backend: str, fail_over: bool) -> BackendGuard:
        """Breaker and limits of a configured backend instance (shared through Redis)."""
        config = self.backends[backend]
        prefix = self.settings.broker_key_prefix
        with self._lock:
            if backend not in self._breakers:
                self._breakers[backend] = CircuitBreaker(
                    self.redis, prefix, backend,
                    failures=self.settings.breaker_failures,
                    cooldown_s=self.settings.breaker_cooldown_s,
                    # A probe whose worker died frees the half-open slot after one call's time.
                    probe_lease_s=(config.timeout_s or self.settings.backend_timeout_s) + 5,
                )
                self._limits[backend] = BackendLimits(
                    self.redis, prefix, config, self.settings.limit_lease_s
                )
        return BackendGuard(
            backend, self._breakers[backend], self._limits[backend],
            max_wait_s=self.settings.breaker_max_wait_s, fail_over=fail_over,
        )

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Run a coroutine on the process loop."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        """Close adapters and stop the loop."""
        for adapter in self._adapters.values():
            self.submit(adapter.aclose()).result(timeout=5)
        if self._redis is not None:
            self.submit(self._redis.aclose()).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.engine.dispose()


_runtime: WorkerRuntime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> WorkerRuntime:
    """This process's runtime, built on first use (after any fork)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = WorkerRuntime(get_settings())
        return _runtime


def reset_runtime() -> None:
    """Drop the runtime (after a fork, or at shutdown)."""
    global _runtime
    with _runtime_lock:
        if _runtime is not None:
            _runtime.close()
        _runtime = None


def forget_runtime() -> None:
    """Drop an inherited runtime in a forked child without touching the parent's threads."""
    global _runtime
    _runtime = None
