"""The Alembic migrations build the schema the models describe, on SQLite and PostgreSQL.

These are plain (sync) tests: ``db.migrate.upgrade`` runs its own event loop.
PostgreSQL tests use a throwaway schema of their own, so downgrading cannot disturb
the session schema the other database tests share.
"""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from db.migrate import alembic_config, current_heads, upgrade
from db.models import Base
from tests.conftest import DB_KINDS, PG_BASE, REQUIRE_PG, _pg_schema_url

TABLES = set(Base.metadata.tables)


def _sync_url(url: str) -> str:
    return url.replace("sqlite+aiosqlite://", "sqlite://")


@pytest.fixture(params=DB_KINDS)
def blank_url(request, tmp_path):
    """An empty, never-migrated database: a new SQLite file or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    import psycopg

    plain = PG_BASE.replace("postgresql+psycopg://", "postgresql://")
    schema = f"vchar_migr_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        conn = psycopg.connect(plain, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL at {PG_BASE} is required but unreachable: {exc}")
        pytest.skip(f"PostgreSQL at {PG_BASE} unreachable: {exc}")
    with conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield _pg_schema_url(schema)
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _inspect(url: str):
    engine = sa.create_engine(_sync_url(url))
    try:
        with engine.connect() as conn:
            insp = sa.inspect(conn)
            tables = set(insp.get_table_names())
            version = None
            if "alembic_version" in tables:
                version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            return tables, version
    finally:
        engine.dispose()


def _diff(url: str) -> list:
    engine = sa.create_engine(_sync_url(url))
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
            return compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()


def test_single_head():
    assert len(current_heads()) == 1


def test_upgrade_creates_every_table(blank_url):
    assert _inspect(blank_url)[0] == set()
    upgrade(blank_url)
    tables, version = _inspect(blank_url)
    assert TABLES <= tables, f"missing tables: {TABLES - tables}"
    assert tables - TABLES == {"alembic_version"}
    assert version == current_heads()[0]


def test_upgrade_twice_is_harmless(blank_url):
    upgrade(blank_url)
    # Data survives a second upgrade (as on every service start).
    engine = sa.create_engine(_sync_url(blank_url))
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO platform_users (platform, platform_user_id, created_at) "
                    "VALUES ('telegram', '42', CURRENT_TIMESTAMP)"
                )
            )
        upgrade(blank_url)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM platform_users")).scalar() == 1
    finally:
        engine.dispose()
    tables, version = _inspect(blank_url)
    assert TABLES <= tables
    assert version == current_heads()[0]


def test_migrations_match_models(blank_url):
    upgrade(blank_url)
    diff = _diff(blank_url)
    assert diff == [], "migrations and db/models.py disagree; run alembic revision --autogenerate:\n" + "\n".join(
        map(repr, diff)
    )


def test_downgrade_to_base_and_up_again(blank_url):
    upgrade(blank_url)
    command.downgrade(alembic_config(blank_url), "base")
    tables, version = _inspect(blank_url)
    assert tables & TABLES == set(), f"left behind by downgrade: {tables & TABLES}"
    assert version is None
    upgrade(blank_url)
    tables, version = _inspect(blank_url)
    assert TABLES <= tables
    assert version == current_heads()[0]
    assert _diff(blank_url) == []


def test_model_comparison_would_notice_a_drift(blank_url):
    """Guard for the check above: a column the migrations lack shows up as a difference."""
    upgrade(blank_url)
    md = sa.MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(md)
    md.tables["personas"].append_column(sa.Column("mood", sa.String(20), nullable=True))
    engine = sa.create_engine(_sync_url(blank_url))
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), md)
    finally:
        engine.dispose()
    assert [d[0] for d in diff] == ["add_column"]
    assert diff[0][3].name == "mood"
