"""`llm-jobs submit | status | watch`: the HTTP API from a terminal."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from shared.jobs.status import JobStatus
from shared.settings import get_settings

console = Console()

UrlOpt = Annotated[
    str | None,
    typer.Option("--url", help="API base URL; default: LLMJOBS_PUBLIC_BASE_URL, else host/port"),
]
KeyOpt = Annotated[str, typer.Option("--key", envvar="LLMJOBS_API_KEY", help="API key")]


def _client(url: str | None, key: str) -> httpx.Client:
    settings = get_settings()
    base = url or settings.api_base_url
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _check(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            message = f"{error['type']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            message = response.text[:500]
        console.print(f"[red]{response.status_code} {message}[/red]")
        raise typer.Exit(1)
    data: dict[str, Any] = response.json()
    return data


def submit(
    text: Annotated[str | None, typer.Argument(help="The prompt or text")] = None,
    type: Annotated[str, typer.Option(help="chat, summarize or analyze")] = "chat",
    analysis: Annotated[str, typer.Option(help="For analyze: summary, sentiment, …")] = "summary",
    file: Annotated[Path | None, typer.Option(help="Read the text from a file")] = None,
    body: Annotated[Path | None, typer.Option(help="A full JSON job body")] = None,
    backend: Annotated[str | None, typer.Option()] = None,
    model: Annotated[str | None, typer.Option()] = None,
    wait: Annotated[bool, typer.Option(help="Watch until the job ends")] = False,
    url: UrlOpt = None,
    key: KeyOpt = "",
) -> None:
    """Submit a job."""
    if body is not None:
        payload: dict[str, Any] = json.loads(body.read_text())
    else:
        content = file.read_text() if file else text
        if not content:
            raise typer.BadParameter("give TEXT, --file or --body")
        payload = {"type": type, "input": _input(type, content, analysis)}
    if backend:
        payload["backend"] = backend
    if model:
        payload["model"] = model
    with _client(url, key) as client:
        job = _check(client.post("/v1/jobs", json=payload))
    console.print_json(data=job)
    if wait:
        watch(job["id"], url=url, key=key)


def _input(job_type: str, content: str, analysis: str) -> dict[str, Any]:
    if job_type == "chat":
        return {"messages": [{"role": "user", "content": content}]}
    if job_type == "summarize":
        return {"text": content}
    return {"document": {"text": content}, "analysis": analysis}


def status(job_id: str, url: UrlOpt = None, key: KeyOpt = "") -> None:
    """Print a job."""
    with _client(url, key) as client:
        console.print_json(data=_check(client.get(f"/v1/jobs/{job_id}")))


def watch(job_id: str, url: UrlOpt = None, key: KeyOpt = "") -> None:
    """Show a live progress bar until the job ends, then print it."""
    with _client(url, key) as client, Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failed {task.fields[failed]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(job_id, total=None, failed=0)
        while True:
            response = client.get(f"/v1/jobs/{job_id}")
            job = _check(response)
            p = job["progress"]
            progress.update(
                task,
                total=p["total"] or None,
                completed=p["done"],
                failed=p["failed"],
                description=f"{job_id} {job['status']}",
            )
            if response.status_code == 200:
                break
            time.sleep(min(5.0, float(response.headers.get("retry-after", "1"))))
    console.print_json(data=job)
    if job["status"] != JobStatus.SUCCEEDED:
        raise typer.Exit(1)
