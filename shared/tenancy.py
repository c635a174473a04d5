"""Tenant isolation in one place: a session bound to a tenant only ever sees that tenant's rows.

`bind_tenant(session, tenant_id)` marks a session; from then on every ORM SELECT, UPDATE and
DELETE it runs gets `tenant_id = :tenant` added for every mapped class that has a
`tenant_id` column (jobs, steps, files, webhooks, deliveries, batches, … — models added later
are covered without registering them). The API binds its request session right after the key
is authenticated, so a route cannot forget the filter.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria

from shared.models import Base

TENANT_KEY = "tenant_id"


def bind_tenant(session: Session, tenant_id: str) -> None:
    """Restrict every later query of this session to one tenant's rows."""
    session.info[TENANT_KEY] = tenant_id


def bound_tenant(session: Session) -> str | None:
    """The tenant a session is restricted to, if any."""
    value = session.info.get(TENANT_KEY)
    return value if isinstance(value, str) else None


def tenant_classes() -> tuple[type[Any], ...]:
    """Every mapped class carrying a `tenant_id` column (found once, not per statement)."""
    global _classes
    if _classes is None:
        _classes = tuple(m.class_ for m in Base.registry.mappers if "tenant_id" in m.columns)
    return _classes


_classes: tuple[type[Any], ...] | None = None


@event.listens_for(Base, "instrument_class", propagate=True)
def _forget_classes(_mapper: Any, _cls: type[Any]) -> None:
    # A model mapped after the first query (a test's, a plugin's) is found on the next one.
    global _classes
    _classes = None


@event.listens_for(Session, "do_orm_execute")
def _add_tenant_criteria(state: ORMExecuteState) -> None:
    tenant_id = bound_tenant(state.session)
    if tenant_id is None:
        return
    if not (state.is_select or state.is_update or state.is_delete):
        return
    if state.is_column_load or state.is_relationship_load:
        # Lazy and refresh loads reuse the criteria of the statement that loaded the parent.
        return
    options = [
        with_loader_criteria(cls, cls.tenant_id == tenant_id, include_aliases=True)
        for cls in tenant_classes()
    ]
    state.statement = state.statement.options(*options)
