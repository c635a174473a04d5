"""Absolute URLs for Location headers, honouring PUBLIC_BASE_URL behind a proxy."""

from __future__ import annotations

from fastapi import Request


def base_url(request: Request) -> str:
    """Scheme, host and root path the client used (or the configured public base)."""
    configured = request.app.state.settings.public_base_url
    if configured:
        return str(configured).rstrip("/")
    return str(request.base_url).rstrip("/")
