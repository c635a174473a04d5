"""How much of a backend batch work may use: rows in flight, and chunk steps sent at once."""

from __future__ import annotations

import math

from shared.backends import BackendConfig
from shared.settings import Settings


def row_slots(settings: Settings, backend: BackendConfig | None) -> int:
    """Rows one batch worker process keeps in flight against a backend."""
    if settings.batch_row_concurrency:
        return max(1, settings.batch_row_concurrency)
    limit = backend.max_concurrency if backend else settings.worker_concurrency
    return max(1, round(limit * settings.batch_share))


def batch_window(settings: Settings, backend: BackendConfig | None) -> int:
    """Chunk steps of one job queued or running at once: enough to keep the row slots busy.

    Twice the slots in rows, plus one, so a chunk's slow tail never leaves slots idle; small
    enough that cancel stops quickly and several batch jobs share the backend.
    """
    if settings.batch_window:
        return max(1, settings.batch_window)
    chunk = max(1, settings.batch_chunk_rows)
    return math.ceil(row_slots(settings, backend) * 2 / chunk) + 1


def interactive_slots(settings: Settings, backend: BackendConfig) -> int:
    """Interactive steps at once when batch work has a worker of its own."""
    return max(1, backend.max_concurrency - row_slots(settings, backend))
