"""The ledger: every rule of durable storage, written once over a :class:`Connector` (SPEC §9).

* **accept** commits the message, its delivery jobs, its Accepted receipt and audit events in
  one transaction, or — for the same sender and MessageID — returns the original receipt
  (identical digest) or raises DuplicateConflict (another digest).
* **claim / finish / reschedule / release**: jobs are leased to one worker at a time; an expired
  lease can be taken over, so a job survives its holder's crash. A finish writes the job's
  state, its receipt and the receipt-push job together.
* **retry** puts failed destinations back; **purge** applies retention (SPEC §6).
* **views** are SQL: a page of messages with their destinations and receipts is three queries
  whatever its length, filtered by state in the database, with a cursor for the next page.
* **the audit chain**: every state change appends its events in the same transaction.

The dialects differ only in their connector and their ``queries.sql``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from broker import clock
from broker.audit import AuditEvent, Auditor, Entry
from broker.errors import DuplicateConflict
from broker.store.base import (
    Accepted,
    DestinationView,
    Job,
    JobCounts,
    JobState,
    Lease,
    MatrixRow,
    MessageQuery,
    MessageRecord,
    MessageView,
    NewJob,
    NewMessage,
    ReceiptView,
    RejectedView,
    RelatedMessage,
    SeriesPoint,
    StoredReceipt,
    Submission,
    resubmitted,
)
from broker.store.connector import Connector, Row, Tx

PURGE_BATCH = 500
"""Messages purged per transaction: small enough that intake never waits long behind one."""
CLAIM_SCAN = 8
"""A claim of ``limit`` jobs ranks at most ``limit * CLAIM_SCAN`` of the earliest due ones."""
EVERYTHING = 2**62
"""A LIMIT no table reaches."""


@dataclass(frozen=True)
class PurgeCutoffs:
    """Cut-offs of a purge, as epoch seconds of the moment a message finished: bodies of
    messages finished before ``bodies[route]`` (else ``default_bodies``) go; so do the receipts
    and status of those finished before the receipts cut-off. None keeps for ever."""

    bodies: Mapping[str, float | None]
    receipts: Mapping[str, float | None]
    default_bodies: float | None
    default_receipts: float | None


@dataclass(frozen=True)
class Purged:
    bodies: int
    """Messages whose stored envelopes were emptied."""
    records: int
    """Messages whose receipts, jobs and status were deleted (the audit chain stays)."""
    bytes: int
    """Envelope bytes given back."""


def _cutoffs(by_route: Mapping[str, float | None], default: float | None) -> dict[str, object]:
    # A route with no period, or the table without one, keeps for ever: a cut-off of -1 that no
    # finish time is before.
    return {
        "cutoffs": json.dumps({r: (-1.0 if c is None else c) for r, c in by_route.items()}),
        "default_cutoff": -1.0 if default is None else default,
    }


def _job(row: Row) -> Job:
    values = {f.name: row[f.name] for f in dataclasses.fields(Job)}
    values["payload"] = bytes(values["payload"])
    return Job(**values)


def cursor_of(view: MessageView | RejectedView) -> str:
    """The cursor that continues a listing after ``view`` (opaque to callers)."""
    if isinstance(view, RejectedView):
        return f"{view.rejected_at}|{view.receipt_id}"
    return f"{view.accepted_at}|{view.track_id}"


def _sort_key(view: MessageView | RejectedView) -> tuple[str, str]:
    if isinstance(view, RejectedView):
        return view.rejected_at, view.receipt_id
    return view.accepted_at, view.track_id


def _rejected(row: Row) -> RejectedView:
    return RejectedView(
        row["message_id"], row["receipt_id"], row["sender"], row["issued_at"], row["code"]
    )


class Ledger:
    """The store every part of the gateway uses; see the module docstring."""

    def __init__(self, connector: Connector, auditor: Auditor | None = None) -> None:
        self.db = connector
        self.auditor = auditor

    # -- plumbing ----------------------------------------------------------------------------
    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def ping(self) -> bool:
        return await self.db.ping()

    async def subscribe(self, wake: Callable[[], None]) -> None:
        await self.db.subscribe(wake)

    # -- audit -------------------------------------------------------------------------------
    async def _append(self, tx: Tx, events: Sequence[AuditEvent]) -> None:
        """Chain ``events`` onto the audit log inside the caller's transaction. ``audit_lock``
        keeps one chain across processes until that transaction ends."""
        if self.auditor is None or not events:
            return
        await tx.execute("audit_lock")
        head = await tx.fetch_one("audit_head")
        entries = self.auditor.entries(events, (head["seq"], head["hash"]) if head else None)
        await tx.execute_many("audit_append", [e.as_row() for e in entries])

    async def audit(self, events: Sequence[AuditEvent]) -> None:
        async def op(tx: Tx) -> None:
            await self._append(tx, events)

        await self.db.write(op)

    async def audit_entries(self, first: int, last: int) -> list[Entry]:
        async def op(tx: Tx) -> list[Entry]:
            rows = await tx.fetch_all("audit_range", {"first": first, "last": last})
            return [Entry(**dict(row)) for row in rows]

        return await self.db.read(op)

    # -- intake ------------------------------------------------------------------------------
    async def accept(
        self,
        message: NewMessage,
        jobs: list[NewJob],
        receipt: StoredReceipt,
        events: Sequence[AuditEvent] = (),
        submission: Submission | None = None,
    ) -> Accepted:
        async def op(tx: Tx) -> Accepted:
            inserted = await tx.fetch_one(
                "insert_message", {**vars(message), "accepted_receipt": receipt.receipt_id}
            )
            if inserted is None:  # (sender, MessageID) exists: identical, or a conflict
                row = await tx.fetch_one("find_accepted", vars(message))
                if row is not None and row["digest"] == message.digest:
                    await self._append(tx, [resubmitted(message)])
                    if submission is not None:  # answered 200, the original receipt
                        again = dataclasses.replace(submission, status=200)
                        await tx.execute("insert_submission", vars(again))
                    return Accepted(False, bytes(row["body"]))
                raise DuplicateConflict(
                    f"{message.message_id} was accepted from {message.sender} before with "
                    "another content (digest differs)"
                )
            await tx.execute("insert_receipt", vars(receipt))
            await tx.execute_many("insert_job", [{**vars(j), "now": j.next_attempt} for j in jobs])
            await self._append(tx, events)
            if submission is not None:
                await tx.execute("insert_submission", vars(submission))
            if jobs:
                await tx.notify()
            return Accepted(True, receipt.body)

        return await self.db.write(op)

    async def record_receipt(
        self,
        receipt: StoredReceipt,
        events: Sequence[AuditEvent] = (),
        submission: Submission | None = None,
    ) -> None:
        """Store a receipt that belongs to no accepted message (Rejected), with its events."""

        async def op(tx: Tx) -> None:
            await tx.execute("insert_receipt", vars(receipt))
            if submission is not None:
                await tx.execute("insert_submission", vars(submission))
            await self._append(tx, events)

        await self.db.write(op)

    async def record_submission(self, submission: Submission) -> None:
        """A submission answered without a receipt (429/503: busy)."""

        async def op(tx: Tx) -> None:
            await tx.execute("insert_submission", vars(submission))

        await self.db.write(op)

    async def submissions(self, sender: str, since: float = 0.0) -> list[Submission]:
        """What ``sender`` submitted from ``since`` (epoch seconds) on, oldest first."""

        async def op(tx: Tx) -> list[Submission]:
            rows = await tx.fetch_all("submissions_of", {"sender": sender, "since": since})
            return [Submission(**dict(row)) for row in rows]

        return await self.db.read(op)

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
        """Lease up to ``limit`` due jobs to ``owner`` until ``now + lease``: for each
        destination at most ``rooms[destination]`` (its free delivery slots; 0 for one that is
        saturated or behind an open circuit breaker), else ``room_default``."""
        params = {
            "now": now,
            "limit": limit,
            "owner": owner,
            "expires": now + lease,
            "rooms": json.dumps(dict(rooms or {})),
            "room_default": room_default,
            # Enough earliest jobs that destinations near their cap cannot crowd out the rest.
            "scan": limit * CLAIM_SCAN,
        }

        async def op(tx: Tx) -> list[Job]:
            leased = await tx.fetch_all("lease_due", params)
            if not leased:
                return []
            ids = json.dumps([row["id"] for row in leased])
            rows = await tx.fetch_all("leased_jobs", {"ids": ids, "owner": owner})
            return [_job(row) for row in rows]

        return await self.db.write(op)

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
        """Mark a job delivered or failed, with its receipt, receipt-push job and events, in
        one transaction. False if ``owner`` no longer held the lease (nothing is written)."""

        async def op(tx: Tx) -> bool:
            changed = await tx.execute(
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
            if not changed:
                return False
            if receipt is not None:
                await tx.execute("insert_receipt", vars(receipt))
            if push is not None:
                await tx.execute("insert_job", {**vars(push), "now": push.next_attempt})
                await tx.notify()
            await self._append(tx, events)
            return True

        return await self.db.write(op)

    async def reschedule(
        self,
        job: Job,
        owner: str,
        attempts: int,
        next_attempt: float,
        last_error: str,
        events: Sequence[AuditEvent] = (),
    ) -> bool:
        """Give the job back for a later attempt. False if the lease was lost."""

        async def op(tx: Tx) -> bool:
            changed = await tx.execute(
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
            if changed:
                await self._append(tx, events)
            return bool(changed)

        return await self.db.write(op)

    async def release(self, owner: str) -> int:
        """Release every lease ``owner`` holds (clean shutdown)."""

        async def op(tx: Tx) -> int:
            return await tx.execute("release_leases", {"owner": owner})

        return await self.db.write(op)

    async def retry(
        self,
        message_id: str,
        destination: str | None,
        now: float,
        deadline: float,
        events: Sequence[AuditEvent] = (),
    ) -> int:
        """Put failed destinations of a message back to pending; the number of jobs reset."""

        async def op(tx: Tx) -> int:
            total = await tx.execute(
                "retry_jobs",
                {
                    "message_id": message_id,
                    "destination": destination,
                    "now": now,
                    "deadline": deadline,
                },
            )
            if total:
                await self._append(tx, events)
                await tx.notify()
            return total

        return await self.db.write(op)

    # -- retention ---------------------------------------------------------------------------
    async def purge(
        self, retention: PurgeCutoffs, *, dry_run: bool = False, batch: int = PURGE_BATCH
    ) -> Purged:
        """Apply retention (SPEC §6) to finished messages, ``batch`` messages per transaction
        (intake never waits long behind one), each batch audited as a ``purged`` event.
        ``dry_run`` reports what would go and changes nothing."""
        bodies = _cutoffs(retention.bodies, retention.default_bodies)
        records = _cutoffs(retention.receipts, retention.default_receipts)
        if dry_run:

            async def count(tx: Tx) -> Purged:
                emptied = await tx.fetch_all("due_bodies", {**bodies, "limit": EVERYTHING})
                gone = await tx.fetch_all("due_records", {**records, "limit": EVERYTHING})
                return Purged(len(emptied), len(gone), sum(int(r["size"]) for r in emptied))

            return await self.db.read(count)
        rejected_before = (
            None
            if retention.default_receipts is None
            else clock.format_time(dt.datetime.fromtimestamp(retention.default_receipts, dt.UTC))
        )
        total = Purged(0, 0, 0)
        while True:

            async def one_batch(tx: Tx) -> Purged:
                return await self._purge_batch(tx, bodies, records, rejected_before, batch)

            done = await self.db.write(one_batch)
            total = Purged(
                total.bodies + done.bodies, total.records + done.records, total.bytes + done.bytes
            )
            if done.bodies < batch and done.records < batch:
                break
        if total.bodies or total.records:
            await self.db.compact()
        return total

    async def _purge_batch(
        self,
        tx: Tx,
        bodies: Mapping[str, object],
        records: Mapping[str, object],
        rejected_before: str | None,
        batch: int,
    ) -> Purged:
        emptied = await tx.fetch_all("due_bodies", {**bodies, "limit": batch})
        if emptied:
            ids = json.dumps([row["track_id"] for row in emptied])
            await tx.execute("empty_bodies", {"ids": ids, "now": clock.format_time(clock.now())})
        gone = await tx.fetch_all("due_records", {**records, "limit": batch})
        if gone:
            ids = json.dumps([row["track_id"] for row in gone])
            for query in ("delete_receipts", "delete_jobs", "delete_messages"):
                await tx.execute(query, {"ids": ids})
        rejected = 0
        if rejected_before is not None:
            rejected = await tx.execute("delete_rejected", {"before": rejected_before})
        done = Purged(len(emptied), len(gone), sum(int(r["size"]) for r in emptied))
        if done.bodies or done.records or rejected:
            detail: dict[str, object] = {
                "bodies": [r["track_id"] for r in emptied],
                "records": [r["track_id"] for r in gone],
                "rejected_receipts": rejected,
                "bytes": done.bytes,
            }
            await self._append(tx, [AuditEvent("purged", None, detail=detail)])
        return done

    # -- reading -----------------------------------------------------------------------------
    async def _views(self, tx: Tx, rows: Sequence[Row]) -> list[MessageView]:
        """Views of ``rows`` (messages) with their destinations and receipts: two queries for
        the whole page."""
        if not rows:
            return []
        ids = json.dumps([row["track_id"] for row in rows])
        destinations: dict[str, list[DestinationView]] = {}
        for job in await tx.fetch_all("jobs_of_messages", {"ids": ids}):
            destinations.setdefault(job["track_id"], []).append(
                DestinationView(
                    job["destination"], job["state"], job["attempts"], job["last_error"]
                )
            )
        receipts: dict[str, list[ReceiptView]] = {}
        for receipt in await tx.fetch_all("receipts_of_messages", {"ids": ids}):
            receipts.setdefault(receipt["track_id"], []).append(
                ReceiptView(receipt["receipt_id"], receipt["kind"], receipt["destination"])
            )
        return [
            MessageView(
                row["message_id"],
                row["track_id"],
                row["sender"],
                row["route"],
                row["accepted_at"],
                tuple(destinations.get(row["track_id"], ())),
                tuple(receipts.get(row["track_id"], ())),
                row["upstream_track_id"],
                row["purged_at"],
            )
            for row in rows
        ]

    async def message(self, message_id: str, sender: str | None) -> MessageView | None:
        """A message by MessageID, restricted to ``sender`` unless None (admin: the first
        accepted of that MessageID)."""

        async def op(tx: Tx) -> MessageView | None:
            rows = await tx.fetch_all("message_by_id", {"message_id": message_id, "sender": sender})
            views = await self._views(tx, rows[:1])
            return views[0] if views else None

        return await self.db.read(op)

    async def related(self, message_id: str) -> list[RelatedMessage]:
        """Every stored message with this MessageID (from any sender), for signals (SPEC §1)."""

        async def op(tx: Tx) -> list[RelatedMessage]:
            rows = await tx.fetch_all("message_by_id", {"message_id": message_id, "sender": None})
            by_track: dict[str, list[str]] = {row["track_id"]: [] for row in rows}
            if rows:
                ids = json.dumps(list(by_track))
                for job in await tx.fetch_all("jobs_of_messages", {"ids": ids}):
                    by_track[job["track_id"]].append(job["destination"])
            return [
                RelatedMessage(row["sender"], row["reply_to"], tuple(by_track[row["track_id"]]))
                for row in rows
            ]

        return await self.db.read(op)

    async def receipt(self, receipt_id: str) -> tuple[str | None, bytes] | None:
        """(sender, body) of a stored receipt."""

        async def op(tx: Tx) -> tuple[str | None, bytes] | None:
            row = await tx.fetch_one("receipt", {"receipt_id": receipt_id})
            return None if row is None else (row["sender"], bytes(row["body"]))

        return await self.db.read(op)

    async def messages(
        self,
        state: JobState | None,
        sender: str | None,
        since: str | None,
        limit: int,
        after: str | None = None,
    ) -> list[MessageView]:
        """Newest first: up to ``limit`` messages in ``state`` (as MessageView.state says), from
        ``sender``, accepted at or after ``since``, and after the cursor ``after`` (see
        :func:`cursor_of`). A full page means there may be more."""
        at, _, after_id = (after or "").partition("|")
        query = MessageQuery(state=state, sender=sender, since=since)
        params = {**vars(query), "after_at": at or None, "after_id": after_id, "limit": limit}

        async def op(tx: Tx) -> list[MessageView]:
            return await self._views(tx, await tx.fetch_all("search_messages", params))

        return await self.db.read(op)

    async def pending_by_destination(self) -> dict[str, int]:
        """Pending jobs (messages and receipt pushes) per destination: the backlog gauge."""

        async def op(tx: Tx) -> dict[str, int]:
            rows = await tx.fetch_all("pending_by_destination")
            return {row["destination"]: int(row["n"]) for row in rows}

        return await self.db.read(op)

    async def counts(self) -> JobCounts:
        async def op(tx: Tx) -> JobCounts:
            found = {r["state"]: (int(r["n"]), r["oldest"]) for r in await tx.fetch_all("counts")}
            pending, oldest = found.get("pending", (0, None))
            return JobCounts(
                pending,
                found.get("delivered", (0, None))[0],
                found.get("failed", (0, None))[0],
                oldest,
            )

        return await self.db.read(op)

    async def matrix(
        self,
        since: str,
        until: str,
        process: str | None = None,
        *,
        document: str | None = None,
        state: JobState | None = None,
        merge_processes: bool = False,
    ) -> list[MatrixRow]:
        """The exchange matrix of messages accepted in [since, until) (store time form),
        optionally of one process, one document code, and destinations in one state. With
        ``merge_processes``, one row per sender and destination (process ``*``), its
        percentiles computed over all of them."""

        async def op(tx: Tx) -> list[MatrixRow]:
            rows = await tx.fetch_all(
                "exchange_matrix",
                {
                    "since": since,
                    "until": until,
                    "process": process,
                    "document": document,
                    "state": state,
                    "merge": int(merge_processes),
                },
            )
            return [
                MatrixRow(
                    row["sender"],
                    row["destination"],
                    row["process"],
                    int(row["messages"]),
                    int(row["delivered"]),
                    int(row["failed"]),
                    int(row["pending"]),
                    None if row["p50_ms"] is None else float(row["p50_ms"]),
                    None if row["p95_ms"] is None else float(row["p95_ms"]),
                )
                for row in rows
            ]

        return await self.db.read(op)

    async def series(
        self, since: str, until: str, start: float, step: float, process: str | None = None
    ) -> list[SeriesPoint]:
        """Accepted, rejected, delivered and failed per ``step`` seconds from ``start`` (epoch
        seconds of ``since``); empty intervals are left out."""

        async def op(tx: Tx) -> list[Row]:
            return await tx.fetch_all(
                "exchange_series",
                {"since": since, "until": until, "start": start, "step": step, "process": process},
            )

        return [
            SeriesPoint(
                start + int(row["bucket"]) * step,
                int(row["accepted"] or 0),
                int(row["rejected"] or 0),
                int(row["delivered"] or 0),
                int(row["failed"] or 0),
            )
            for row in await self.db.read(op)
        ]

    # -- the console -------------------------------------------------------------------------
    async def search(
        self, query: MessageQuery, limit: int, after: str | None = None
    ) -> list[MessageView | RejectedView]:
        """Newest first: up to ``limit`` accepted messages and rejected submissions that meet
        ``query``, after the cursor ``after`` (:func:`cursor_of`). Each kind is read with its
        own keyset query (no OFFSET) and the two are merged here."""
        at, _, after_id = (after or "").partition("|")
        params = {
            **vars(query),
            "after_at": at or None,
            "after_id": after_id,
            "limit": limit,
        }

        async def op(tx: Tx) -> list[MessageView | RejectedView]:
            found: list[MessageView | RejectedView] = []
            if query.state != "rejected":
                identity = query.message_id or query.track_id or query.upstream_track_id
                name = "search_by_identity" if identity else "search_messages"
                found.extend(await self._views(tx, await tx.fetch_all(name, params)))
            if not query.accepted_only:
                rows = await tx.fetch_all("search_rejected", params)
                found.extend(_rejected(row) for row in rows)
            found.sort(key=_sort_key, reverse=True)
            return found[:limit]

        return await self.db.read(op)

    async def messages_with_id(
        self, message_id: str
    ) -> tuple[list[MessageView], list[RejectedView]]:
        """Every accepted message with this MessageID (one per sender) and every rejection."""

        async def op(tx: Tx) -> tuple[list[MessageView], list[RejectedView]]:
            rows = await tx.fetch_all("message_by_id", {"message_id": message_id, "sender": None})
            rejected = await tx.fetch_all("rejected_by_id", {"message_id": message_id})
            return await self._views(tx, rows), [_rejected(row) for row in rejected]

        return await self.db.read(op)

    async def record(self, track_id: str) -> MessageRecord | None:
        """What routed a message, and its envelopes (empty after retention purged them)."""

        async def op(tx: Tx) -> MessageRecord | None:
            row = await tx.fetch_one("message_record", {"track_id": track_id})
            if row is None:
                return None
            return MessageRecord(
                row["action"],
                row["document"],
                row["recipient"],
                row["table_digest"],
                bytes(row["raw"]),
                bytes(row["forwarded"]),
            )

        return await self.db.read(op)

    async def timeline(self, message_id: str) -> list[Entry]:
        """The audit entries of a MessageID, oldest first."""

        async def op(tx: Tx) -> list[Entry]:
            rows = await tx.fetch_all("timeline", {"message_id": message_id})
            return [Entry(**dict(row)) for row in rows]

        return await self.db.read(op)

    async def audit_head(self) -> tuple[int, str] | None:
        """(seq, hash) of the newest audit entry: recorded elsewhere, it pins the log."""

        async def op(tx: Tx) -> tuple[int, str] | None:
            row = await tx.fetch_one("audit_head")
            return None if row is None else (int(row["seq"]), str(row["hash"]))

        return await self.db.read(op)

    async def leases(self, now: float) -> list[Lease]:
        """Delivery leases held now, per worker."""

        async def op(tx: Tx) -> list[Lease]:
            rows = await tx.fetch_all("leases_held", {"now": now})
            return [
                Lease(row["lease_owner"], int(row["n"]), float(row["first_expiry"])) for row in rows
            ]

        return await self.db.read(op)

    async def destination_health(self, destination: str) -> tuple[float | None, int]:
        """(epoch seconds of its last delivery, messages failed to it since)."""

        async def op(tx: Tx) -> tuple[float | None, int]:
            row = await tx.fetch_one("destination_health", {"destination": destination})
            assert row is not None
            last = row["last_success"]
            return (None if last is None else float(last)), int(row["failed_since"])

        return await self.db.read(op)

    async def oldest_pending(self) -> tuple[str, str, str] | None:
        """(MessageID, accepted at, destination) of the oldest message still pending."""

        async def op(tx: Tx) -> tuple[str, str, str] | None:
            row = await tx.fetch_one("oldest_pending")
            if row is None:
                return None
            return row["message_id"], row["accepted_at"], row["destination"]

        return await self.db.read(op)

    async def size(self) -> tuple[int, int]:
        """(messages stored, bytes of their stored envelopes and receipts)."""

        async def op(tx: Tx) -> tuple[int, int]:
            row = await tx.fetch_one("stored_size")
            assert row is not None
            return int(row["messages"]), int(row["bytes"] or 0)

        return await self.db.read(op)
