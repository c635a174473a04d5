"""Retrying backend calls: exponential backoff with jitter, Retry-After honoured, a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_random_exponential

from shared.backends import TransientBackendError
from workers.breaker import BreakerOpen

T = TypeVar("T")


class DeadlineExceeded(TransientBackendError):
    """The step's total time ran out while the backend kept failing or hanging."""


def _make_wait(initial: float, cap: float, deadline: float) -> Callable[[RetryCallState], float]:
    backoff = wait_random_exponential(multiplier=initial, max=cap)

    def wait(state: RetryCallState) -> float:
        delay = backoff(state)
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            # The backend said when to come back: never sooner; a little jitter is added above.
            delay = max(delay, float(retry_after))
        return max(0.0, min(delay, deadline - time.monotonic()))

    return wait


def _make_stop(max_attempts: int, deadline: float) -> Callable[[RetryCallState], bool]:
    def stop(state: RetryCallState) -> bool:
        if state.attempt_number >= max_attempts:
            return True
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None) or 0.0
        return time.monotonic() + retry_after >= deadline

    return stop


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    max_attempts: int,
    initial_wait: float,
    max_wait: float,
    deadline: float,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """Run `call` until it succeeds, fails permanently, runs out of attempts or of time."""

    def before_sleep(state: RetryCallState) -> None:
        if on_retry and state.outcome is not None:
            exc = state.outcome.exception()
            if exc is not None:
                on_retry(exc)

    async def attempt() -> T:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded("step deadline exceeded before the backend answered")
        try:
            return await asyncio.wait_for(call(), timeout=remaining)
        except TimeoutError as exc:
            raise DeadlineExceeded(
                "step deadline exceeded: the backend did not answer in time"
            ) from exc

    retrying = AsyncRetrying(
        # An open breaker already waited its bounded time (or the step fails over instead).
        retry=retry_if_exception(
            lambda e: isinstance(e, TransientBackendError) and not isinstance(e, BreakerOpen)
        ),
        stop=_make_stop(max_attempts, deadline),
        wait=_make_wait(initial_wait, max_wait, deadline),
        before_sleep=before_sleep,
        reraise=True,
    )
    return await retrying(attempt)
