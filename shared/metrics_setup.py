"""Point prometheus-client at the host's shared metrics directory before it is imported."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from shared.settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def metrics_dir(settings: Settings) -> Path:
    """Where the processes of this host write their metric files."""
    return settings.metrics_dir or settings.data_dir / "metrics"


def use_metrics_dir(settings: Settings, *, wipe: bool = False) -> Path:
    """Turn on multiprocess mode for this process (and its children); call at process start.

    prometheus-client picks its value storage when first imported, from this variable, so
    this must run before anything imports `shared.metrics`. `wipe` (the supervisor, once per
    system start) removes counters of processes that no longer exist.
    """
    path = metrics_dir(settings).resolve()
    path.mkdir(parents=True, exist_ok=True)
    if wipe:
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
    if "prometheus_client" in sys.modules and os.environ.get(MULTIPROC_ENV) != str(path):
        raise RuntimeError("prometheus_client was imported before use_metrics_dir(); call it first")
    # The library reads this variable itself; setting it is how multiprocess mode is chosen.
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def multiprocess_enabled() -> bool:
    """This process writes and reads the shared metrics directory."""
    return bool(os.environ.get(MULTIPROC_ENV))
