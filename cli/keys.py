"""`llm-jobs keys …`: API keys, managed straight in the database (the operator's tool)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db import make_engine, make_sessionmaker, session_scope
from shared.keys import (
    DEFAULT_SCOPES,
    LastAdminKey,
    UnknownKey,
    create_key,
    ensure_tenant,
    list_keys,
    revoke_key,
    rotate_key,
)
from shared.migrate import upgrade
from shared.models import Tenant, utcnow
from shared.settings import get_settings

app = typer.Typer(no_args_is_help=True)
console = Console()
console_err = Console(stderr=True)

_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> dt.timedelta:
    """`30m`, `24h`, `90d` → a timedelta; BadParameter naming the format otherwise."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise typer.BadParameter(f"{text!r} is not a duration like 30m, 24h, 90d or 2w")
    return dt.timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


@contextmanager
def _session() -> Iterator[Session]:
    settings = get_settings()
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            yield session
    finally:
        engine.dispose()


def _show_secret(secret: str) -> None:
    console.print(f"[bold]{secret}[/bold]", soft_wrap=True, highlight=False)


@app.command("create")
def create(
    tenant: Annotated[str, typer.Option(help="Tenant name; created if new")],
    name: Annotated[str, typer.Option(help="A label for the key")] = "",
    scope: Annotated[
        list[str] | None, typer.Option(help="Repeat for several; default: all but admin")
    ] = None,
    expires_in: Annotated[
        str | None, typer.Option(help="Lifetime like 90d or 12h; default: no expiry")
    ] = None,
    rate_limit: Annotated[
        int | None, typer.Option(help="Requests per minute for this key; default: the setting")
    ] = None,
) -> None:
    """Create a key and print it once; only its hash is stored."""
    expires_at = utcnow() + parse_duration(expires_in) if expires_in else None
    try:
        with _session() as session:
            key = create_key(
                session, tenant, name, tuple(scope or DEFAULT_SCOPES),
                expires_at=expires_at, rate_limit_per_min=rate_limit,
            )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    _show_secret(key.secret)
    console.print(
        f"key {key.id} for tenant {tenant!r} ({key.tenant_id}), scopes: {', '.join(key.scopes)}"
        + (f", expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else "")
        + ". It is shown only now; store it safely.",
        style="dim",
        highlight=False,
    )


@app.command("list")
def list_(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys")] = None,
) -> None:
    """List keys (prefix, scopes, state, last use); never the secrets."""
    with _session() as session:
        tenant_id = None
        if tenant is not None:
            tenant_id = session.scalar(select(Tenant.id).where(Tenant.name == tenant))
            if tenant_id is None:
                raise typer.BadParameter(f"no tenant named {tenant!r}")
        names = dict(session.execute(select(Tenant.id, Tenant.name)).tuples().all())
        keys = list_keys(session, tenant_id)
        table = Table("tenant", "name", "prefix", "scopes", "state", "expires", "last used")
        table.add_column("id", no_wrap=True)  # the id is what revoke/rotate take: never wrapped
        table.columns.insert(0, table.columns.pop())
        now = utcnow()
        for k in keys:
            state = "revoked" if k.revoked_at else (
                "expired" if k.expires_at and k.expires_at <= now else "active"
            )
            table.add_row(
                k.id, names.get(k.tenant_id, k.tenant_id), k.name, k.prefix + "…",
                ",".join(k.scopes), state,
                f"{k.expires_at:%Y-%m-%d %H:%M}" if k.expires_at else "-",
                f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "-",
            )
    console.print(table)


@app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (key_…)")]) -> None:
    """Revoke a key at once (never the last working admin key of its tenant)."""
    try:
        with _session() as session:
            revoke_key(session, key_id)
    except UnknownKey as exc:
        raise typer.BadParameter(str(exc)) from exc
    except LastAdminKey as exc:
        console_err.print(f"refused: {exc}", highlight=False)
        raise typer.Exit(1) from exc
    console.print(f"key {key_id} revoked.", highlight=False)


@app.command("rotate")
def rotate(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_…)")],
    grace: Annotated[
        str, typer.Option(help="How long the old key keeps working, like 24h or 7d")
    ] = "24h",
) -> None:
    """Make a replacement key; the old one keeps working for the grace period."""
    period = parse_duration(grace)
    try:
        with _session() as session:
            new, old = rotate_key(session, key_id, period)
            old_expiry = old.expires_at
    except UnknownKey as exc:
        raise typer.BadParameter(str(exc)) from exc
    _show_secret(new.secret)
    console.print(
        f"new key {new.id} replaces {key_id}, which stops working at "
        f"{old_expiry:%Y-%m-%d %H:%M} UTC. The new key is shown only now; store it safely.",
        style="dim",
        highlight=False,
    )


@app.command("tenant")
def tenant_policy(
    tenant: Annotated[str, typer.Option(help="Tenant name; created if new")],
    rate_limit: Annotated[
        int | None, typer.Option(help="Requests per minute, all keys together; -1: default")
    ] = None,
    tokens_per_day: Annotated[
        int | None, typer.Option(help="Tokens per UTC day; 0: unlimited; -1: default")
    ] = None,
    max_running_jobs: Annotated[
        int | None, typer.Option(help="Jobs running at once (more wait); -1: default")
    ] = None,
    redact_pii: Annotated[
        bool | None, typer.Option(help="Redact PII before text goes to a cloud backend")
    ] = None,
) -> None:
    """Set (or show) a tenant's limits, quotas and PII redaction."""
    with _session() as session:
        row = ensure_tenant(session, tenant)
        for field, value in (("rate_limit_per_min", rate_limit),
                             ("tokens_per_day", tokens_per_day),
                             ("max_running_jobs", max_running_jobs)):
            if value is not None:
                setattr(row, field, None if value < 0 else value)
        if redact_pii is not None:
            row.redact_pii = redact_pii
        def show(value: int | None) -> str:
            return "default" if value is None else str(value)

        shown = (
            f"tenant {row.name!r} ({row.id}): rate limit {show(row.rate_limit_per_min)}/min, "
            f"tokens/day {show(row.tokens_per_day)}, running jobs {show(row.max_running_jobs)}, "
            f"PII redaction {'on' if row.redact_pii else 'off'}"
        )
    console.print(shown, highlight=False)
