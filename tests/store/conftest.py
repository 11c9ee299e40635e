"""A fresh store of each kind per test: SQLite in a temporary folder, PostgreSQL in a schema of
its own on the server named by BROKER_TEST_PG_DSN (skipped without it, except in CI, which sets
it — and an unreachable server fails the run there)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from broker.store import Store, open_store
from broker.store.postgres import create_schema, drop_schema

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


@pytest.fixture(params=["sqlite", "memory", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """The ledger over each connector: a SQLite file, SQLite in memory (the fast fake unit
    tests use), and PostgreSQL."""
    if request.param in ("sqlite", "memory"):
        path = tmp_path / "store.sqlite3" if request.param == "sqlite" else ":memory:"
        sqlite = open_store(f"sqlite:///{path}", create=True)
        await sqlite.open()
        yield sqlite
        await sqlite.close()
        return
    dsn = pg_dsn_or_skip()
    name, scoped = await new_schema(dsn)
    postgres = open_store(scoped)
    await postgres.open()
    try:
        yield postgres
    finally:
        await postgres.close()
        await drop_schema(dsn, name)
