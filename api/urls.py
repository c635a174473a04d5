"""Absolute URLs the API hands out: one base for every answer, from the settings."""

from __future__ import annotations

from fastapi import Request

from shared.settings import Settings


def base_url(request: Request) -> str:
    """The configured public base (LLMJOBS_PUBLIC_BASE_URL, else the API's own address)."""
    settings: Settings = request.app.state.settings
    return settings.api_base_url
