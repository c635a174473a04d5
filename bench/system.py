"""The system under measure: a real stack (api, orchestrator, workers) on a loopback fake LLM."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from shared.jobs.status import JOB_TERMINAL
from shared.models import Job
from tests.fakellm import FakeLLM
from tests.fixtures.services import (
    broker_namespace,
    create_pg_database,
    drop_namespace,
    drop_pg_database,
)
from tests.fixtures.stack import Stack

CONCURRENCY = 8  # steps per worker process (LLMJOBS_WORKER_CONCURRENCY)
TERMINAL = sorted(JOB_TERMINAL)


@contextmanager
def system(fake: FakeLLM, workers: int = 1, database: str = "sqlite") -> Iterator[Stack]:
    """A fresh stack (SQLite or PostgreSQL) with `workers` ollama worker processes on `fake`."""
    url, prefix = broker_namespace()
    pg_url = create_pg_database() if database == "postgres" else None
    with tempfile.TemporaryDirectory(prefix="llmjobs-bench-") as tmp:
        env = {
            "LLMJOBS_OLLAMA_BASE_URL": fake.url,
            "LLMJOBS_OLLAMA_MODEL": "bench-model",
            "LLMJOBS_REDIS_URL": url,
            "LLMJOBS_BROKER_KEY_PREFIX": prefix,
            "LLMJOBS_WORKER_CONCURRENCY": str(CONCURRENCY),
            # The whole backend belongs to the benchmark: no per-key or per-tenant limits.
            "LLMJOBS_RATE_LIMIT_PER_KEY_PER_MIN": "0",
            "LLMJOBS_RATE_LIMIT_PER_TENANT_PER_MIN": "0",
        }
        stack = Stack(Path(tmp), pg_url or f"sqlite:///{Path(tmp) / 'bench.db'}", env)
        try:
            stack.start(["ollama"])
            for n in range(1, workers):
                stack.spawn(f"worker:ollama:{n}", ["worker", "--backend", "ollama"])
            stack.wait_ready()
            yield stack
        finally:
            stack.stop()
            drop_namespace(prefix)
            if pg_url:
                drop_pg_database(pg_url)


def chat(content: str) -> dict[str, Any]:
    return {"type": "chat", "backend": "ollama", "model": "bench-model",
            "input": {"messages": [{"role": "user", "content": content}]}}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def overhead(stack: Stack, fake: FakeLLM, jobs: int) -> dict[str, float]:
    """p50/p99 of submit→result one job at a time, against the same call made directly."""
    direct: list[float] = []
    body = {"model": "bench-model", "messages": [{"role": "user", "content": "hi"}],
            "stream": False}
    with httpx.Client(timeout=30) as client:
        for _ in range(jobs):
            start = time.perf_counter()
            client.post(f"{fake.url}/api/chat", json=body).raise_for_status()
            direct.append(time.perf_counter() - start)
    system_s: list[float] = []
    with stack.client(stack.new_key()) as client:
        for i in range(jobs):
            start = time.perf_counter()
            job = client.post("/v1/jobs", json=chat(f"overhead {i}")).json()
            # A tight poll: the figure is the system's, not the client's polling interval.
            while client.get(f"/v1/jobs/{job['id']}").status_code == 202:
                time.sleep(0.002)
            system_s.append(time.perf_counter() - start)
    ms = 1000.0
    return {
        "direct_p50_ms": percentile(direct, 50) * ms,
        "direct_p99_ms": percentile(direct, 99) * ms,
        "system_p50_ms": percentile(system_s, 50) * ms,
        "system_p99_ms": percentile(system_s, 99) * ms,
        "added_p50_ms": (percentile(system_s, 50) - percentile(direct, 50)) * ms,
        "added_p99_ms": (percentile(system_s, 99) - percentile(direct, 99)) * ms,
    }


def throughput(stack: Stack, fake: FakeLLM, jobs: int, slots: int) -> dict[str, float]:
    """Jobs/s end to end for `jobs` submitted at once, and how busy the backend's slots were."""
    key = stack.new_key(f"bench-{uuid.uuid4().hex[:8]}")
    busy_before = fake.busy_seconds()
    start = time.perf_counter()
    ids = asyncio.run(_submit_all(stack, key, jobs, clients=16))
    while _finished(stack, ids) < jobs:
        time.sleep(0.05)
    wall = time.perf_counter() - start
    busy = fake.busy_seconds() - busy_before
    return {"jobs": jobs, "wall_s": wall, "jobs_per_s": jobs / wall,
            "slot_utilisation": busy / (wall * slots)}


def _finished(stack: Stack, ids: list[str]) -> int:
    with stack.sessions() as session:
        return int(session.scalar(
            select(func.count()).select_from(Job).where(Job.id.in_(ids),
                                                        Job.status.in_(TERMINAL))
        ) or 0)


async def _submit_all(stack: Stack, key: str, jobs: int, clients: int) -> list[str]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(jobs):
        queue.put_nowait(i)
    ids: list[str] = []
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=60,
                                 limits=limits) as client:

        async def one() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                response = await client.post("/v1/jobs", json=chat(f"throughput {i}"))
                response.raise_for_status()
                ids.append(response.json()["id"])

        await asyncio.gather(*(one() for _ in range(clients)))
    return ids


def api_rates(stack: Stack, seconds: float, clients: int = 32) -> dict[str, float]:
    """Requests/s of POST /v1/jobs, then GET /v1/jobs/{id}, from `clients` concurrent clients."""
    key = stack.new_key(f"bench-{uuid.uuid4().hex[:8]}")
    return asyncio.run(_api_rates(stack, key, seconds, clients))


async def _api_rates(stack: Stack, key: str, seconds: float, clients: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=clients)
    ids: list[str] = []
    errors = 0
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=60,
                                 limits=limits) as client:

        async def hammer(make: Any, until: float) -> int:
            nonlocal errors
            done = 0
            while time.perf_counter() < until:
                response = await make()
                if response.status_code >= 400:
                    errors += 1
                done += 1
            return done

        async def post() -> httpx.Response:
            response = await client.post("/v1/jobs", json=chat("api"))
            if response.status_code == 202:
                ids.append(response.json()["id"])
            return response

        start = time.perf_counter()
        posts = sum(await asyncio.gather(*(hammer(post, start + seconds)
                                           for _ in range(clients))))
        post_rate = posts / (time.perf_counter() - start)
        counter = iter(range(10**9))

        async def get() -> httpx.Response:
            return await client.get(f"/v1/jobs/{ids[next(counter) % len(ids)]}")

        start = time.perf_counter()
        gets = sum(await asyncio.gather(*(hammer(get, start + seconds) for _ in range(clients))))
        get_rate = gets / (time.perf_counter() - start)
    return {"post_per_s": post_rate, "get_per_s": get_rate, "clients": clients,
            "errors": errors}


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per-key median over runs (the figure reported), rounded for reading."""
    keys = runs[0].keys()
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in keys}
