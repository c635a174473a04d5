"""`llm-jobs flower` answers only with basic auth, over the system's own broker namespace."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.fixtures.stack import REPO, free_port


def test_flower_requires_basic_auth(
    broker_namespaces: Callable[[], dict[str, str]], tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LLMJOBS_")},
        **broker_namespaces(),
        "LLMJOBS_FLOWER_BASIC_AUTH": "ops:s3cret-flower",
        "LLMJOBS_DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(REPO),
    }
    log = tmp_path / "flower.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "flower", "--port", str(port)],
            env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 30
        anonymous = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                anonymous = httpx.get(url, timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert anonymous is not None, log.read_text()
        assert anonymous.status_code == 401
        assert httpx.get(url, auth=("ops", "wrong"), timeout=5).status_code == 401
        assert httpx.get(url, auth=("ops", "s3cret-flower"), timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_flower_refuses_to_start_without_auth(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LLMJOBS_")},
        "LLMJOBS_DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(REPO),
    }
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "flower", "--port", str(free_port())],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0
    assert "LLMJOBS_FLOWER_BASIC_AUTH" in done.stdout + done.stderr
