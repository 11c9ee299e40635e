"""A database built by the migrations equals the declared schema.sql, on both dialects."""

from __future__ import annotations

import re
import sqlite3
from importlib import resources
from pathlib import Path

import asyncpg
import pytest

from broker.store import open_store
from broker.store.ledger import Ledger
from broker.store.postgres import PostgresConnector, drop_schema
from broker.store.queries import load_migrations
from tests.store.conftest import new_schema, pg_dsn_or_skip


def _declared(dialect: str) -> str:
    return (resources.files("broker.store") / "sql" / dialect / "schema.sql").read_text()


def _sqlite_shape(path: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
            "AND name != 'schema_migrations' ORDER BY type, name"
        ).fetchall()
    finally:
        conn.close()
    # Comments and spacing are not schema.
    return [(t, n, re.sub(r"\s+", " ", re.sub(r"--[^\n]*", "", s or ""))) for t, n, s in rows]


async def test_sqlite_migrations_equal_the_declared_schema(tmp_path: Path) -> None:
    """Migrating an empty SQLite file gives exactly schema.sql."""
    store = open_store(f"sqlite:///{tmp_path / 'migrated.sqlite3'}", create=True)
    await store.open()
    await store.close()
    declared = tmp_path / "declared.sqlite3"
    conn = sqlite3.connect(declared)
    conn.executescript(_declared("sqlite"))
    conn.close()
    assert _sqlite_shape(tmp_path / "migrated.sqlite3") == _sqlite_shape(declared)


async def _pg_shape(dsn: str, schema: str) -> list[tuple[object, ...]]:
    conn = await asyncpg.connect(dsn)
    try:
        columns = await conn.fetch(
            "SELECT table_name, column_name, data_type, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema = $1 "
            "AND table_name != 'schema_migrations' ORDER BY table_name, ordinal_position",
            schema,
        )
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 "
            "AND tablename != 'schema_migrations' ORDER BY indexname",
            schema,
        )
    finally:
        await conn.close()

    def unqualified(value: object) -> object:  # the schema name differs by design
        return value.replace(f"{schema}.", "") if isinstance(value, str) else value

    return [tuple(unqualified(v) for v in r) for r in columns] + [
        (r[0], unqualified(r[1])) for r in indexes
    ]


@pytest.mark.postgres
async def test_postgresql_migrations_equal_the_declared_schema() -> None:
    """Migrating an empty PostgreSQL schema gives exactly schema.sql."""
    dsn = pg_dsn_or_skip()
    migrated, migrated_dsn = await new_schema(dsn)
    declared, declared_dsn = await new_schema(dsn)
    try:
        store = Ledger(PostgresConnector(migrated_dsn, min_size=1, max_size=1))
        await store.open()
        await store.close()
        conn = await asyncpg.connect(declared_dsn)
        try:
            await conn.execute(_declared("postgresql"))
        finally:
            await conn.close()
        assert await _pg_shape(dsn, migrated) == await _pg_shape(dsn, declared)
    finally:
        await drop_schema(dsn, migrated)
        await drop_schema(dsn, declared)


async def test_migrations_run_once(tmp_path: Path) -> None:
    """Opening an already migrated store applies nothing again."""
    path = tmp_path / "s.sqlite3"
    for _ in range(2):
        store = open_store(f"sqlite:///{path}", create=True)
        await store.open()
        await store.close()
    conn = sqlite3.connect(path)
    applied = conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()
    assert applied == (len(load_migrations("sqlite")),)
    conn.close()
