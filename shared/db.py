"""Engines, sessions and the transaction boundary shared by api, orchestrator and workers."""

from __future__ import annotations

import sqlite3
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from shared.logging import get_logger

AFTER_COMMIT = "llmjobs_after_commit"
# Session.info flag of a read session: its transaction must not write (see `read_session`).
READ_ONLY = "llmjobs_read_only"
# Execution option asking the SQLite begin hook for a deferred (reader) transaction.
_DEFERRED = "llmjobs_sqlite_deferred"
# How long a SQLite writer waits for the write lock, and its pauses between tries.
BUSY_TIMEOUT_S = 30.0
_LOCK_POLL_FIRST_S, _LOCK_POLL_MAX_S = 0.0005, 0.004
_log = get_logger(__name__)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine tuned for the dialect: SQLite gets WAL and writer locks taken up front."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        if not path or path == ":memory:":
            kwargs.pop("pool_size", None)
            kwargs.pop("max_overflow", None)
        engine = create_engine(
            url, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False}, **kwargs
        )
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
        cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Several processes write: a deferred transaction that later upgrades to a writer
        # fails with SQLITE_BUSY at once instead of waiting, so take the lock up front —
        # except in read sessions, which never write: a WAL reader neither waits for the
        # writer nor holds it up.
        if conn.get_execution_options().get(_DEFERRED, False):
            conn.exec_driver_sql("BEGIN")
        elif not _take_write_lock(conn.connection.driver_connection):
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # out of patience: SQLite's wait and error


def _take_write_lock(raw: sqlite3.Connection) -> bool:
    """BEGIN IMMEDIATE, retried every few milliseconds; False after BUSY_TIMEOUT_S of trying."""
    # SQLite's own busy handler sleeps up to 100 ms between tries, so under contention a
    # waiter sleeps long after the lock was freed; short pauses keep the hand-over prompt.
    raw.execute("PRAGMA busy_timeout=0")
    try:
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        pause = _LOCK_POLL_FIRST_S
        while True:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return True
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
            if time.monotonic() + pause > deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, _LOCK_POLL_MAX_S)
    finally:
        raw.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that run `after_commit` callbacks (enqueues) only once their commit succeeded."""
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    return factory


_readers: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()


def read_session(factory: sessionmaker[Session]) -> Session:
    """A session for work that only reads (GET requests): no write lock taken on SQLite."""
    bind = factory.kw.get("bind")
    if isinstance(bind, Engine) and bind.dialect.name == "sqlite":
        reader = _readers.get(bind)
        if reader is None:
            reader = _readers[bind] = bind.execution_options(**{_DEFERRED: True})
        session = factory(bind=reader)
    else:
        session = factory()
    session.info[READ_ONLY] = True
    return session


def is_read_session(session: Session) -> bool:
    """True for a `read_session`: a write must go through a transaction of its own."""
    return bool(session.info.get(READ_ONLY))


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


_process_sessions: sessionmaker[Session] | None = None


def open_process_sessions(url: str) -> sessionmaker[Session]:
    """Build this process's engine and session factory at process start (once per process)."""
    global _process_sessions
    # Several task modules may share a process; they share its one engine too.
    if _process_sessions is None:
        _process_sessions = make_sessionmaker(make_engine(url))
    return _process_sessions


def process_sessions() -> sessionmaker[Session]:
    """The session factory this process opened at start."""
    if _process_sessions is None:
        raise RuntimeError("the database was not opened at process start (open_process_sessions)")
    return _process_sessions


def close_process_sessions() -> None:
    """Give back this process's connections (at shutdown)."""
    global _process_sessions
    if _process_sessions is not None:
        bind = _process_sessions.kw.get("bind")
        if isinstance(bind, Engine):
            bind.dispose()
    _process_sessions = None
