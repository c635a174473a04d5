"""Engines, sessions and the transaction boundary shared by api, orchestrator and workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from shared.logging import get_logger

AFTER_COMMIT = "llmjobs_after_commit"
_log = get_logger(__name__)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine tuned for the dialect: SQLite gets WAL and writer locks taken up front."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", 5)
        kwargs.setdefault("max_overflow", 10)
    return create_engine(url, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" hook issue BEGIN itself (pysqlite's own is deferred).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Several processes write: a deferred transaction that later upgrades to a writer
        # fails with SQLITE_BUSY at once instead of waiting, so take the lock up front.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that run `after_commit` callbacks (enqueues) only once their commit succeeded."""
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    return factory


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` once the session's transaction has committed; drop it on rollback."""
    session.info.setdefault(AFTER_COMMIT, []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    callbacks = session.info.pop(AFTER_COMMIT, [])
    for callback in callbacks:
        try:
            callback()
        except Exception as exc:
            # The rows are committed: raising now would report a failure for work that was
            # stored (an API 500 for a created job). A message that could not be sent (broker
            # down) is re-sent by the sweep, which finds the queued rows.
            _log.warning("after-commit callback failed; the sweep will resend",
                         error=f"{type(exc).__name__}: {exc}"[:300])


@event.listens_for(Session, "after_soft_rollback")
def _drop_after_rollback(session: Session, _previous: Any) -> None:
    session.info.pop(AFTER_COMMIT, None)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A unit of work for workers and CLI: commit on success, roll back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def changed(session: Session, statement: Any) -> int:
    """Execute an UPDATE/DELETE and return how many rows it changed (conditional transitions)."""
    result = session.execute(statement)
    return int(getattr(result, "rowcount", 0) or 0)
