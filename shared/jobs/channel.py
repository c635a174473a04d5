"""The Redis pub/sub channel a job's live events travel on (workers publish, the API relays)."""

from __future__ import annotations


def job_channel(prefix: str, job_id: str) -> str:
    """Channel of one job's partial output and progress events."""
    return f"{prefix}llmjobs:events:{job_id}"
