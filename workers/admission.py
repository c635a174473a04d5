"""Admission of a backend call: its instance's circuit breaker and limits let it through first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from shared.backends import ChatRequest, ChatResult, PermanentBackendError, TransientBackendError
from shared.logging import get_logger
from shared.tokens import call_tokens
from workers.breaker import BreakerOpen, CircuitBreaker
from workers.limits import BackendLimits

log = get_logger(__name__)

# Rate limiting says the backend is alive and busy; it is not a reason to open the breaker.
NOT_AN_OUTAGE = {429}


class Admission:
    """Breaker, concurrency and rate limits around one backend instance's calls."""

    def __init__(
        self,
        backend: str,
        breaker: CircuitBreaker | None,
        limits: BackendLimits | None,
        *,
        max_wait_s: float,
        fail_over: bool = False,
    ) -> None:
        self.backend = backend
        self.breaker, self.limits = breaker, limits
        self.max_wait_s = max_wait_s
        # With somewhere else to go, an open breaker is a reason to leave, not to wait.
        self.fail_over = fail_over

    async def call(
        self, request: ChatRequest, fn: Callable[[], Awaitable[ChatResult]]
    ) -> ChatResult:
        """Run `fn` once the breaker lets it through and capacity is free."""
        await self._pass_breaker()
        if self.limits is None:
            return await self._watched(fn)
        estimate = call_tokens(request.messages, request.max_tokens)
        async with self.limits.slot(estimate):
            result = await self._watched(fn)
        await self.limits.settle(estimate, result.prompt_tokens + result.completion_tokens)
        if result.pause_s:
            await self.limits.pause(result.pause_s)
        return result

    async def _watched(self, fn: Callable[[], Awaitable[ChatResult]]) -> ChatResult:
        try:
            result = await fn()
        except TransientBackendError as exc:
            if self.breaker is not None and exc.status not in NOT_AN_OUTAGE:
                if await self.breaker.failure(exc.message):
                    log.warning("circuit breaker opened", backend=self.backend,
                                error=exc.message[:200])
            raise
        except PermanentBackendError:
            # The backend answered (with a refusal): it is up.
            if self.breaker is not None:
                await self.breaker.success()
            raise
        if self.breaker is not None:
            await self.breaker.success()
        return result

    async def _pass_breaker(self) -> None:
        if self.breaker is None:
            return
        waited = 0.0
        while True:
            verdict, wait = await self.breaker.check()
            if verdict:
                return
            if self.fail_over or waited >= self.max_wait_s:
                raise BreakerOpen(
                    f"{self.backend} is unavailable: its circuit breaker is open after "
                    f"repeated failures (next probe in {wait:.0f} s)",
                    status=503,
                )
            pause = max(0.05, min(wait, 1.0, self.max_wait_s - waited))
            await asyncio.sleep(pause)
            waited += pause
