"""`llm-jobs batch FILE`: upload a spreadsheet as a sheets job, watch its rows, save the output."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cli.client import KeyOpt, UrlOpt, _check, _client, console
from shared.jobs.status import JobStatus


def batch(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help=".xlsx, .csv, .jsonl")],
    column: Annotated[str, typer.Option(help="Header name or column letter of the input")],
    instructions: Annotated[
        str | None, typer.Option(help="Per-row prompt; {value} and {row[Header]} are filled in")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Where to write the output; default FILE-results.EXT")
    ] = None,
    sheet: Annotated[str | None, typer.Option(help="Default: the first sheet")] = None,
    output_column: Annotated[str | None, typer.Option(help="Name of the answer column")] = None,
    mode: Annotated[str, typer.Option(help="summarize or classify")] = "summarize",
    labels: Annotated[str | None, typer.Option(help="classify: comma-separated labels")] = None,
    backend: Annotated[str | None, typer.Option()] = None,
    model: Annotated[str | None, typer.Option()] = None,
    run_after: Annotated[str | None, typer.Option(help="RFC 3339 time to start at")] = None,
    url: UrlOpt = None,
    key: KeyOpt = "",
) -> None:
    """Summarize or classify every row of a spreadsheet and write the answered copy."""
    fields = {
        "column": column, "instructions": instructions, "sheet": sheet, "mode": mode,
        "output_column": output_column, "labels": labels, "backend": backend, "model": model,
        "run_after": run_after,
    }
    data = {k: v for k, v in fields.items() if v is not None}
    target = out or file.with_name(f"{file.stem}-results{file.suffix}")
    with _client(url, key) as client:
        with file.open("rb") as fh:
            job = _check(client.post("/v1/jobs/batch-summarize", data=data,
                                     files={"file": (file.name, fh)}, timeout=300))
        console.print(f"job {job['id']}: {job['progress']['total']} rows queued")
        job = _watch(client, job["id"])
        if job["status"] != JobStatus.SUCCEEDED:
            console.print_json(data=job)
            raise typer.Exit(1)
        response = client.get(f"/v1/jobs/{job['id']}/output", timeout=300)
        if response.status_code != 200:
            _check(response)
        target.write_bytes(response.content)
    result = job["result"] or {}
    console.print(
        f"[green]done[/green]: {result.get('rows', 0)} rows, {result.get('failed', 0)} failed, "
        f"{result.get('empty_rows', 0)} empty rows skipped → {target}"
    )


def _watch(client: httpx.Client, job_id: str) -> dict[str, Any]:
    """A live bar of rows done and failed, with rate and ETA, until the job ends."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failed {task.fields[failed]}"),
        TextColumn("{task.fields[rate]} rows/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(job_id, total=None, failed=0, rate="-")
        started = time.monotonic()
        while True:
            response = client.get(f"/v1/jobs/{job_id}")
            job = _check(response)
            p = job["progress"]
            finished = p["done"] + p["failed"]
            elapsed = max(time.monotonic() - started, 1e-6)
            progress.update(
                task,
                total=p["total"] or None,
                completed=finished,
                failed=p["failed"],
                rate=f"{finished / elapsed:.1f}" if finished else "-",
                description=f"{job_id} {job['status']}",
            )
            if response.status_code == 200:
                return job
            time.sleep(min(2.0, float(response.headers.get("retry-after", "1"))))
