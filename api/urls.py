"""Absolute URLs the API hands out: one base for every answer, from the settings."""

from __future__ import annotations

from fastapi import Request, Response

from shared.jobs.view import job_url
from shared.settings import Settings


def base_url(request: Request) -> str:
    """The configured public base (LLMJOBS_PUBLIC_BASE_URL, else the API's own address)."""
    settings: Settings = request.app.state.settings
    return settings.api_base_url


def polling_headers(response: Response, settings: Settings, job_id: str) -> None:
    """Location and Retry-After of a job the client polls until it ends."""
    response.headers["Location"] = job_url(settings, job_id)
    response.headers["Retry-After"] = str(settings.poll_retry_after_s)
