"""Spreadsheet batch benchmark: N rows against the fake backend vs the ideal rows*latency/slots.

Run: `.venv/bin/python -m bench.batch --rows 20000 --latency 0.2 --concurrency 64`.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from openpyxl import Workbook

from tests.fakellm import FakeLLM
from tests.fixtures.services import broker_namespace, drop_namespace
from tests.fixtures.stack import Stack


def build_workbook(rows: int) -> bytes:
    """A feedback workbook with `rows` comments."""
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["Id", "Comment", "Region"])
    for i in range(rows):
        ws.append([i, f"Customer {i} says the delivery was late but support was kind.", "EU"])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


class RssSampler(threading.Thread):
    """Peak resident memory of each stack process (with its children), sampled twice a second."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.peak_mb: dict[str, float] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.5):
            for name, proc in list(self.stack.processes.items()):
                try:
                    p = psutil.Process(proc.pid)
                    rss = p.memory_info().rss + sum(
                        c.memory_info().rss for c in p.children(recursive=True)
                    )
                except psutil.Error:
                    continue
                self.peak_mb[name] = max(self.peak_mb.get(name, 0.0), rss / 2**20)


def run(rows: int = 20000, latency: float = 0.2, concurrency: int = 64) -> dict[str, Any]:
    """Run one batch of `rows` on a fresh stack; wall time vs ideal and peak RSS per process."""
    data = build_workbook(rows)
    url, prefix = broker_namespace()
    with FakeLLM(latency=latency) as fake, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        env = {
            "LLMJOBS_OLLAMA_BASE_URL": fake.url,
            "LLMJOBS_OLLAMA_MODEL": "fake-model",
            "LLMJOBS_REDIS_URL": url,
            "LLMJOBS_BROKER_KEY_PREFIX": prefix,
            "LLMJOBS_WORKER_CONCURRENCY": str(concurrency),
            # The batch has the backend to itself: all of its slots.
            "LLMJOBS_BATCH_ROW_CONCURRENCY": str(concurrency),
        }
        stack = Stack(workdir, f"sqlite:///{workdir / 'bench.db'}", env)
        try:
            stack.start(["ollama"], lanes=True)
            sampler = RssSampler(stack)
            sampler.start()
            with stack.client(stack.new_key()) as client:
                started = time.monotonic()
                created = client.post(
                    "/v1/jobs/batch-summarize",
                    files={"file": ("bench.xlsx", data)},
                    data={"column": "Comment", "backend": "ollama"},
                    timeout=120,
                )
                created.raise_for_status()
                job = stack.wait_job(client, created.json()["id"], timeout=rows * latency + 600)
                wall = time.monotonic() - started
            sampler.stopped.set()
            sampler.join()
        finally:
            stack.stop()
            drop_namespace(prefix)
        ideal = rows * latency / concurrency
        return {
            "rows": rows,
            "latency_s": latency,
            "concurrency": concurrency,
            "status": job["status"],
            "failed_rows": job["progress"]["failed"],
            "wall_s": round(wall, 2),
            "ideal_s": round(ideal, 2),
            "ratio": round(wall / ideal, 3) if ideal else None,
            "backend_max_in_flight": fake.max_in_flight,
            "backend_requests": len(fake.requests),
            "peak_rss_mb": {k: round(v, 1) for k, v in sorted(sampler.peak_mb.items())},
            "cores": psutil.cpu_count(),
        }


def main() -> None:
    """Command line: print one run's figures as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.batch")
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    print(json.dumps(run(args.rows, args.latency, args.concurrency), indent=2))  # noqa: T201


if __name__ == "__main__":
    main()
