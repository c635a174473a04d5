"""The `llm-jobs` command: run the processes, manage keys, submit and watch jobs."""

from __future__ import annotations

import typer

from cli import client, connector, keys, serve, sheets, webhooks

app = typer.Typer(
    help="llm-jobs: queue LLM jobs on local and cloud backends.",
    no_args_is_help=True,
    add_completion=False,
)
app.command("api", help="Serve the HTTP API.")(serve.api)
app.command("orchestrator", help="Run the orchestrator (planning, advancing, sweeps).")(
    serve.orchestrator
)
app.command("worker", help="Run the worker pool of one backend.")(serve.worker)
app.command("beat", help="Run only the sweep schedule (when orchestrators run --no-beat).")(
    serve.beat
)
app.command("flower", help="Serve Flower (task monitor) behind basic auth.")(serve.flower)
app.command("migrate", help="Apply database migrations.")(serve.migrate)
app.command("run", help="Start everything (Redis if needed, api, orchestrator, workers, "
            "Flower) and stop it all on Ctrl-C.")(serve.run)
app.command("webhooks-worker", help="Run the webhook delivery worker.")(
    webhooks.webhooks_worker
)
app.add_typer(keys.app, name="keys", help="API keys and tenant limits.")
app.add_typer(connector.app, name="connector",
              help="Export the Power Platform custom connector.")
app.command("submit", help="Submit a job and print it.")(client.submit)
app.command("status", help="Print a job.")(client.status)
app.command("watch", help="Show a job's progress until it ends.")(client.watch)
app.command("batch", help="Summarize or classify every row of a spreadsheet; save the result.")(
    sheets.batch
)

if __name__ == "__main__":
    app()
