"""Which backends a job may run on: one name, a fallback list, or a configured route."""

from __future__ import annotations

from typing import Any

from api.errors import ApiError
from shared.backends import configured_backends, default_backend
from shared.settings import Settings

MAX_CHAIN = 8


def resolve_chain(
    settings: Settings, backend: str | list[str] | None, model: str | None
) -> tuple[str, str, dict[str, Any]]:
    """(first backend, its model, plan entries naming the fallback chain when there is one)."""
    backends = configured_backends(settings)
    if isinstance(backend, list):
        names = list(backend)
        if not names:
            raise ApiError(422, "backend list is empty; name at least one", param="backend")
    else:
        first = backend or default_backend(settings)
        if first is None:
            raise ApiError(503, "no LLM backend is configured", type="backend_unavailable")
        names = [first]
        if first in backends:
            names += [n for n in backends[first].fallback if n != first]
    unknown = [n for n in names if n not in backends]
    if unknown:
        raise ApiError(
            422,
            f"unknown backend {unknown[0]!r}; configured: {sorted(backends)}",
            param="backend",
        )
    if len(set(names)) != len(names):
        raise ApiError(422, "a backend appears twice in the list; name each once", param="backend")
    names = names[:MAX_CHAIN]
    models: dict[str, str] = {}
    for name in names:
        chosen = model or backends[name].default_model
        if not chosen:
            raise ApiError(
                422, f"backend {name!r} has no default model; give one", param="model"
            )
        models[name] = chosen
    first = names[0]
    plan = {"backends": names, "backend_models": models} if len(names) > 1 else {}
    return first, models[first], plan
