"""The PostgreSQL store (SPEC §9): several gateway processes, on one or several machines, share
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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg

from broker.audit import AuditEvent, Auditor, Entry
from broker.errors import ConfigError, DuplicateConflict
from broker.store.base import (
    Accepted,
    DestinationView,
    Job,
    JobCounts,
    JobState,
    MessageView,
    NewJob,
    NewMessage,
    ReceiptView,
    RelatedMessage,
    StoredReceipt,
    StoreUnavailable,
    redact,
    resubmitted,
)
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


def _args(name: str, values: Mapping[str, Any]) -> tuple[Any, ...]:
    """(sql, $1, $2, …) for ``conn.execute(*_args(...))``."""
    sql, names = _QUERIES[name]
    return (sql, *(values[n] for n in names))


async def _execute_many(
    conn: asyncpg.Connection, name: str, rows: Sequence[Mapping[str, Any]]
) -> None:
    """One statement for many rows in one round trip (the audit entries and jobs of a
    transaction)."""
    if rows:
        sql, names = _QUERIES[name]
        await conn.executemany(sql, [[row[n] for n in names] for row in rows])


def _closed(exc: asyncpg.exceptions.InterfaceError) -> bool:
    """asyncpg reports a connection lost under it as a plain InterfaceError."""
    return any(
        text in str(exc)
        for text in ("connection is closed", "pool is closing", "connection was closed")
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncpg.exceptions.InvalidCatalogNameError):
        return f"the database does not exist ({exc})"
    if isinstance(exc, OSError | TimeoutError):
        return f"the server is unreachable ({exc.strerror or type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"


class PostgresStore:
    """``postgresql://user@host:port/db`` (extra query parameters become server settings, e.g.
    ``?search_path=gateway``)."""

    def __init__(
        self, dsn: str, *, min_size: int = 2, max_size: int = 10, auditor: Auditor | None = None
    ) -> None:
        self.dsn = dsn
        self.auditor = auditor
        self._pool: asyncpg.Pool | None = None
        self._min, self._max = min_size, max_size
        self._listener: asyncpg.Connection | None = None
        self._wake: Callable[[], None] | None = None
        self._tasks = TaskGroup()

    # -- plumbing ----------------------------------------------------------------------------
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

    async def _run(self, op: Callable[[asyncpg.Connection], Any], *, write: bool) -> Any:
        if self._pool is None:
            raise StoreUnavailable("the store is closed")
        # Once the transaction's statements are done, a lost connection leaves the COMMIT's
        # outcome unknown: the server may have committed. Say so rather than "nothing stored".
        committing = False
        try:
            async with self._pool.acquire() as conn:
                if write:
                    async with conn.transaction():
                        result = await op(conn)
                        committing = True
                    return result
                return await op(conn)
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(
                f"PostgreSQL unavailable: {exc}", outcome_unknown=committing
            ) from exc
        except asyncpg.exceptions.InterfaceError as exc:
            if _closed(exc):
                raise StoreUnavailable(
                    f"PostgreSQL connection lost: {exc}", outcome_unknown=committing
                ) from exc
            raise

    async def ping(self) -> bool:
        try:
            return bool(await self._run(lambda c: c.fetchval("SELECT 1"), write=False))
        except StoreUnavailable:
            return False

    # -- intake ------------------------------------------------------------------------------
    async def accept(
        self,
        message: NewMessage,
        jobs: list[NewJob],
        receipt: StoredReceipt,
        events: Sequence[AuditEvent] = (),
    ) -> Accepted:
        async def op(conn: asyncpg.Connection) -> Accepted:
            inserted = await conn.fetchval(
                *_args("insert_message", {**vars(message), "accepted_receipt": receipt.receipt_id})
            )
            if inserted is None:  # (sender, MessageID) exists: identical or a conflict
                row = await conn.fetchrow(*_args("find_accepted", vars(message)))
                if row is not None and row["digest"] == message.digest:
                    await self._append(conn, [resubmitted(message)])
                    return Accepted(False, bytes(row["body"]))
                raise DuplicateConflict(
                    f"{message.message_id} was accepted from {message.sender} before with "
                    "another content (digest differs)"
                )
            await conn.execute(*_args("insert_receipt", vars(receipt)))
            await _execute_many(
                conn, "insert_job", [{**vars(j), "now": j.next_attempt} for j in jobs]
            )
            await self._append(conn, events)
            await conn.execute("SELECT pg_notify($1, '')", CHANNEL)
            return Accepted(True, receipt.body)

        result: Accepted = await self._run(op, write=True)
        return result

    async def record_receipt(
        self, receipt: StoredReceipt, events: Sequence[AuditEvent] = ()
    ) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute(*_args("insert_receipt", vars(receipt)))
            await self._append(conn, events)

        await self._run(op, write=True)

    # -- audit -------------------------------------------------------------------------------
    async def _append(self, conn: asyncpg.Connection, events: Sequence[AuditEvent]) -> None:
        """Chain ``events`` onto the audit log in the caller's transaction; the advisory lock
        keeps one chain across every node until that transaction ends."""
        if self.auditor is None or not events:
            return
        await conn.execute(*_args("audit_lock", {}))
        head = await conn.fetchrow(*_args("audit_head", {}))
        entries = self.auditor.entries(events, (head["seq"], head["hash"]) if head else None)
        await _execute_many(conn, "audit_append", [e.as_row() for e in entries])

    async def audit(self, events: Sequence[AuditEvent]) -> None:
        await self._run(lambda c: self._append(c, events), write=True)

    async def audit_entries(self, first: int, last: int) -> list[Entry]:
        rows = await self._run(
            lambda c: c.fetch(*_args("audit_range", {"first": first, "last": last})), write=False
        )
        return [Entry(**dict(r)) for r in rows]

    # -- delivery ----------------------------------------------------------------------------
    async def claim(
        self,
        owner: str,
        now: float,
        lease: float,
        limit: int,
        rooms: Mapping[str, int] | None = None,
        room_default: int = 1_000_000,
    ) -> list[Job]:
        params = {
            "now": now,
            "limit": limit,
            "owner": owner,
            "expires": now + lease,
            "rooms": json.dumps(dict(rooms or {})),
            "room_default": room_default,
        }

        async def op(conn: asyncpg.Connection) -> list[Job]:
            rows = await conn.fetch(*_args("claim", params))
            return [Job(**{**dict(r), "payload": bytes(r["payload"])}) for r in rows]

        result: list[Job] = await self._run(op, write=True)
        return result

    async def finish(
        self,
        job: Job,
        owner: str,
        state: JobState,
        attempts: int,
        last_error: str | None,
        receipt: StoredReceipt | None,
        push: NewJob | None,
        events: Sequence[AuditEvent] = (),
    ) -> bool:
        async def op(conn: asyncpg.Connection) -> bool:
            status = await conn.execute(
                *_args(
                    "finish_job",
                    {
                        "id": job.id,
                        "owner": owner,
                        "state": state,
                        "attempts": attempts,
                        "last_error": last_error,
                        "now": time.time(),
                    },
                )
            )
            if status.endswith(" 0"):
                return False
            if receipt is not None:
                await conn.execute(*_args("insert_receipt", vars(receipt)))
            if push is not None:
                await conn.execute(*_args("insert_job", {**vars(push), "now": push.next_attempt}))
                await conn.execute("SELECT pg_notify($1, '')", CHANNEL)
            await self._append(conn, events)
            return True

        result: bool = await self._run(op, write=True)
        return result

    async def reschedule(
        self,
        job: Job,
        owner: str,
        attempts: int,
        next_attempt: float,
        last_error: str,
        events: Sequence[AuditEvent] = (),
    ) -> bool:
        async def op(conn: asyncpg.Connection) -> bool:
            status = await conn.execute(
                *_args(
                    "reschedule_job",
                    {
                        "id": job.id,
                        "owner": owner,
                        "attempts": attempts,
                        "next_attempt": next_attempt,
                        "last_error": last_error,
                        "now": time.time(),
                    },
                )
            )
            if status.endswith(" 0"):
                return False
            await self._append(conn, events)
            return True

        result: bool = await self._run(op, write=True)
        return result

    async def pending_by_destination(self) -> dict[str, int]:
        rows = await self._run(lambda c: c.fetch(*_args("pending_by_destination", {})), write=False)
        return {r["destination"]: int(r["n"]) for r in rows}

    async def release(self, owner: str) -> int:
        status = await self._run(
            lambda c: c.execute(*_args("release_leases", {"owner": owner})), write=True
        )
        return int(str(status).rsplit(" ", 1)[-1])

    # -- reading -----------------------------------------------------------------------------
    @staticmethod
    async def _view(conn: asyncpg.Connection, row: asyncpg.Record) -> MessageView:
        jobs = await conn.fetch(*_args("jobs_of_message", {"track_id": row["track_id"]}))
        receipts = await conn.fetch(*_args("receipts_of_message", {"track_id": row["track_id"]}))
        return MessageView(
            row["message_id"],
            row["track_id"],
            row["sender"],
            row["route"],
            row["accepted_at"],
            tuple(
                DestinationView(j["destination"], j["state"], j["attempts"], j["last_error"])
                for j in jobs
            ),
            tuple(ReceiptView(r["receipt_id"], r["kind"], r["destination"]) for r in receipts),
            row["upstream_track_id"],
        )

    async def message(self, message_id: str, sender: str | None) -> MessageView | None:
        async def op(conn: asyncpg.Connection) -> MessageView | None:
            if sender is not None:
                row = await conn.fetchrow(
                    *_args("message_by_sender", {"sender": sender, "message_id": message_id})
                )
            else:
                row = await conn.fetchrow(*_args("message_by_id", {"message_id": message_id}))
            return None if row is None else await self._view(conn, row)

        result: MessageView | None = await self._run(op, write=False)
        return result

    async def related(self, message_id: str) -> list[RelatedMessage]:
        async def op(conn: asyncpg.Connection) -> list[RelatedMessage]:
            found = []
            for row in await conn.fetch(*_args("related_messages", {"message_id": message_id})):
                jobs = await conn.fetch(*_args("jobs_of_message", {"track_id": row["track_id"]}))
                found.append(
                    RelatedMessage(
                        row["sender"], row["reply_to"], tuple(j["destination"] for j in jobs)
                    )
                )
            return found

        result: list[RelatedMessage] = await self._run(op, write=False)
        return result

    async def receipt(self, receipt_id: str) -> tuple[str | None, bytes] | None:
        row = await self._run(
            lambda c: c.fetchrow(*_args("receipt", {"receipt_id": receipt_id})), write=False
        )
        return None if row is None else (row["sender"], bytes(row["body"]))

    async def messages(
        self, state: JobState | None, sender: str | None, since: str | None, limit: int
    ) -> list[MessageView]:
        async def op(conn: asyncpg.Connection) -> list[MessageView]:
            rows = await conn.fetch(
                *_args(
                    "list_messages",
                    {"sender": sender, "since": since, "limit": limit * 4 if state else limit},
                )
            )
            views = [await self._view(conn, row) for row in rows]
            if state is not None:
                views = [v for v in views if v.state == state]
            return views[:limit]

        result: list[MessageView] = await self._run(op, write=False)
        return result

    async def retry(
        self,
        message_id: str,
        destination: str | None,
        now: float,
        deadline: float,
        events: Sequence[AuditEvent] = (),
    ) -> int:
        async def op(conn: asyncpg.Connection) -> int:
            total = 0
            for row in await conn.fetch(*_args("message_by_id", {"message_id": message_id})):
                status = await conn.execute(
                    *_args(
                        "retry_jobs",
                        {
                            "track_id": row["track_id"],
                            "destination": destination,
                            "now": now,
                            "deadline": deadline,
                        },
                    )
                )
                total += int(status.rsplit(" ", 1)[-1])
            if total:
                await self._append(conn, events)
                await conn.execute("SELECT pg_notify($1, '')", CHANNEL)
            return total

        result: int = await self._run(op, write=True)
        return result

    async def counts(self) -> JobCounts:
        rows = await self._run(lambda c: c.fetch(*_args("counts", {})), write=False)
        found = {r["state"]: (r["n"], r["oldest"]) for r in rows}
        return JobCounts(
            found.get("pending", (0, None))[0],
            found.get("delivered", (0, None))[0],
            found.get("failed", (0, None))[0],
            found.get("pending", (0, None))[1],
        )


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
