"""Engines and sessions, with the SQLite settings that keep concurrent writes safe."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Engine, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

log = logging.getLogger(__name__)


def _sqlite_setup(sync_engine, readonly: bool) -> None:
    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn, _record):  # noqa: ANN001
        dbapi_conn.isolation_level = None  # let SQLAlchemy's BEGIN below take over
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn):  # noqa: ANN001
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def create_engine(url: str, *, readonly: bool = False, **kwargs) -> AsyncEngine:
    """An async engine for ``url`` (``sqlite+aiosqlite://`` or ``postgresql+psycopg://``).

    SQLite: WAL, ``synchronous=NORMAL``, foreign keys on, and ``BEGIN IMMEDIATE`` for
    every transaction. Without the explicit immediate begin, aiosqlite's deferred
    transactions lose updates under concurrent read-modify-write even in WAL mode.
    ``readonly=True`` gives an engine for reads only: plain deferred transactions,
    which in WAL mode read a snapshot alongside the writer instead of queueing for
    its lock.
    """
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {}).setdefault("timeout", 30)
        engine = create_async_engine(url, **kwargs)
        _sqlite_setup(engine.sync_engine, readonly)
        return engine
    kwargs.setdefault("pool_recycle", 1800)
    return create_async_engine(url, **kwargs)


def create_thread_engine(url: str, *, readonly: bool = False) -> Engine:
    """A blocking engine on the same database, for whole transactions run in a worker
    thread: one thread hop per transaction instead of one per statement (aiosqlite)."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        u = u.set(drivername="sqlite")
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa_create_engine(u, connect_args={"timeout": 30, "check_same_thread": False})
        _sqlite_setup(engine, readonly=readonly)
        return engine
    return sa_create_engine(u, pool_recycle=1800, pool_size=8)
