"""An HTTP client for many concurrent calls to one backend: several small connection pools.

httpcore re-examines every connection of a pool each time a request starts or ends (a
readability poll for each idle one, and a scan of the pool per connection), so one pool of
128 connections spends more CPU per call than the call itself once a batch keeps 64 requests
in flight. Pools of at most `SHARD_CONNECTIONS` connections keep that bookkeeping small; each
call goes to the pool with the fewest calls in flight.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

SHARD_CONNECTIONS = 16


class ShardedClient:
    """The subset of `httpx.AsyncClient` the adapters use, spread over several pools."""

    def __init__(self, timeout: httpx.Timeout, max_connections: int, max_keepalive: int) -> None:
        shards = max(1, math.ceil(max_connections / SHARD_CONNECTIONS))
        per_shard = math.ceil(max_connections / shards)
        keepalive = max(1, math.ceil(max_keepalive / shards))
        self._clients = [
            httpx.AsyncClient(
                timeout=timeout,
                limits=httpx.Limits(max_connections=per_shard,
                                    max_keepalive_connections=min(keepalive, per_shard)),
            )
            for _ in range(shards)
        ]
        self._in_flight = [0] * shards

    @property
    def shards(self) -> int:
        """How many pools the calls are spread over."""
        return len(self._clients)

    def _pick(self) -> int:
        return min(range(len(self._clients)), key=self._in_flight.__getitem__)

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One call on the least busy pool; the body is read before the slot is given back."""
        index = self._pick()
        self._in_flight[index] += 1
        try:
            return await self._clients[index].request(method, url, **kwargs)
        finally:
            self._in_flight[index] -= 1

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        """POST on the least busy pool."""
        return await self.request("POST", url, **kwargs)

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        """GET on the least busy pool."""
        return await self.request("GET", url, **kwargs)

    @asynccontextmanager
    async def stream(self, method: str, url: str, **kwargs: Any) -> AsyncIterator[httpx.Response]:
        """A streamed call on the least busy pool, counted until the stream is closed."""
        index = self._pick()
        self._in_flight[index] += 1
        try:
            async with self._clients[index].stream(method, url, **kwargs) as response:
                yield response
        finally:
            self._in_flight[index] -= 1

    async def aclose(self) -> None:
        """Close every pool."""
        for client in self._clients:
            await client.aclose()
