"""Which backend and model a job runs on: the one resolver of names, lists and OpenAI models."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.backends.config import configured_backends, default_backend
from shared.backends.types import BackendConfig
from shared.settings import Settings

MAX_CHAIN = 8


class RoutingError(ValueError):
    """No backend can take the job; `status`, `param` and `type` say how to answer."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, type: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.type = status, message, param, type


class ModelNotFound(RoutingError):
    """An OpenAI `model` names no configured backend, or no backend is configured."""

    def __init__(self, message: str) -> None:
        super().__init__(404, message, param="model")


@dataclass(frozen=True)
class Route:
    """The first backend and its model, and the fallback chain when there is one."""

    backend: str
    model: str
    chain: list[str] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)

    def plan(self) -> dict[str, Any]:
        """Plan entries naming the fallback chain (workers move a step along it)."""
        if len(self.chain) < 2:
            return {}
        return {"backends": self.chain, "backend_models": self.models}


def resolve(
    settings: Settings,
    backend: str | list[str] | None,
    model: str | None,
    *,
    with_fallback: bool = True,
) -> Route:
    """The route of a job naming a backend, a list of them, or none (the default one)."""
    backends = configured_backends(settings)
    if isinstance(backend, list):
        names = list(backend)
        if not names:
            raise RoutingError(422, "backend list is empty; name at least one", param="backend")
    else:
        first = backend or default_backend(settings)
        if first is None:
            raise RoutingError(503, "no LLM backend is configured", type="backend_unavailable")
        names = [first]
        if with_fallback and first in backends:
            names += [n for n in backends[first].fallback if n != first]
    unknown = [n for n in names if n not in backends]
    if unknown:
        raise RoutingError(
            422, f"unknown backend {unknown[0]!r}; configured: {sorted(backends)}",
            param="backend",
        )
    if len(set(names)) != len(names):
        raise RoutingError(
            422, "a backend appears twice in the list; name each once", param="backend"
        )
    names = names[:MAX_CHAIN]
    models: dict[str, str] = {}
    for name in names:
        chosen = model or backends[name].default_model
        if not chosen:
            raise RoutingError(
                422, f"backend {name!r} has no default model; give one", param="model"
            )
        models[name] = chosen
    return Route(names[0], models[names[0]], names, models)


def route_model(settings: Settings, model: str) -> tuple[str, str]:
    """The backend and model that an OpenAI `model` names.

    `backend/model` picks that backend; a bare model goes to the backend whose default model
    it is, else to the default backend.
    """
    backends = configured_backends(settings)
    prefix, sep, rest = model.partition("/")
    if sep and prefix in backends:
        if not rest:
            return prefix, _default_model(backends[prefix])
        return prefix, rest
    for name, config in backends.items():
        if config.default_model == model:
            return name, model
    fallback = default_backend(settings)
    if fallback is None:
        raise ModelNotFound("no LLM backend is configured")
    return fallback, model


def _default_model(config: BackendConfig) -> str:
    if not config.default_model:
        raise ModelNotFound(f"backend {config.name!r} has no default model; name one")
    return config.default_model
