"""The embedded store: SQLite in WAL mode with ``synchronous=FULL`` (SPEC §9).

All writes go through one writer thread that **group-commits**: it takes every write waiting in
its queue (up to :data:`MAX_BATCH`), runs each in its own SAVEPOINT inside one transaction, and
commits once — so concurrent intakes share one fsync while a failing operation (a duplicate, say)
rolls back alone. A caller's future resolves only after COMMIT returned, which is what lets
intake send the Accepted receipt "only after the commit". Reads run on a second connection in a
reader thread; WAL lets them proceed while the writer works. Several processes may share one
file: ``BEGIN IMMEDIATE`` with a busy timeout serialises them, and leases keep jobs exclusive.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

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
    resubmitted,
)
from broker.store.queries import load_migrations, load_queries

T = TypeVar("T")
MAX_BATCH = 128
Q = load_queries("sqlite")

WriteOp = Callable[[sqlite3.Connection], Any]


class _Writer(threading.Thread):
    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(name="sqlite-writer", daemon=True)
        self.conn = conn
        self.failing = False
        """The last transaction failed (e.g. the disk is full): /readyz says not ready."""
        self.queue: queue.Queue[
            tuple[WriteOp, asyncio.AbstractEventLoop, asyncio.Future[Any]] | None
        ] = queue.Queue()

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

    def _run_batch(
        self, batch: list[tuple[WriteOp, asyncio.AbstractEventLoop, asyncio.Future[Any]]]
    ) -> None:
        results: list[tuple[bool, Any]] = []
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            for index, (op, _, _) in enumerate(batch):
                self.conn.execute(f"SAVEPOINT op{index}")
                try:
                    results.append((True, op(self.conn)))
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


def _probe_write(conn: sqlite3.Connection) -> None:
    # Big enough to need fresh pages, as a message does: a store that can only rewrite the
    # pages it has is still full.
    conn.execute("INSERT INTO schema_migrations (version, name) VALUES (-1, zeroblob(65536))")
    conn.execute("DELETE FROM schema_migrations WHERE version = -1")


_JOB_FIELDS = [f.name for f in dataclasses.fields(Job)]


def _job(row: tuple[Any, ...]) -> Job:
    """A Job from a ``leased_job`` row (its columns are in Job's field order)."""
    values = dict(zip(_JOB_FIELDS, row, strict=True))
    values["payload"] = bytes(values["payload"])
    return Job(**values)


def _resolve(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class SqliteStore:
    """The default store (``sqlite:///var/broker.sqlite3``)."""

    def __init__(
        self,
        path: str,
        auditor: Auditor | None = None,
        *,
        create: bool = True,
        folders: bool = True,
    ) -> None:
        self.path = Path(path)
        self.auditor = auditor
        self.create = create
        """May open() create the file? (Operator commands: no; a typo is then an error.)"""
        self.folders = folders
        """May open() create the missing folders of a new file?"""
        self._writer: _Writer | None = None
        self._reader: sqlite3.Connection | None = None
        self._reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-reader")

    # -- plumbing ----------------------------------------------------------------------------
    async def open(self) -> None:
        if not self.path.exists():
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
            writer_conn = _connect(self.path)
        except sqlite3.Error as exc:
            raise ConfigError(f"SQLite store {self.path}: cannot open: {exc}") from exc
        self._migrate(writer_conn)
        self._writer = _Writer(writer_conn)
        self._writer.start()
        self._reader = _connect(self.path)

    @staticmethod
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

    async def _write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None:
            raise StoreUnavailable("the store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._writer.queue.put((op, loop, future))
        return await future

    async def _read(self, op: Callable[[sqlite3.Connection], T]) -> T:
        reader = self._reader
        if reader is None:
            raise StoreUnavailable("the store is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._reads, op, reader)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite read failed: {exc}") from exc

    async def subscribe(self, wake: Callable[[], None]) -> None:
        """Nothing to do: in one process, intake wakes the worker directly."""

    async def ping(self) -> bool:
        """Readable, and writable: after a failed transaction a probe write (a row inserted and
        deleted again) must succeed before the store counts as ready again."""
        try:
            if self._writer is not None and self._writer.failing:
                await self._write(_probe_write)
            return bool(await self._read(lambda c: c.execute("SELECT 1").fetchone()))
        except StoreUnavailable:
            return False

    # -- audit -------------------------------------------------------------------------------
    def _append(self, conn: sqlite3.Connection, events: Sequence[AuditEvent]) -> None:
        """Chain ``events`` onto the audit log inside the caller's transaction."""
        if self.auditor is None or not events:
            return
        head = conn.execute(Q["audit_head"]).fetchone()
        for entry in self.auditor.entries(events, tuple(head) if head else None):
            conn.execute(Q["audit_append"], entry.as_row())

    async def audit(self, events: Sequence[AuditEvent]) -> None:
        await self._write(lambda conn: self._append(conn, events))

    async def audit_entries(self, first: int, last: int) -> list[Entry]:
        def op(conn: sqlite3.Connection) -> list[Entry]:
            rows = conn.execute(Q["audit_range"], {"first": first, "last": last}).fetchall()
            return [Entry(*row) for row in rows]

        return await self._read(op)

    # -- intake ------------------------------------------------------------------------------
    async def accept(
        self,
        message: NewMessage,
        jobs: list[NewJob],
        receipt: StoredReceipt,
        events: Sequence[AuditEvent] = (),
    ) -> Accepted:
        def op(conn: sqlite3.Connection) -> Accepted:
            try:
                conn.execute(
                    Q["insert_message"], {**vars(message), "accepted_receipt": receipt.receipt_id}
                )
            except sqlite3.IntegrityError:
                row = conn.execute(
                    Q["find_accepted"], {"sender": message.sender, "message_id": message.message_id}
                ).fetchone()
                if row is None:
                    raise
                digest, body = row
                if digest == message.digest:
                    self._append(conn, [resubmitted(message)])
                    return Accepted(False, bytes(body))
                raise DuplicateConflict(
                    f"{message.message_id} was accepted from {message.sender} before with "
                    "another content (digest differs)"
                ) from None
            conn.execute(Q["insert_receipt"], vars(receipt))
            for job in jobs:
                conn.execute(Q["insert_job"], {**vars(job), "now": job.next_attempt})
            self._append(conn, events)
            return Accepted(True, receipt.body)

        return await self._write(op)

    async def record_receipt(
        self, receipt: StoredReceipt, events: Sequence[AuditEvent] = ()
    ) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(Q["insert_receipt"], vars(receipt))
            self._append(conn, events)

        await self._write(op)

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
        room = {"rooms": json.dumps(dict(rooms or {})), "room_default": room_default}

        def op(conn: sqlite3.Connection) -> list[Job]:
            ids = [r[0] for r in conn.execute(Q["due_jobs"], {"now": now, "limit": limit, **room})]
            jobs: list[Job] = []
            for job_id in ids:
                leased = conn.execute(
                    Q["lease_job"],
                    {"id": job_id, "owner": owner, "expires": now + lease, "now": now},
                ).rowcount
                if leased:
                    row = conn.execute(Q["leased_job"], {"id": job_id, "owner": owner}).fetchone()
                    jobs.append(_job(row))
            return jobs

        return await self._write(op)

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
        def op(conn: sqlite3.Connection) -> bool:
            updated = conn.execute(
                Q["finish_job"],
                {
                    "id": job.id,
                    "owner": owner,
                    "state": state,
                    "attempts": attempts,
                    "last_error": last_error,
                    "now": time.time(),
                },
            ).rowcount
            if not updated:
                return False
            if receipt is not None:
                conn.execute(Q["insert_receipt"], vars(receipt))
            if push is not None:
                conn.execute(Q["insert_job"], {**vars(push), "now": push.next_attempt})
            self._append(conn, events)
            return True

        return await self._write(op)

    async def reschedule(
        self,
        job: Job,
        owner: str,
        attempts: int,
        next_attempt: float,
        last_error: str,
        events: Sequence[AuditEvent] = (),
    ) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            updated = conn.execute(
                Q["reschedule_job"],
                {
                    "id": job.id,
                    "owner": owner,
                    "attempts": attempts,
                    "next_attempt": next_attempt,
                    "last_error": last_error,
                    "now": time.time(),
                },
            ).rowcount
            if updated:
                self._append(conn, events)
            return bool(updated)

        return await self._write(op)

    async def pending_by_destination(self) -> dict[str, int]:
        def op(conn: sqlite3.Connection) -> dict[str, int]:
            return {d: int(n) for d, n in conn.execute(Q["pending_by_destination"])}

        return await self._read(op)

    async def release(self, owner: str) -> int:
        return int(
            await self._write(
                lambda conn: conn.execute(Q["release_leases"], {"owner": owner}).rowcount
            )
        )

    # -- reading -----------------------------------------------------------------------------
    @staticmethod
    def _view(conn: sqlite3.Connection, row: tuple[Any, ...]) -> MessageView:
        track_id, sender, message_id, route, accepted_at, upstream = row[:6]
        destinations = tuple(
            DestinationView(d[0], d[2], d[3], d[4])
            for d in conn.execute(Q["jobs_of_message"], {"track_id": track_id})
        )
        receipts = tuple(
            ReceiptView(r[0], r[1], r[2])
            for r in conn.execute(Q["receipts_of_message"], {"track_id": track_id})
        )
        return MessageView(
            message_id, track_id, sender, route, accepted_at, destinations, receipts, upstream
        )

    async def message(self, message_id: str, sender: str | None) -> MessageView | None:
        def op(conn: sqlite3.Connection) -> MessageView | None:
            if sender is not None:
                row = conn.execute(
                    Q["message_by_sender"], {"sender": sender, "message_id": message_id}
                ).fetchone()
            else:
                row = conn.execute(Q["message_by_id"], {"message_id": message_id}).fetchone()
            return None if row is None else self._view(conn, row)

        return await self._read(op)

    async def related(self, message_id: str) -> list[RelatedMessage]:
        def op(conn: sqlite3.Connection) -> list[RelatedMessage]:
            found = []
            for track_id, sender, reply_to in conn.execute(
                Q["related_messages"], {"message_id": message_id}
            ).fetchall():
                jobs = conn.execute(Q["jobs_of_message"], {"track_id": track_id}).fetchall()
                found.append(RelatedMessage(sender, reply_to, tuple(j[0] for j in jobs)))
            return found

        return await self._read(op)

    async def receipt(self, receipt_id: str) -> tuple[str | None, bytes] | None:
        def op(conn: sqlite3.Connection) -> tuple[str | None, bytes] | None:
            row = conn.execute(Q["receipt"], {"receipt_id": receipt_id}).fetchone()
            return None if row is None else (row[0], bytes(row[1]))

        return await self._read(op)

    async def messages(
        self, state: JobState | None, sender: str | None, since: str | None, limit: int
    ) -> list[MessageView]:
        def op(conn: sqlite3.Connection) -> list[MessageView]:
            rows = conn.execute(
                Q["list_messages"],
                {
                    "sender": sender,
                    "since": since,
                    "limit": limit * 4 if state else limit,
                },
            ).fetchall()
            views = [self._view(conn, row) for row in rows]
            if state is not None:
                views = [v for v in views if v.state == state]
            return views[:limit]

        return await self._read(op)

    async def retry(
        self,
        message_id: str,
        destination: str | None,
        now: float,
        deadline: float,
        events: Sequence[AuditEvent] = (),
    ) -> int:
        def op(conn: sqlite3.Connection) -> int:
            total = 0
            rows = conn.execute(Q["message_by_id"], {"message_id": message_id}).fetchall()
            for row in rows:
                total += conn.execute(
                    Q["retry_jobs"],
                    {
                        "track_id": row[0],
                        "destination": destination,
                        "now": now,
                        "deadline": deadline,
                    },
                ).rowcount
            if total:
                self._append(conn, events)
            return total

        return await self._write(op)

    async def counts(self) -> JobCounts:
        def op(conn: sqlite3.Connection) -> JobCounts:
            found = {row[0]: (row[1], row[2]) for row in conn.execute(Q["counts"])}
            return JobCounts(
                found.get("pending", (0, None))[0],
                found.get("delivered", (0, None))[0],
                found.get("failed", (0, None))[0],
                found.get("pending", (0, None))[1],
            )

        return await self._read(op)
