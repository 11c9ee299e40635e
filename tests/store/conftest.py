"""A fresh store of each kind per test: SQLite in a temporary folder, PostgreSQL in a schema of
its own on the server named by BROKER_TEST_PG_DSN (skipped without it, except in CI, which sets
it — and an unreachable server fails the run there)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from broker.store.base import Store
from broker.store.postgres import PostgresStore, create_schema, drop_schema
from broker.store.sqlite import SqliteStore

PG_DSN = os.environ.get("BROKER_TEST_PG_DSN")


def pg_dsn_or_skip() -> str:
    if not PG_DSN:
        if os.environ.get("CI"):
            pytest.fail("BROKER_TEST_PG_DSN must be set in CI")
        pytest.skip("BROKER_TEST_PG_DSN not set")
    return PG_DSN


async def new_schema(dsn: str) -> tuple[str, str]:
    """A fresh schema; returns (its name, a DSN whose connections use it)."""
    return await create_schema(dsn, prefix="t")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        sqlite = SqliteStore(str(tmp_path / "store.sqlite3"))
        await sqlite.open()
        yield sqlite
        await sqlite.close()
        return
    dsn = pg_dsn_or_skip()
    name, scoped = await new_schema(dsn)
    postgres = PostgresStore(scoped)
    await postgres.open()
    try:
        yield postgres
    finally:
        await postgres.close()
        await drop_schema(dsn, name)
