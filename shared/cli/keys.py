"""`llm-jobs keys …`: API keys, created straight in the database (the operator's tool)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from shared.db import make_engine, make_sessionmaker, session_scope
from shared.keys import DEFAULT_SCOPES, create_key
from shared.migrate import upgrade
from shared.settings import get_settings

app = typer.Typer(no_args_is_help=True)
console = Console()


@app.command("create")
def create(
    tenant: Annotated[str, typer.Option(help="Tenant name; created if new")],
    name: Annotated[str, typer.Option(help="A label for the key")] = "",
    scope: Annotated[
        list[str] | None, typer.Option(help="Repeat for several; default: all but admin")
    ] = None,
) -> None:
    """Create a key and print it once; only its hash is stored."""
    settings = get_settings()
    upgrade(settings.database_url)
    sessions = make_sessionmaker(make_engine(settings.database_url))
    try:
        with session_scope(sessions) as session:
            key = create_key(session, tenant, name, tuple(scope or DEFAULT_SCOPES))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    console.print(f"[bold]{key.secret}[/bold]", soft_wrap=True, highlight=False)
    console.print(
        f"key {key.id} for tenant {tenant!r} ({key.tenant_id}), scopes: {', '.join(key.scopes)}."
        " It is shown only now; store it safely.",
        style="dim",
        highlight=False,
    )
