"""Job-path benchmark: direct calls vs llm-jobs' one-call paths, on SQLite and PostgreSQL.

Run: `python -m bench jobpath [--quick] [--database sqlite|postgres|both] [--runs 3]`
(also part of `make bench`). Each run is a fresh stack (api, orchestrator, worker processes
with 64 backend slots, rate limits and quotas off, production clocks) on one in-process fake
LLM answering in 200 ms, and measures, with an asyncio + httpx keep-alive load generator
(warm-up excluded): the direct call to the fake; POST /v1/chat/completions; the job path
(POST /v1/jobs, then GET its Location with `?wait=30`, asking again 50 ms after each 202, so
servers without `wait` are measured too: "polled", against "pushed" when the first GET
already had the answer); GET of a finished job; POST /v1/jobs; a burst of chat jobs on the
64 slots, with the CPU the stack's processes (and their children) spent per job, read from
/proc. The figure reported is the median over runs. Results: bench/results/<date>-jobpath.*

It uses only the HTTP API, tests.fakellm and tests.fixtures, so the file can be copied into
an older checkout to measure before and after side by side.

Profiling the chat-job burst: `--profile DIR` records each stack process with py-spy
(`pip install py-spy`) into DIR/<database>-<run>-<process>.speedscope.json (open in
https://www.speedscope.app); the run's figures are then disturbed. By hand, during any run:
`py-spy top --pid <pid>` or `py-spy dump --pid <pid>` (pids: `ps -ef | grep cli.main`).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlalchemy import bindparam, text

from shared.jobs.status import JOB_TERMINAL
from tests.fakellm import FakeLLM
from tests.fixtures.services import (
    broker_namespace,
    create_pg_database,
    drop_namespace,
    drop_pg_database,
)
from tests.fixtures.stack import Stack

RESULTS = Path(__file__).resolve().parent / "results"
LATENCY = 0.2  # the fake backend's answer time
SLOTS = 64  # backend concurrency slots, over all worker processes
CLIENTS = 32
WAIT_S = 30  # `?wait=` of the job path's GET
POLL_S = 0.05  # pause after a 202 before asking again
MODEL = "bench-model"
TERMINAL = sorted(JOB_TERMINAL)
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The stack fixture's test clocks (a sweep every second, leases of seconds) would add work a
# deployment does not do; these are the settings' defaults. Limits are off: the backend is ours.
ENV = {
    "LLMJOBS_SWEEP_INTERVAL_S": "10",
    "LLMJOBS_STEP_LEASE_S": "30",
    "LLMJOBS_HEARTBEAT_S": "5",
    "LLMJOBS_QUEUED_RESEND_AFTER_S": "30",
    "LLMJOBS_BACKEND_TIMEOUT_S": "120",
    "LLMJOBS_STEP_DEADLINE_S": "600",
    "LLMJOBS_RATE_LIMIT_PER_KEY_PER_MIN": "0",
    "LLMJOBS_RATE_LIMIT_PER_TENANT_PER_MIN": "0",
    "LLMJOBS_TENANT_TOKENS_PER_DAY": "0",
    "LLMJOBS_TENANT_MAX_RUNNING_JOBS": "0",
}


@dataclass(frozen=True)
class Sizes:
    """How much each measurement does."""

    sequential: int  # requests at 1 client (after 3 warm-up ones)
    warmup_s: float  # least closed-loop warm-up at 32 clients, not counted
    window_s: float  # closed-loop measured window
    jobs: int  # chat jobs in the burst on the 64 slots


QUICK = Sizes(sequential=15, warmup_s=2.0, window_s=5.0, jobs=300)
FULL = Sizes(sequential=40, warmup_s=3.0, window_s=10.0, jobs=2000)

Call = Callable[[int], Awaitable[bool]]


@contextmanager
def stack_on(fake: FakeLLM, database: str, workers: int) -> Iterator[Stack]:
    """A fresh stack on `database` whose `workers` ollama worker processes share SLOTS."""
    url, prefix = broker_namespace()
    pg_url = create_pg_database() if database == "postgres" else None
    with tempfile.TemporaryDirectory(prefix="llmjobs-jobpath-") as tmp:
        env = {
            **ENV,
            "LLMJOBS_OLLAMA_BASE_URL": fake.url,
            "LLMJOBS_OLLAMA_MODEL": MODEL,
            "LLMJOBS_REDIS_URL": url,
            "LLMJOBS_BROKER_KEY_PREFIX": prefix,
            # The backend's limit is shared by every worker process through Redis.
            "LLMJOBS_WORKER_CONCURRENCY": str(SLOTS),
        }
        stack = Stack(Path(tmp), pg_url or f"sqlite:///{Path(tmp) / 'bench.db'}", env)
        try:
            if workers == 1:
                stack.start(["ollama"])
            else:
                stack.start([])
                for n in range(workers):
                    stack.spawn(f"worker:ollama:{n}", ["worker", "--backend", "ollama",
                                                       "--concurrency", str(SLOTS // workers)])
                stack.wait_ready()
            yield stack
        finally:
            stack.stop()
            drop_namespace(prefix)
            if pg_url:
                drop_pg_database(pg_url)


# -- CPU of the stack's processes -----------------------------------------------------------

def _pid_cpu_s(pid: int) -> float:
    """utime + stime + cutime + cstime of one process, in seconds."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2:].split()  # fields from the 3rd (state) on
    return sum(int(f) for f in fields[11:15]) / CLK_TCK


def stack_cpu(stack: Stack) -> dict[str, float]:
    """CPU seconds so far of each stack process with its children."""
    out: dict[str, float] = {}
    for name, proc in stack.processes.items():
        try:
            root = psutil.Process(proc.pid)
            pids = [root.pid, *(c.pid for c in root.children(recursive=True))]
        except psutil.Error:
            continue
        out[name] = sum(_pid_cpu_s(pid) for pid in pids)
    return out


def _cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0.0) for name in after}


# -- load generation ------------------------------------------------------------------------

def _client(base_url: str = "", key: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    return httpx.AsyncClient(base_url=base_url, headers=headers, timeout=180, limits=limits)


async def sequential(call: Callable[[int], Awaitable[Any]], n: int) -> float:
    """Median ms of `n` calls made one after another (after three warm-up calls)."""
    for i in range(3):
        await call(-1 - i)
    out = []
    for i in range(n):
        start = time.perf_counter()
        await call(i)
        out.append(time.perf_counter() - start)
    return statistics.median(out) * 1000


async def closed_loop(call: Call, stack: Stack, sizes: Sizes) -> dict[str, float]:
    """CLIENTS tasks calling back to back; what completes in the window after the warm-up.

    The warm-up lasts until every client has had an answer (and at least `warmup_s`), so a
    slow system is measured in its steady state, not while the first answers are pending.
    """
    window: dict[str, float] = {"t0": float("inf"), "t1": float("inf")}
    warmed = asyncio.Event()
    answered = 0
    counter = itertools.count()
    done = errors = 0
    latencies: list[float] = []
    marks: dict[str, Any] = {}

    async def client() -> None:
        nonlocal answered, done, errors
        first = True
        while (start := time.perf_counter()) < window["t1"]:
            try:
                ok = await call(next(counter))
            except httpx.HTTPError:
                ok = False
            end = time.perf_counter()
            if first:
                first, answered = False, answered + 1
                if answered == CLIENTS:
                    warmed.set()
            if window["t0"] <= end <= window["t1"]:
                done += 1
                errors += not ok
                if start >= window["t0"]:
                    latencies.append(end - start)

    async def mark() -> None:
        await asyncio.sleep(sizes.warmup_s)
        await warmed.wait()
        window["t0"] = time.perf_counter()
        window["t1"] = window["t0"] + sizes.window_s
        marks["cpu0"], marks["own0"] = stack_cpu(stack), time.process_time()
        await asyncio.sleep(sizes.window_s)
        marks["cpu1"], marks["own1"] = stack_cpu(stack), time.process_time()

    await asyncio.gather(mark(), *(client() for _ in range(CLIENTS)))
    stack_s = sum(_cpu_delta(marks["cpu0"], marks["cpu1"]).values())
    return {
        "per_s": done / sizes.window_s,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "errors": errors,
        "stack_cpu_ms_per_request": stack_s * 1000 / done if done else float("nan"),
        # The bench process holds the load generator and the fake: near 100% means it limits.
        "bench_process_cpu_pct": (marks["own1"] - marks["own0"]) / sizes.window_s * 100,
    }


def chat_job(content: str) -> dict[str, Any]:
    return {"type": "chat", "backend": "ollama", "model": MODEL,
            "input": {"messages": [{"role": "user", "content": content}]}}


def chat_body(content: str) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}]}


async def job_path(client: httpx.AsyncClient, content: str) -> bool:
    """POST a chat job, then GET its Location with ?wait until 200; True if pushed at once."""
    created = await client.post("/v1/jobs", json=chat_job(content))
    created.raise_for_status()
    location = created.headers["Location"]
    url = f"{location}{'&' if '?' in location else '?'}wait={WAIT_S}"
    first = True
    while True:
        got = await client.get(url)
        if got.status_code == 200:
            if got.json()["status"] != "succeeded":
                raise RuntimeError(f"job path: {got.text[:300]}")
            return first
        if got.status_code != 202:
            raise RuntimeError(f"job path: {got.status_code} {got.text[:300]}")
        first = False
        await asyncio.sleep(POLL_S)


# -- one run --------------------------------------------------------------------------------

def one_run(fake: FakeLLM, database: str, sizes: Sizes, workers: int,
            profile: Path | None, tag: str) -> dict[str, Any]:
    """Every measurement on one fresh stack."""
    with stack_on(fake, database, workers) as stack:
        key = stack.new_key(f"jobpath-{os.urandom(4).hex()}")
        return asyncio.run(_measure(stack, fake, key, sizes, profile, tag))


async def _measure(stack: Stack, fake: FakeLLM, key: str, sizes: Sizes,
                   profile: Path | None, tag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with _client() as direct, _client(stack.api_url, key) as api:

        async def call_direct(i: int) -> bool:
            body = {**chat_body(f"direct {i}"), "stream": False}
            return (await direct.post(f"{fake.url}/api/chat", json=body)).status_code == 200

        async def call_chat(i: int) -> bool:
            got = await api.post("/v1/chat/completions", json=chat_body(f"completion {i}"))
            return got.status_code == 200

        pushed: list[bool] = []

        async def call_job(i: int) -> None:
            pushed.append(await job_path(api, f"job path {i}"))

        _say("direct, chat completions and job path at 1 client")
        direct_1 = await sequential(call_direct, sizes.sequential)
        chat_1 = await sequential(call_chat, sizes.sequential)
        job_1 = await sequential(call_job, sizes.sequential)
        measured = pushed[3:]
        out["direct_1_p50_ms"] = direct_1
        out["chat_1_p50_ms"], out["chat_1_added_ms"] = chat_1, chat_1 - direct_1
        out["job_1_p50_ms"], out["job_1_added_ms"] = job_1, job_1 - direct_1
        out["job_1_pushed_share"] = sum(measured) / len(measured)

        _say(f"direct and chat completions at {CLIENTS} clients")
        out["direct_32"] = await closed_loop(call_direct, stack, sizes)
        out["chat_32"] = await closed_loop(call_chat, stack, sizes)
        out["chat_32_ratio"] = out["chat_32"]["per_s"] / out["direct_32"]["per_s"]

        _say(f"{sizes.jobs} chat jobs on {SLOTS} slots")
        recorders = _start_profiles(stack, profile, tag)
        out["burst"], ids = await _burst(stack, fake, api, sizes.jobs)
        _stop_profiles(recorders)

        _say(f"GET of a finished job and POST /v1/jobs at {CLIENTS} clients")

        async def call_get(i: int) -> bool:
            return (await api.get(f"/v1/jobs/{ids[i % len(ids)]}")).status_code == 200

        async def call_post(i: int) -> bool:
            return (await api.post("/v1/jobs", json=chat_job(f"post {i}"))).status_code == 202

        out["get_finished_32"] = await closed_loop(call_get, stack, sizes)
        # Last: the jobs it creates still run when the stack stops.
        out["post_32"] = await closed_loop(call_post, stack, sizes)
    return out


async def _burst(stack: Stack, fake: FakeLLM, api: httpx.AsyncClient,
                 jobs: int) -> tuple[dict[str, Any], list[str]]:
    """Submit `jobs` chat jobs from CLIENTS clients; slot use and stack CPU until all end."""
    ids: list[str] = []
    pending = iter(range(jobs))
    busy0, cpu0 = fake.busy_seconds(), stack_cpu(stack)
    start = time.perf_counter()

    async def submit() -> None:
        for i in pending:
            created = await api.post("/v1/jobs", json=chat_job(f"burst {i}"))
            created.raise_for_status()
            ids.append(created.json()["id"])

    await asyncio.gather(*(submit() for _ in range(CLIENTS)))
    submitted = time.perf_counter() - start
    counts: dict[str, int] = {}
    while sum(counts.get(s, 0) for s in TERMINAL) < jobs:
        await asyncio.sleep(0.05)
        counts = await asyncio.to_thread(_status_counts, stack, ids)
    wall = time.perf_counter() - start
    cpu = _cpu_delta(cpu0, stack_cpu(stack))
    busy = fake.busy_seconds() - busy0
    return {
        "jobs": jobs,
        "succeeded": counts.get("succeeded", 0),
        "wall_s": wall,
        "submit_s": submitted,
        "jobs_per_s": jobs / wall,
        "slot_busy": busy / (SLOTS * wall),
        "slot_busy_nominal": jobs * LATENCY / (SLOTS * wall),
        "cpu_ms_per_job": sum(cpu.values()) * 1000 / jobs,
        "cpu_ms_per_job_by_process": {k: v * 1000 / jobs for k, v in sorted(cpu.items())},
    }, ids


def _status_counts(stack: Stack, ids: list[str]) -> dict[str, int]:
    query = text("SELECT status, count(*) FROM jobs WHERE id IN :ids GROUP BY status")
    with stack.sessions() as session:
        rows = session.execute(query.bindparams(bindparam("ids", expanding=True)), {"ids": ids})
        return {str(status): int(n) for status, n in rows}


def _start_profiles(stack: Stack, profile: Path | None, tag: str) -> list[subprocess.Popen[bytes]]:
    if profile is None:
        return []
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        _say("--profile: py-spy not found (pip install py-spy); not profiling")
        return []
    profile.mkdir(parents=True, exist_ok=True)
    recorders = []
    for name, proc in stack.processes.items():
        target = profile / f"{tag}-{name.replace(':', '-')}.speedscope.json"
        recorders.append(subprocess.Popen(
            [spy, "record", "--pid", str(proc.pid), "--subprocesses", "--nonblocking",
             "--format", "speedscope", "--output", str(target)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
    time.sleep(1.0)  # py-spy attaches before the burst starts
    return recorders


def _stop_profiles(recorders: list[subprocess.Popen[bytes]]) -> None:
    for recorder in recorders:
        recorder.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    for recorder in recorders:
        recorder.wait(60)


def _say(message: str) -> None:
    print(f"    {message}", file=sys.stderr, flush=True)


# -- runs, medians, table -------------------------------------------------------------------

def run(quick: bool = False, databases: tuple[str, ...] = ("sqlite", "postgres"),
        runs: int | None = None, workers: int = 1, profile: Path | None = None) -> dict[str, Any]:
    """Median of `runs` runs on each database; the per-run figures are kept too."""
    sizes = QUICK if quick else FULL
    runs = runs or (1 if quick else 3)
    out: dict[str, Any] = {"sizes": sizes.__dict__, "runs": runs, "slots": SLOTS,
                           "worker_processes": workers, "clients": CLIENTS,
                           "latency_s": LATENCY, "wait_s": WAIT_S, "poll_s": POLL_S}
    with FakeLLM(latency=LATENCY) as fake:
        for database in databases:
            each = []
            for n in range(runs):
                _say(f"jobpath on {database}: run {n + 1}/{runs}")
                each.append(one_run(fake, database, sizes, workers, profile, f"{database}-{n}"))
            out[database] = {"median": median_of(each), "runs": each}
    return out


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-key median over runs, nested dicts included."""
    out: dict[str, Any] = {}
    for key, first in runs[0].items():
        values = [r[key] for r in runs]
        if isinstance(first, dict):
            out[key] = median_of(values)
        else:
            out[key] = round(statistics.median(values), 3)
    return out


def cells(m: dict[str, Any]) -> dict[str, str]:
    """One database's median figures, as table cells."""
    b = m["burst"]
    share = m["job_1_pushed_share"]
    mode = "pushed" if share == 1 else "polled" if share == 0 else f"mixed, {share:.0%} pushed"
    errors = sum(m[k]["errors"] for k in ("direct_32", "chat_32", "get_finished_32", "post_32"))
    out = {
        "direct_1": f"{m['direct_1_p50_ms']:.1f} ms",
        "direct_32": f"{m['direct_32']['per_s']:.0f} req/s",
        "chat_1": f"{m['chat_1_p50_ms']:.1f} ms (+{m['chat_1_added_ms']:.1f})",
        "chat_32": f"{m['chat_32']['per_s']:.1f} req/s ({m['chat_32_ratio']:.2f}× direct)",
        "job_1": f"{m['job_1_p50_ms']:.1f} ms (+{m['job_1_added_ms']:.1f}), {mode}",
        "get_32": f"{m['get_finished_32']['per_s']:.0f} req/s",
        "post_32": f"{m['post_32']['per_s']:.0f} req/s",
        "burst": f"slots {b['slot_busy'] * 100:.0f}% busy, {b['jobs_per_s']:.1f} jobs/s "
                 f"(ideal {SLOTS / LATENCY:.0f}), {b['wall_s']:.1f} s",
        "cpu": f"{b['cpu_ms_per_job']:.1f} ms",
    }
    if errors:
        out["errors"] = f"{errors:g} failed requests in the 32-client windows"
    return out


# Row key: (label, goal).
ROWS = {
    "direct_1": ("direct call to the fake, 1 client p50", ""),
    "direct_32": (f"direct call to the fake, {CLIENTS} clients", ""),
    "chat_1": ("POST /v1/chat/completions, 1 client p50", "added ≤ 10 ms"),
    "chat_32": (f"POST /v1/chat/completions, {CLIENTS} clients", "≥ 0.6× direct"),
    "job_1": (f"POST /v1/jobs + GET ?wait={WAIT_S}, 1 client p50", "added ≤ 15 ms"),
    "get_32": (f"GET /v1/jobs/{{id}} (finished), {CLIENTS} clients", "≥ 1,000 req/s"),
    "post_32": (f"POST /v1/jobs, {CLIENTS} clients", "≥ 300 req/s"),
    "burst": (f"chat jobs burst on {SLOTS} slots", "slots ≥ 90% busy"),
    "cpu": ("CPU per one-call job (api + orchestrator + workers)", "≤ 12 ms"),
    "errors": ("errors", "none"),
}
NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def table(results: dict[str, Any]) -> str:
    """Markdown: one column per database, then the goal."""
    dbs = [d for d in NAMES if d in results]
    per_db = {d: cells(results[d]["median"]) for d in dbs}
    keys = [k for k in ROWS if any(k in c for c in per_db.values())]
    lines = ["| measure | " + " | ".join(NAMES[d] for d in dbs) + " | goal |",
             "|---" * (len(dbs) + 2) + "|"]
    for k in keys:
        row = [per_db[d].get(k, "") for d in dbs]
        lines.append(f"| {ROWS[k][0]} | " + " | ".join(row) + f" | {ROWS[k][1]} |")
    return "\n".join(lines)


def rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    """Two-column rows (measure, one value per database) for bench's main table."""
    dbs = [d for d in NAMES if d in results]
    per_db = {d: cells(results[d]["median"]) for d in dbs}
    keys = [k for k in ROWS if any(k in c for c in per_db.values())]
    return [(f"job path: {ROWS[k][0]}",
             " · ".join(f"{NAMES[d]} {per_db[d][k]}" for d in dbs if k in per_db[d]))
            for k in keys]


def main(argv: list[str] | None = None) -> None:
    """Run, print the table, write bench/results/<date>-jobpath[-quick].json and .md."""
    parser = argparse.ArgumentParser(prog="python -m bench jobpath")
    parser.add_argument("--quick", action="store_true", help="one run, fewer requests")
    parser.add_argument("--database", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--runs", type=int, default=None, help="runs per database (median)")
    parser.add_argument("--workers", type=int, default=1,
                        help=f"worker processes sharing the {SLOTS} slots")
    parser.add_argument("--profile", type=Path, default=None,
                        help="record each process with py-spy during the chat-job burst")
    args = parser.parse_args(argv)
    databases = ("sqlite", "postgres") if args.database == "both" else (args.database,)
    started = time.monotonic()
    results = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        **run(args.quick, databases, args.runs, args.workers, args.profile),
    }
    results["duration_s"] = round(time.monotonic() - started, 1)
    text_table = table(results)
    print(text_table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = dt.date.today().isoformat() + "-jobpath" + ("-quick" if args.quick else "")
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    header = (f"# llm-jobs job-path benchmark {results['date']} ({results['mode']}, median of "
              f"{results['runs']})\n\nMachine: {results['machine']['cores']} cores, "
              f"{results['machine']['platform']}, Python {results['machine']['python']}. Fake "
              f"backend in the bench process, {LATENCY * 1000:.0f} ms; {SLOTS} slots on "
              f"{args.workers} worker process(es); limits off; {CLIENTS} keep-alive clients.\n\n")
    (RESULTS / f"{stem}.md").write_text(header + text_table + "\n")
    print(f"wrote {RESULTS / stem}.json and .md ({results['duration_s']} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
