"""The embedded connector: SQLite in WAL mode with ``synchronous=FULL`` (SPEC §9).

All writes go through one writer thread that **group-commits**: it takes every write waiting in
its queue (up to :data:`MAX_BATCH`), runs each in its own SAVEPOINT inside one transaction, and
commits once — so concurrent intakes share one fsync while a failing operation (a duplicate, say)
rolls back alone. A caller's future resolves only after COMMIT returned, which is what lets
intake send the Accepted receipt "only after the commit". Reads run on a second connection in a
reader thread; WAL lets them proceed while the writer works. Several processes may share one
file: ``BEGIN IMMEDIATE`` with a busy timeout serialises them, and leases keep jobs exclusive.

The ledger's operations are coroutines; here every :class:`Tx` method calls sqlite3 directly
and awaits nothing, so the writer thread runs an operation to its end with one ``send`` (see
:func:`_drive`) — the domain code is shared with PostgreSQL without an event loop per thread.
``secure_delete`` is on, so a purge overwrites what it frees; :meth:`compact` then truncates
the WAL, and no fragment of a purged envelope stays in either file.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from broker.errors import ConfigError
from broker.store.base import StoreUnavailable
from broker.store.connector import Op, Params, Row, Tx
from broker.store.queries import load_migrations, load_queries

T = TypeVar("T")
MAX_BATCH = 128
MEMORY = ":memory:"
"""The path of a store that lives in memory, for fast unit tests (one connection)."""
Q = load_queries("sqlite")


def _drive(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends — a ledger operation over :class:`_Tx` — to its
    result, in the calling thread."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coroutine.close()
    raise RuntimeError("a SQLite store operation awaited something other than its Tx")


class _Tx:
    """The ledger's :class:`~broker.store.connector.Tx` over one sqlite3 connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    async def execute(self, query: str, params: Params = {}) -> int:  # noqa: B006 (read only)
        return self.conn.execute(Q[query], params).rowcount

    async def fetch_one(self, query: str, params: Params = {}) -> Row | None:  # noqa: B006
        # fetchall, not fetchone: a RETURNING statement only completes once read to its end.
        rows: list[Row] = self.conn.execute(Q[query], params).fetchall()
        return rows[0] if rows else None

    async def fetch_all(self, query: str, params: Params = {}) -> list[Row]:  # noqa: B006
        rows: list[Row] = self.conn.execute(Q[query], params).fetchall()
        return rows

    async def execute_many(self, query: str, rows: Sequence[Params]) -> None:
        self.conn.executemany(Q[query], rows)

    async def notify(self) -> None:
        """Nothing to do: in one process, intake wakes the worker directly; other processes
        on the same file find the jobs when they poll."""


WriteItem = tuple[Op[Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class _Writer(threading.Thread):
    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(name="sqlite-writer", daemon=True)
        self.conn = conn
        self.failing = False
        """The last transaction failed (e.g. the disk is full): /readyz says not ready."""
        self.queue: queue.Queue[WriteItem | None] = queue.Queue()

    def run(self) -> None:
        while True:
            first = self.queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self.queue.put(None)  # finish this batch, then stop
                    break
                batch.append(item)
            self._run_batch(batch)

    def _run_batch(self, batch: list[WriteItem]) -> None:
        results: list[tuple[bool, Any]] = []
        tx = _Tx(self.conn)
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            for index, (op, _, _) in enumerate(batch):
                self.conn.execute(f"SAVEPOINT op{index}")
                try:
                    results.append((True, _drive(op(tx))))
                    self.conn.execute(f"RELEASE op{index}")
                except sqlite3.OperationalError:
                    raise  # disk full, I/O error, locked: the store's failure, not the op's
                except Exception as exc:  # the op's own failure, rolled back alone
                    self.conn.execute(f"ROLLBACK TO op{index}")
                    self.conn.execute(f"RELEASE op{index}")
                    results.append((False, exc))
            self.conn.execute("COMMIT")
            self.failing = False
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            self.failing = True
            failure = StoreUnavailable(f"SQLite transaction failed: {exc}")
            results = [(False, failure)] * len(batch)
        for (_, loop, future), (ok, value) in zip(batch, results, strict=True):
            loop.call_soon_threadsafe(_resolve, future, ok, value)


async def _probe_write(tx: Tx) -> None:
    await tx.execute("probe_insert")
    await tx.execute("probe_delete")


async def _select_one(tx: Tx) -> bool:
    return await tx.fetch_one("select_one") is not None


def _resolve(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _connect(path: Path | str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    # What a purge frees is overwritten with zeros, not left in free pages.
    conn.execute("PRAGMA secure_delete=ON")
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
        )
        applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for version, name, sql in load_migrations("sqlite"):
            if version in applied:
                continue
            for statement in sql.split(";\n"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, name))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class SqliteConnector:
    """``sqlite:///var/broker.sqlite3``; :data:`MEMORY` for a store in memory."""

    dialect = "sqlite"

    def __init__(self, path: str, *, create: bool = True, folders: bool = True) -> None:
        self.memory = path == MEMORY
        self.path = Path(path)
        self.create = create
        """May open() create the file? (Operator commands: no; a typo is then an error.)"""
        self.folders = folders
        """May open() create the missing folders of a new file?"""
        self._writer: _Writer | None = None
        self._reader: sqlite3.Connection | None = None
        self._reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-reader")

    async def open(self) -> None:
        if not self.memory and not self.path.exists():
            if not self.create:
                raise ConfigError(
                    f"no SQLite store at {self.path}: check --store / BROKER_STORE (a store is "
                    "created only by `broker serve`)"
                )
            if not self.path.parent.is_dir():
                if not self.folders:
                    raise ConfigError(
                        f"the folder {self.path.parent} of the SQLite store does not exist: "
                        "create it, or pass --create-store to `broker serve`"
                    )
                self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            writer_conn = _connect(MEMORY if self.memory else self.path)
            _migrate(writer_conn)
        except sqlite3.Error as exc:
            raise ConfigError(f"SQLite store {self.path}: cannot open: {exc}") from exc
        self._writer = _Writer(writer_conn)
        self._writer.start()
        # In memory there is one database per connection: reads go through the writer.
        self._reader = None if self.memory else _connect(self.path)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.queue.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer.conn.close()
            self._writer = None
        if self._reader is not None:
            reader = self._reader
            self._reader = None
            await asyncio.get_running_loop().run_in_executor(self._reads, reader.close)
        self._reads.shutdown(wait=True)

    async def write(self, op: Op[T]) -> T:
        if self._writer is None:
            raise StoreUnavailable("the store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._writer.queue.put((op, loop, future))
        return await future

    async def read(self, op: Op[T]) -> T:
        if self.memory:
            return await self.write(op)
        reader = self._reader
        if reader is None:
            raise StoreUnavailable("the store is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._reads, lambda: _drive(op(_Tx(reader)))
            )
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite read failed: {exc}") from exc

    async def subscribe(self, wake: Callable[[], None]) -> None:
        """Nothing to do: in one process, intake wakes the worker directly."""

    async def ping(self) -> bool:
        """Readable, and writable: after a failed transaction a probe write (a row inserted and
        deleted again) must succeed before the store counts as ready again."""
        try:
            if self._writer is not None and self._writer.failing:
                await self.write(_probe_write)
            return await self.read(_select_one)
        except StoreUnavailable:
            return False

    async def compact(self) -> None:
        """Copy the WAL into the database and truncate it: the freed (zeroed) pages replace
        the old ones, and the WAL keeps no earlier copy of them."""
        if self.memory or self._reader is None:
            return
        reader = self._reader
        await asyncio.get_running_loop().run_in_executor(
            self._reads, lambda: reader.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        )
