"""The PostgreSQL connector (SPEC §9): several gateway processes, on one or several machines, share
one database.

* Every write is one transaction; an Accepted receipt is answered only after COMMIT returned.
* Jobs are claimed with ``FOR UPDATE SKIP LOCKED`` and a lease expiry, so workers on different
  nodes never take the same job, and a crashed node's jobs become claimable when its leases
  expire.
* A commit that creates jobs sends ``NOTIFY broker_jobs``; every node LISTENs and wakes its
  worker at once (the worker still polls, in case a notification is lost with a connection).
* Idempotency holds across nodes: the unique (sender, MessageID) constraint decides, and a
  resubmission to any node finds the original Accepted receipt.
* Losing the database: any connection failure becomes :class:`StoreUnavailable` — intake answers
  503 with Retry-After, nothing is acknowledged — and the pool reconnects when the server is back.
  A connection that failed mid-operation is terminated, never handed back to the pool: asyncpg
  leaves it in a half-finished protocol state, and the next operation on it would fail with
  "cannot switch to state …; another operation is in progress".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from broker.errors import ConfigError
from broker.store.base import StoreUnavailable, redact
from broker.store.connector import Op, Params, Row, Tx
from broker.store.queries import load_migrations, load_queries, positional
from broker.tasks import TaskGroup

log = logging.getLogger("broker.store")
T = TypeVar("T")
CHANNEL = "broker_jobs"
MIGRATION_LOCK = 0x6272_6F6B  # pg_advisory_xact_lock key: one migrator at a time

_QUERIES = {name: positional(sql) for name, sql in load_queries("postgresql").items()}

# What "the database is not there" looks like through asyncpg.
_UNAVAILABLE = (
    OSError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.TooManyConnectionsError,
    # A connection whose server went away mid-operation is left in a state asyncpg refuses to
    # use again ("cannot switch to state …"): that is the same loss, seen one step later.
    asyncpg.exceptions.InternalClientError,
    TimeoutError,
)
_LOST = (*_UNAVAILABLE, asyncpg.exceptions.InterfaceError)
"""Also a connection asyncpg refuses to use any more (closed, or mid-operation)."""


def _status_count(status: str) -> int:
    """Rows changed, from a command status such as ``UPDATE 3`` or ``INSERT 0 1``."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class _Tx:
    """The ledger's :class:`~broker.store.connector.Tx` over one asyncpg connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    @staticmethod
    def _bind(query: str, params: Params) -> tuple[Any, ...]:
        sql, names = _QUERIES[query]
        return (sql, *(params[n] for n in names))

    async def execute(self, query: str, params: Params = {}) -> int:  # noqa: B006 (read only)
        return _status_count(await self.conn.execute(*self._bind(query, params)))

    async def fetch_one(self, query: str, params: Params = {}) -> Row | None:  # noqa: B006
        row: Row | None = await self.conn.fetchrow(*self._bind(query, params))
        return row

    async def fetch_all(self, query: str, params: Params = {}) -> list[Row]:  # noqa: B006
        rows: list[Row] = await self.conn.fetch(*self._bind(query, params))
        return rows

    async def execute_many(self, query: str, rows: Sequence[Params]) -> None:
        if rows:
            sql, names = _QUERIES[query]
            await self.conn.executemany(sql, [[row[n] for n in names] for row in rows])

    async def notify(self) -> None:
        await self.conn.execute("SELECT pg_notify($1, '')", CHANNEL)


def _discard(conn: asyncpg.Connection) -> None:
    """Never give a half-finished connection back to the pool: end it. (One the server closed
    is already detached: there is nothing left to end.)"""
    with contextlib.suppress(asyncpg.exceptions.InterfaceError):
        conn.terminate()


class _LostBeforeCommit(Exception):
    """The connection failed before COMMIT was sent: nothing was stored."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        # asyncpg's words for a connection the server ended while it sat idle in the pool
        # ("cannot switch to state 15; another operation (2) is in progress") read as if one
        # connection were used twice; it was not (asyncpg issue 784).
        return "the server ended the connection"
    if isinstance(exc, asyncpg.exceptions.InvalidCatalogNameError):
        return f"the database does not exist ({exc})"
    if isinstance(exc, OSError | TimeoutError):
        return f"the server is unreachable ({exc.strerror or type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"


class PostgresConnector:
    """``postgresql://user@host:port/db`` (extra query parameters become server settings, e.g.
    ``?search_path=gateway``)."""

    def __init__(self, dsn: str, *, min_size: int = 2, max_size: int = 10) -> None:
        self.dsn = dsn
        self._pool: asyncpg.Pool | None = None
        self._min, self._max = min_size, max_size
        self._listener: asyncpg.Connection | None = None
        self._wake: Callable[[], None] | None = None
        self._tasks = TaskGroup()

    dialect = "postgresql"

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=self._min, max_size=self._max, command_timeout=30
            )
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations "
                    "(version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
                )
                applied = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
                for version, name, sql in load_migrations("postgresql"):
                    if version not in applied:
                        await conn.execute(sql)
                        await conn.execute(
                            "INSERT INTO schema_migrations VALUES ($1, $2)", version, name
                        )
        except (*_UNAVAILABLE, asyncpg.exceptions.PostgresError) as exc:
            # At start-up every failure is the operator's to fix: one line, no traceback.
            await self.close()
            raise ConfigError(
                f"PostgreSQL store {redact(self.dsn)}: cannot open: {_reason(exc)}"
            ) from exc

    async def close(self) -> None:
        self._wake = None  # no more LISTEN reconnections
        if self._listener is not None:
            with contextlib.suppress(*_UNAVAILABLE):
                await self._listener.close(timeout=5)
            self._listener = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def subscribe(self, wake: Callable[[], None]) -> None:
        """LISTEN for new jobs committed by any node; ``wake`` is called for each."""
        self._wake = wake
        await self._listen()

    async def _listen(self) -> None:
        wake = self._wake
        if wake is None:
            return
        try:
            self._listener = await asyncpg.connect(self.dsn)
            # A coroutine: not awaited, LISTEN is never sent and only polling wakes the workers.
            await self._listener.add_listener(CHANNEL, lambda *_: wake())
            self._listener.add_termination_listener(lambda _: self._relisten())
        except _UNAVAILABLE as exc:
            log.warning("LISTEN %s failed (%s); polling only until it works", CHANNEL, exc)
            self._relisten()

    def _relisten(self) -> None:
        """Reconnect the LISTEN connection in a second; the worker polls meanwhile."""
        if self._wake is None:
            return

        async def again() -> None:
            await asyncio.sleep(1)
            await self._listen()

        self._tasks.start(again(), "pg-relisten")

    async def _run(self, op: Op[T], *, write: bool) -> T:
        """Run ``op`` on a pooled connection, in a transaction when ``write``. A connection
        lost before COMMIT was sent stored nothing, so the operation is tried once more on a
        fresh connection (the pool's idle ones are replaced: the server may have ended them all);
        lost during COMMIT, the outcome is unknown and it says so."""
        try:
            return await self._once(op, write=write)
        except _LostBeforeCommit:
            # Where one connection was ended, the others likely were too (a restart, a
            # failover): replace every idle one before the second try.
            if self._pool is not None:
                await self._pool.expire_connections()
        try:
            return await self._once(op, write=write)
        except _LostBeforeCommit as lost:
            raise StoreUnavailable(f"PostgreSQL unavailable: {lost.reason}") from lost.__cause__

    async def _once(self, op: Op[T], *, write: bool) -> T:
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("the store is closed")
        try:
            conn = await pool.acquire()
        except _LOST as exc:
            raise _LostBeforeCommit(_reason(exc)) from exc
        committed = False
        try:
            if not write:
                result = await op(_Tx(conn))
            else:
                transaction = conn.transaction()
                await transaction.start()
                try:
                    result = await op(_Tx(conn))
                except BaseException:
                    with contextlib.suppress(*_LOST):
                        await transaction.rollback()
                    raise
                try:
                    await transaction.commit()
                except _LOST as exc:
                    raise StoreUnavailable(
                        f"PostgreSQL connection lost during COMMIT: {_reason(exc)}",
                        outcome_unknown=True,
                    ) from exc
            committed = True
            return result
        except _LOST as exc:
            _discard(conn)
            raise _LostBeforeCommit(_reason(exc)) from exc
        except (StoreUnavailable, asyncio.CancelledError):
            # Lost during COMMIT, or cancelled mid-operation: half-finished on the wire.
            _discard(conn)
            raise
        finally:
            try:
                await pool.release(conn)
            except _LOST:
                # Lost after the work was done (the reset on release): the result stands.
                if not committed:
                    raise

    async def write(self, op: Op[T]) -> T:
        return await self._run(op, write=True)

    async def read(self, op: Op[T]) -> T:
        return await self._run(op, write=False)

    async def compact(self) -> None:
        """Nothing to do here: autovacuum reclaims the space of purged rows (docs/operations.md
        says how to run VACUUM after a first large purge)."""

    async def ping(self) -> bool:
        try:
            return await self._run(_select_one, write=False)
        except StoreUnavailable:
            return False


async def _select_one(tx: Tx) -> bool:
    return await tx.fetch_one("select_one") is not None


async def create_schema(dsn: str, prefix: str = "gw") -> tuple[str, str]:
    """A fresh schema on the server at ``dsn``: (its name, a DSN whose connections use it).
    For benchmarks and tests that must not touch each other's tables."""
    import uuid

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"CREATE SCHEMA {name}")
    finally:
        await conn.close()
    return name, f"{dsn}{'&' if '?' in dsn else '?'}search_path={name}"


async def drop_schema(dsn: str, name: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP SCHEMA {name} CASCADE")
    finally:
        await conn.close()
