"""Models across every configured backend, cached for a few seconds; a down backend is left out."""

from __future__ import annotations

import asyncio
import time

from api.schemas.models import ModelList, ModelObject
from shared.backends import BackendConfig, configured_backends
from shared.backends.probe import PROBE_TIMEOUT_S, list_models
from shared.logging import get_logger
from shared.settings import Settings

log = get_logger(__name__)

CACHE_S = 5.0


class ModelCatalog:
    """Asks each backend for its models at most every CACHE_S seconds."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._cached: tuple[float, ModelList] | None = None
        self._lock = asyncio.Lock()

    async def listing(self) -> ModelList:
        """The merged list (stale by at most CACHE_S seconds)."""
        async with self._lock:
            if self._cached is not None and time.monotonic() < self._cached[0]:
                return self._cached[1]
            backends = list(configured_backends(self.settings).values())
            found = await asyncio.gather(*(self._models_of(b) for b in backends))
            data = [
                ModelObject(id=f"{b.name}/{model}", owned_by=b.name)
                for b, models in zip(backends, found, strict=True)
                for model in models
            ]
            merged = ModelList(data=data)
            self._cached = (time.monotonic() + CACHE_S, merged)
            return merged

    async def _models_of(self, config: BackendConfig) -> list[str]:
        try:
            return await asyncio.wait_for(list_models(config, self.settings), PROBE_TIMEOUT_S + 1)
        except Exception as exc:  # a backend that is down or odd is left out, never a 500
            log.info("backend left out of /v1/models", backend=config.name, error=repr(exc)[:200])
            return []
