"""`llm-jobs run`: every process of the system under one supervisor, stopped together."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

from rich.console import Console

from cli.embedded_redis import is_reachable, start_redis
from shared.backends import configured_backends, default_backend
from shared.lanes import interactive_slots
from shared.metrics_setup import use_metrics_dir
from shared.migrate import upgrade
from shared.settings import get_settings

console = Console(stderr=True)
GRACE_S = 20.0


@dataclass
class Child:
    """One supervised process and its restart history."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(self.argv, env=env)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", *args]


def run_all(with_flower: bool = True) -> None:
    """Ensure Redis, migrate, start api/orchestrator/workers/Flower, supervise, stop on signal."""
    settings = get_settings()
    use_metrics_dir(settings, wipe=True)  # children inherit it; old processes' series go
    env = dict(os.environ)
    redis_proc = None
    if settings.redis_url is None:
        if is_reachable("127.0.0.1", 6379):
            env["LLMJOBS_REDIS_URL"] = "redis://127.0.0.1:6379/0"
            console.print("redis: using the one on 127.0.0.1:6379")
        else:
            redis_proc, url = start_redis(settings.data_dir.parent / "redis")
            env["LLMJOBS_REDIS_URL"] = url
            console.print(f"redis: none reachable, started the bundled redis-server at {url}")
    upgrade(settings.database_url)
    console.print("database: migrations applied")

    backends = configured_backends(settings)
    if not backends:
        console.print("[red]no backend configured: set LLMJOBS_OLLAMA_BASE_URL or another[/red]")
        raise SystemExit(2)
    # Beat on its own: exactly one schedule, and a crashed orchestrator never stops the sweep.
    children = [
        Child("api", _cli("api")),
        Child("orchestrator", _cli("orchestrator", "--no-beat")),
        Child("beat", _cli("beat")),
    ]
    for name, config in backends.items():
        # Two pools per backend: batch chunks never hold the slots interactive steps need.
        children.append(Child(f"worker:{name}", _cli(
            "worker", "--backend", name, "--lane", "interactive",
            "--concurrency", str(interactive_slots(settings, config)))))
        children.append(Child(f"worker:{name}:batch", _cli(
            "worker", "--backend", name, "--lane", "batch")))
    children.append(Child("webhooks", _cli("webhooks-worker")))
    flower_auth = settings.flower_basic_auth
    if with_flower:
        if not flower_auth:
            flower_auth = f"admin:{secrets.token_urlsafe(12)}"
        # Through the environment, not argv: `ps` shows every user a command line.
        env["LLMJOBS_FLOWER_BASIC_AUTH"] = flower_auth
        children.append(Child("flower", _cli("flower")))
    for child in children:
        child.start(env)
    api_url = f"http://{settings.api_host}:{settings.api_port}"
    console.print(f"[bold green]llm-jobs is starting[/] — API {api_url} (docs {api_url}/docs)")
    console.print(f"backends: {', '.join(backends)}; default: {default_backend(settings)}")
    if with_flower:
        user, _, password = (flower_auth or "").partition(":")
        console.print(
            f"Flower http://127.0.0.1:{settings.flower_port} (user {user}, password {password})"
        )
    console.print("Ctrl-C stops everything.")
    _supervise(children, env)
    _stop_all(children)
    if redis_proc is not None:
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
    console.print("stopped")


def _supervise(children: list[Child], env: dict[str, str]) -> None:
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stopping:
        time.sleep(0.5)
        for child in children:
            if stopping or child.proc is None or child.proc.poll() is None:
                continue
            now = time.monotonic()
            child.restarts = [t for t in child.restarts if now - t < 60]
            if len(child.restarts) >= 5:
                console.print(f"[red]{child.name} keeps exiting; stopping everything[/]")
                return
            console.print(
                f"[yellow]{child.name} exited with {child.proc.returncode}; restarting[/]"
            )
            child.restarts.append(now)
            child.start(env)


def _stop_all(children: list[Child]) -> None:
    for child in children:
        if child.proc and child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    for child in children:
        if child.proc is None:
            continue
        try:
            child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            console.print(f"{child.name} did not stop in {GRACE_S:.0f} s; killing it")
            child.proc.kill()
            child.proc.wait()
