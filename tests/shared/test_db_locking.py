"""SQLite transactions: read sessions take no write lock; writers get the lock once it is free."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from sqlalchemy import text

from shared.db import is_read_session, make_engine, make_sessionmaker, read_session, session_scope


def _db(tmp_path: Path) -> tuple[str, Path]:
    path = tmp_path / "lock.db"
    return f"sqlite:///{path}", path


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    raw.execute("BEGIN IMMEDIATE")
    raw.execute("INSERT INTO t (v) VALUES (2)")
    return raw


def test_read_session_reads_while_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    url, path = _db(tmp_path)
    sessions = make_sessionmaker(make_engine(url))
    with session_scope(sessions) as session:
        session.execute(text("CREATE TABLE t (v INTEGER)"))
        session.execute(text("INSERT INTO t (v) VALUES (1)"))
    holder = _hold_write_lock(path)
    try:
        started = time.monotonic()
        with read_session(sessions) as session:
            assert is_read_session(session)
            # The writer has not committed: the reader sees the last committed state.
            assert session.scalar(text("SELECT count(*) FROM t")) == 1
            session.commit()
        # An IMMEDIATE transaction would have waited for the holder (30 s busy timeout).
        assert time.monotonic() - started < 5
    finally:
        holder.rollback()
        holder.close()


def test_writer_takes_the_lock_as_soon_as_it_is_released(tmp_path: Path) -> None:
    url, path = _db(tmp_path)
    sessions = make_sessionmaker(make_engine(url))
    with session_scope(sessions) as session:
        assert not is_read_session(session)
        session.execute(text("CREATE TABLE t (v INTEGER)"))
    holder = _hold_write_lock(path)
    releaser = threading.Timer(0.3, holder.commit)
    releaser.start()
    try:
        with session_scope(sessions) as session:
            session.execute(text("INSERT INTO t (v) VALUES (3)"))
        releaser.join()
        with session_scope(sessions) as session:
            # Both writes landed, the holder's first: the writer waited instead of failing.
            rows = session.execute(text("SELECT v FROM t ORDER BY rowid")).scalars().all()
            assert rows == [2, 3]
            # The connection's own busy timeout is back after the lock was taken.
            assert session.scalar(text("PRAGMA busy_timeout")) == 30000
    finally:
        releaser.cancel()
        holder.close()
