"""Process entry points: api, orchestrator, worker, migrate, and `run` for all of them."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from shared.backends import BackendConfig, configured_backends
from shared.lanes import batch_window
from shared.logging import configure_logging
from shared.metrics_setup import use_metrics_dir
from shared.queues import ORCHESTRATOR_QUEUE, llm_queue
from shared.settings import Settings, get_settings


def api(
    host: Annotated[str | None, typer.Option(help="Default: LLMJOBS_API_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="Default: LLMJOBS_API_PORT")] = None,
) -> None:
    """Serve the HTTP API with uvicorn."""
    use_metrics_dir(get_settings())  # before anything imports prometheus_client
    import uvicorn

    from api.app import create_app

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json, "api")
    uvicorn.run(
        create_app(settings),
        host=host or settings.api_host,
        port=port or settings.api_port,
        log_config=None,
        access_log=False,
        # Power Automate and proxies reuse connections; close idle ones after a minute.
        timeout_keep_alive=60,
    )


def orchestrator(
    concurrency: Annotated[int, typer.Option(help="Threads handling orchestrator tasks")] = 4,
    beat: Annotated[bool, typer.Option(help="Also run the periodic sweep schedule")] = True,
) -> None:
    """Run the orchestrator worker (and, by default, the sweep's beat)."""
    use_metrics_dir(get_settings())  # before anything imports prometheus_client
    import orchestrator.tasks  # noqa: F401  (registers the tasks)
    from shared.celery_app import get_celery

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json, "orchestrator")
    argv = [
        "--quiet",  # no banner on stdout: every line of the process is a JSON log record
        "worker",
        "-Q", ORCHESTRATOR_QUEUE,
        "-n", f"orchestrator-{os.getpid()}@%h",
        "--pool", "threads",
        "-c", str(concurrency),
        "--loglevel", settings.log_level,
        "--without-mingle",
        "--without-gossip",
    ]
    if beat:
        schedule = settings.data_dir.parent / "celerybeat-schedule"
        schedule.parent.mkdir(parents=True, exist_ok=True)
        argv += ["-B", "--schedule", str(schedule)]
    get_celery().worker_main(argv)


def flower(
    port: Annotated[int | None, typer.Option(help="Default: LLMJOBS_FLOWER_PORT")] = None,
    address: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
) -> None:
    """Serve Flower over this system's broker (key prefix included), behind basic auth."""
    from shared.celery_app import get_celery

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json, "flower")
    if not settings.flower_basic_auth or ":" not in settings.flower_basic_auth:
        raise typer.BadParameter(
            "set LLMJOBS_FLOWER_BASIC_AUTH=user:password; Flower is never served without auth"
        )
    get_celery().start([
        "flower",
        f"--address={address}",
        f"--port={port or settings.flower_port}",
        f"--basic-auth={settings.flower_basic_auth}",
    ])


def beat() -> None:
    """Run only the periodic sweep schedule (for deployments with several orchestrators)."""
    import orchestrator.tasks  # noqa: F401  (registers the tasks)
    from shared.celery_app import get_celery

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json, "beat")
    schedule = settings.data_dir.parent / "celerybeat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    get_celery().start(
        ["--quiet", "beat", "--schedule", str(schedule), "--loglevel", settings.log_level]
    )


def worker(
    backend: Annotated[str, typer.Option(help="Backend name, e.g. local, ollama")],
    concurrency: Annotated[
        int | None, typer.Option(help="Steps at once; default: the backend's limit")
    ] = None,
    lane: Annotated[str, typer.Option(help="interactive, batch or all")] = "all",
) -> None:
    """Run the worker pool of one backend."""
    use_metrics_dir(get_settings())  # before anything imports prometheus_client
    import workers.tasks  # noqa: F401  (registers the tasks)
    from shared.celery_app import get_celery

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json, f"worker:{backend}")
    backends = configured_backends(settings)
    if backend not in backends:
        raise typer.BadParameter(
            f"backend {backend!r} is not configured; configured: {sorted(backends)}",
            param_hint="--backend",
        )
    if lane not in ("interactive", "batch", "all"):
        raise typer.BadParameter("lane must be interactive, batch or all", param_hint="--lane")
    queues = [llm_queue(backend, lname) for lname in ("interactive", "batch")
              if lane in (lname, "all")]
    get_celery().worker_main(
        [
            "--quiet",  # no banner on stdout: every line is a JSON log record
            "worker",
            "-Q", ",".join(queues),
            "-n", f"{backend}-{lane}-{os.getpid()}@%h",
            # Steps wait on the network (or on llama.cpp, which releases the GIL).
            "--pool", "threads",
            "-c", str(concurrency or _default_concurrency(settings, backends[backend], lane)),
            "--loglevel", settings.log_level,
            "--without-mingle",
            "--without-gossip",
        ]
    )


def _default_concurrency(settings: Settings, config: BackendConfig, lane: str) -> int:
    # A batch-lane thread runs a whole chunk whose rows share the process's row slots; a few
    # chunks at once keep those slots full.
    if lane == "batch":
        return batch_window(settings, config)
    return config.max_concurrency


def migrate() -> None:
    """Apply all database migrations."""
    from shared.migrate import upgrade

    settings = get_settings()
    upgrade(settings.database_url)
    typer.echo(f"database is up to date ({_redact(settings.database_url)})")


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def run(
    flower: Annotated[bool, typer.Option(help="Start Flower too")] = True,
) -> None:
    """Start the whole system in one supervised process group."""
    from cli.supervisor import run_all

    run_all(with_flower=flower)
