"""`llm-jobs connector export DIR`: write the Power Platform custom connector files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from shared.settings import get_settings

app = typer.Typer(no_args_is_help=True)


@app.command("export")
def export(
    directory: Annotated[Path, typer.Argument(help="Where to write the files")],
    base_url: Annotated[
        str | None,
        typer.Option(help="Public URL of the API, e.g. https://llm.example.com; "
                     "default: LLMJOBS_PUBLIC_BASE_URL"),
    ] = None,
) -> None:
    """Write apiDefinition.swagger.json, apiProperties.json and a README to DIR."""
    from api.app import create_app
    from api.connector import api_properties, swagger
    from api.connector_ops import README

    settings = get_settings()
    url = base_url or settings.public_base_url
    if not url:
        raise typer.BadParameter("give --base-url (or set LLMJOBS_PUBLIC_BASE_URL): the "
                                 "connector needs the address Power Platform will call",
                                 param_hint="--base-url")
    if "://" not in url:
        url = "https://" + url
    document = swagger(create_app(settings).openapi(), url)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "apiDefinition.swagger.json").write_text(json.dumps(document, indent=2) + "\n")
    (directory / "apiProperties.json").write_text(json.dumps(api_properties(), indent=2) + "\n")
    (directory / "README.md").write_text(README)
    typer.echo(f"wrote the connector for {url} to {directory}")
