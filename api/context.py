"""Request-scoped context (the request id) readable from anywhere in the API."""

from __future__ import annotations

from contextvars import ContextVar

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being handled."""
    return _request_id.get()


def set_request_id(value: str) -> None:
    """Bind the id of the request being handled."""
    _request_id.set(value)
