"""`make bench` / `python -m bench [--quick]`: llm-jobs against a loopback fake LLM.

Overhead, throughput (0 ms and 200 ms backend), API requests/s and worker scaling, medians
of several runs, side by side in one table; plus the job-path (bench/jobpath.py),
spreadsheet, analyze and backend benchmarks when their modules are present. Writes
bench/results/<date>.json and .md. `python -m bench jobpath [...]` runs only the job path.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from bench.system import CONCURRENCY, api_rates, median_of, overhead, system, throughput
from tests.fakellm import FakeLLM

RESULTS = Path(__file__).resolve().parent / "results"


def core(runs: int, quick: bool) -> dict[str, Any]:
    """Overhead, throughput and API rates on one worker process; scaling on 1, 2, 4."""
    n_overhead, n_fast, n_slow, api_s = (40, 150, 120, 3.0) if quick else (200, 600, 400, 10.0)
    out: dict[str, Any] = {}
    with FakeLLM() as fake:
        with system(fake) as stack:
            over, fast, slow, api = [], [], [], []
            for run in range(runs):
                print(f"  run {run + 1}/{runs}: overhead, throughput, api", file=sys.stderr)
                fake.latency = 0.0
                over.append(overhead(stack, fake, n_overhead))
                fast.append(throughput(stack, fake, n_fast, CONCURRENCY))
                fake.latency = 0.2
                slow.append(throughput(stack, fake, n_slow, CONCURRENCY))
                fake.latency = 0.0
                api.append(api_rates(stack, api_s))
            out["overhead"] = median_of(over)
            out["throughput_0ms"] = median_of(fast)
            out["throughput_200ms"] = median_of(slow)
            out["api"] = median_of(api)
        # The embedded default (SQLite) has one writer; a deployment's PostgreSQL has many.
        print("  throughput, backend 200 ms, on PostgreSQL", file=sys.stderr)
        with system(fake, database="postgres") as stack:
            fake.latency = 0.2
            out["throughput_200ms_postgres"] = median_of(
                [throughput(stack, fake, n_slow, CONCURRENCY) for _ in range(runs)]
            )
            fake.latency = 0.0
        scaling: dict[str, Any] = {}
        for workers in (1, 2, 4):
            print(f"  scaling: {workers} worker process(es)", file=sys.stderr)
            with system(fake, workers=workers) as stack:
                fake.latency = 0.0
                scaling[str(workers)] = median_of(
                    [throughput(stack, fake, n_fast, CONCURRENCY * workers) for _ in range(runs)]
                )
        out["scaling_0ms"] = scaling
    return out


def optional(quick: bool) -> dict[str, Any]:
    """The other engineers' benchmarks, each guarded: a missing one is reported, not fatal."""
    plans: list[tuple[str, str, str, dict[str, Any]]] = [
        ("spreadsheet", "bench.batch", "run",
         {"rows": 2000 if quick else 20000, "latency": 0.2, "concurrency": 64}),
        ("analyze", "bench.analyze", "run", {"pages": 20 if quick else 60, "local": not quick}),
        ("retry_after", "bench.backends", "retry_after_added_wait", {"runs": 1 if quick else 3}),
    ]
    if not quick:
        plans.append(("local_model", "bench.backends", "local_tokens_per_second", {}))
    out: dict[str, Any] = {}
    for name, module, function, kwargs in plans:
        print(f"  {name}: {module}.{function}({kwargs})", file=sys.stderr)
        try:
            fn = getattr(importlib.import_module(module), function)
        except (ImportError, AttributeError) as exc:
            out[name] = {"skipped": f"{module}.{function} is not available: {exc}"}
            continue
        try:
            out[name] = fn(**kwargs)
        except Exception as exc:  # one broken benchmark must not lose the others' figures
            out[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    return out


def table(results: dict[str, Any]) -> str:
    """A Markdown table of the headline figures."""
    c = results["core"]
    o, t0, t2, api = c["overhead"], c["throughput_0ms"], c["throughput_200ms"], c["api"]
    rows = [
        ("overhead p50 (direct → via llm-jobs)",
         f"{o['direct_p50_ms']:.1f} → {o['system_p50_ms']:.1f} ms (+{o['added_p50_ms']:.1f})"),
        ("overhead p99 (direct → via llm-jobs)",
         f"{o['direct_p99_ms']:.1f} → {o['system_p99_ms']:.1f} ms (+{o['added_p99_ms']:.1f})"),
        ("throughput, backend 0 ms", f"{t0['jobs_per_s']:.1f} jobs/s"),
        ("throughput, backend 200 ms",
         f"{t2['jobs_per_s']:.1f} jobs/s, slots {t2['slot_utilisation'] * 100:.0f}% busy "
         f"(ideal {CONCURRENCY / 0.2:.0f} jobs/s)"),
        ("throughput, backend 200 ms, PostgreSQL",
         f"{c['throughput_200ms_postgres']['jobs_per_s']:.1f} jobs/s, slots "
         f"{c['throughput_200ms_postgres']['slot_utilisation'] * 100:.0f}% busy"),
        ("API POST /v1/jobs, 32 clients", f"{api['post_per_s']:.0f} req/s"),
        ("API GET /v1/jobs/{id}, 32 clients", f"{api['get_per_s']:.0f} req/s"),
    ]
    for workers, figures in c["scaling_0ms"].items():
        rows.append((f"scaling: {workers} worker process(es), 0 ms",
                     f"{figures['jobs_per_s']:.1f} jobs/s"))
    jobpath = results.get("jobpath") or {}
    if "skipped" in jobpath or "error" in jobpath:
        rows.append(("job path", _short(jobpath)))
    elif jobpath:
        rows += importlib.import_module("bench.jobpath").rows(jobpath)
    for name, figures in results["optional"].items():
        rows.append((name, _short(figures)))
    lines = ["| measure | result |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def _short(figures: Any) -> str:
    if not isinstance(figures, dict):
        return str(figures)[:200]
    if "skipped" in figures or "error" in figures:
        return str(figures.get("skipped") or figures.get("error"))[:200]
    flat: dict[str, Any] = {}
    for key, value in figures.items():
        if isinstance(value, dict):  # one level of nesting, e.g. {"fake": {...}}
            flat.update({f"{key}.{k}": v for k, v in value.items()
                         if not isinstance(v, dict | list)})
        elif not isinstance(value, list):
            flat[key] = value
    return ", ".join(f"{k}={v}" for k, v in list(flat.items())[:8])


def job_path(quick: bool, runs: int) -> dict[str, Any]:
    """Direct vs llm-jobs' one-call paths on SQLite and PostgreSQL; guarded like the others."""
    print("  job path: bench.jobpath.run", file=sys.stderr)
    try:
        module = importlib.import_module("bench.jobpath")
    except ImportError as exc:
        return {"skipped": f"bench.jobpath is not available: {exc}"}
    try:
        figures: dict[str, Any] = module.run(quick=quick, runs=runs)
    except Exception as exc:  # one broken benchmark must not lose the others' figures
        return {"error": f"{type(exc).__name__}: {exc}"[:500]}
    return figures


def main(argv: list[str] | None = None) -> None:
    """Run, print the table, write the results."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["jobpath"]:
        importlib.import_module("bench.jobpath").main(argv[1:])
        return
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="small counts, one run")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (median)")
    parser.add_argument("--core-only", action="store_true",
                        help="skip the job-path, spreadsheet, analyze and backend benchmarks")
    args = parser.parse_args(argv)
    runs = args.runs or (1 if args.quick else 3)
    started = time.monotonic()
    print(f"llm-jobs benchmark ({'quick' if args.quick else 'full'}, {runs} run(s) per figure)",
          file=sys.stderr)
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "runs": runs,
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "worker_concurrency": CONCURRENCY,
        "core": core(runs, args.quick),
        "jobpath": {} if args.core_only else job_path(args.quick, runs),
        "optional": {} if args.core_only else optional(args.quick),
    }
    results["duration_s"] = round(time.monotonic() - started, 1)
    text = table(results)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = dt.date.today().isoformat() + ("-quick" if args.quick else "")
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    header = (f"# llm-jobs benchmark {results['date']} ({results['mode']}, median of {runs})\n\n"
              f"Machine: {results['machine']['cores']} cores, {results['machine']['platform']},"
              f" Python {results['machine']['python']}. Fake backend on loopback; "
              f"{CONCURRENCY} steps per worker process; SQLite unless marked PostgreSQL; "
              "the machine's Redis.\n\n")
    (RESULTS / f"{stem}.md").write_text(header + text + "\n")
    print(f"wrote {RESULTS / stem}.json and .md ({results['duration_s']} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
