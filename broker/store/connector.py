"""What the ledger needs from a database: the narrow seam between domain logic and dialect.

:mod:`broker.store.ledger` holds every rule of the store (idempotency, leases, receipts,
retention, views, the audit chain) once, written against :class:`Connector`. A connector knows
only its dialect: how to connect and migrate, how to run one transaction, where its named
queries live (``sql/<dialect>/queries.sql``), how its failures look, and how to wake other
processes. SQLite (:mod:`broker.store.sqlite`) and PostgreSQL (:mod:`broker.store.postgres`)
are the two; the model is procrastinate's ``connector.py``/``manager.py`` split.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

Row = Mapping[str, Any]
"""A result row, by column name (sqlite3.Row and asyncpg.Record both are)."""

Params = Mapping[str, Any]


class Tx(Protocol):
    """One transaction (or, for reads, one consistent connection). Queries are named: the name
    of a block in the dialect's ``queries.sql``; parameters are ``:name`` in the SQL."""

    async def execute(self, query: str, params: Params = ...) -> int:
        """Run a statement; the number of rows it changed."""

    async def fetch_one(self, query: str, params: Params = ...) -> Row | None: ...

    async def fetch_all(self, query: str, params: Params = ...) -> list[Row]: ...

    async def execute_many(self, query: str, rows: Sequence[Params]) -> None:
        """One statement for many parameter sets (one round trip where the driver can)."""

    async def notify(self) -> None:
        """Wake the workers of other processes once this transaction commits (new due jobs)."""


Op = Callable[[Tx], Coroutine[Any, Any, T]]


class Connector(Protocol):
    dialect: str

    async def open(self) -> None:
        """Connect and apply pending migrations; ConfigError (one line) when that fails."""

    async def close(self) -> None: ...

    async def write(self, op: Op[T]) -> T:
        """Run ``op`` in one transaction and return its result only after COMMIT returned.
        An exception from ``op`` rolls back what it did and is raised as is; a failure of the
        database raises StoreUnavailable."""

    async def read(self, op: Op[T]) -> T:
        """Run ``op`` on a connection that sees committed data."""

    async def ping(self) -> bool:
        """True when the database answers reads and writes (for /readyz)."""

    async def subscribe(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` when another process commits new jobs (a single-writer database may
        do nothing)."""

    async def compact(self) -> None:
        """After a purge: give freed space back and leave no fragment of purged rows on disk
        where the dialect can promise that (SQLite); elsewhere a no-op."""
