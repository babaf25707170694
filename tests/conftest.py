"""Shared fixtures: every database test runs on SQLite and on the PostgreSQL at 127.0.0.1.

PostgreSQL tests use a schema of their own (``vchar_test_<pid>``) in the ``test``
database, created fresh for the session. Without a reachable server they are skipped,
unless ``VCHAR_TEST_REQUIRE_POSTGRES=1`` (set by CI), which makes that a failure.
"""

from __future__ import annotations

import os
import uuid

import pytest
import pytest_asyncio
from sqlalchemy import delete

from db.migrate import upgrade
from db.models import Base
from db.store import Store

PG_BASE = os.environ.get("VCHAR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("VCHAR_TEST_REQUIRE_POSTGRES") == "1"
DB_KINDS = [k for k in os.environ.get("VCHAR_TEST_DBS", "sqlite,postgresql").split(",") if k]

# CI runs with CI set, and some libraries change what they print when it is (pyfluidsynth names
# the library it found, on stdout). The suite runs the same way everywhere, so a stray line in a
# piped chat's output fails here as it would in CI.
os.environ.setdefault("CI", "true")


def _pg_schema_url(schema: str) -> str:
    return f"{PG_BASE}?options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session")
def pg_url() -> str:
    """A migrated PostgreSQL schema for this test session."""
    import psycopg

    plain = PG_BASE.replace("postgresql+psycopg://", "postgresql://")
    schema = f"vchar_test_{os.getpid()}"
    try:
        conn = psycopg.connect(plain, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL at {PG_BASE} is required (VCHAR_TEST_REQUIRE_POSTGRES=1) but unreachable: {exc}")
        pytest.skip(f"PostgreSQL at {PG_BASE} unreachable: {exc}")
    with conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = _pg_schema_url(schema)
    upgrade(url)
    yield url
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=DB_KINDS)
def db_url(request, tmp_path) -> str:
    """A migrated, empty database: a fresh SQLite file, or the session's PostgreSQL schema emptied."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'vchar.db'}"
        upgrade(url)
        return url
    url = request.getfixturevalue("pg_url")
    return url


@pytest_asyncio.fixture
async def store(db_url) -> Store:
    s = Store.from_url(db_url)
    if s.dialect == "postgresql":
        async with s.engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                await conn.execute(delete(table))
    yield s
    await s.close()


@pytest.fixture(scope="session")
def embedder():
    from generators.embed import get_embedder

    return get_embedder()


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]
