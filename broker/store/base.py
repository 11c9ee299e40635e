"""The store seam: what intake, delivery and the APIs need from durable storage (SPEC §9).

Two implementations fit behind :class:`Store`: SQLite (embedded, the default) and PostgreSQL
(several gateway processes on one database). Callers depend only on this module. The contract
that matters most: :meth:`Store.accept` commits the message, its delivery jobs and its Accepted
receipt in one transaction, and only then returns; jobs are leased to one worker at a time and an
expired lease can be taken over, so a job survives the crash of its holder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from broker.audit import AuditEvent, Auditor, Entry
from broker.errors import ConfigError

JobKind = Literal["message", "receipt"]
JobState = Literal["pending", "delivered", "failed"]


@dataclass(frozen=True)
class NewMessage:
    track_id: str
    sender: str
    message_id: str
    digest: str
    accepted_at: str
    route: str
    table_digest: str
    action: str
    document: str
    recipient: str
    raw: bytes
    forwarded: bytes
    upstream_track_id: str | None = None
    """The TrackID of an upstream ``int:Integration`` the sender's envelope carried."""
    reply_to: str | None = None
    """The sender's wsa:ReplyTo address: where a signal answering this message must go."""


@dataclass(frozen=True)
class NewJob:
    track_id: str
    kind: JobKind
    destination: str
    endpoint: str
    max_attempts: int
    initial_delay: float
    max_delay: float
    deadline: float
    """Epoch seconds after which delivery gives up (acceptance + ttl)."""
    next_attempt: float
    receipt_id: str | None = None


@dataclass(frozen=True)
class StoredReceipt:
    receipt_id: str
    kind: str
    issued_at: str
    body: bytes
    track_id: str | None = None
    message_id: str | None = None
    sender: str | None = None
    destination: str | None = None


@dataclass(frozen=True)
class Accepted:
    """Outcome of :meth:`Store.accept`: ``fresh`` False means an identical resubmission, and
    ``receipt`` is then the original Accepted receipt."""

    fresh: bool
    receipt: bytes


@dataclass(frozen=True)
class Job:
    """A leased delivery job with what it takes to deliver it."""

    id: int
    track_id: str
    kind: JobKind
    destination: str
    endpoint: str
    receipt_id: str | None
    attempts: int
    max_attempts: int
    initial_delay: float
    max_delay: float
    deadline: float
    sender: str
    message_id: str
    digest: str
    route: str
    table_digest: str
    accepted_at: str
    payload: bytes


@dataclass(frozen=True)
class DestinationView:
    participant: str
    state: JobState
    attempts: int
    last_error: str | None


@dataclass(frozen=True)
class ReceiptView:
    id: str
    kind: str
    destination: str | None


@dataclass(frozen=True)
class MessageView:
    message_id: str
    track_id: str
    sender: str
    route: str
    accepted_at: str
    destinations: tuple[DestinationView, ...]
    receipts: tuple[ReceiptView, ...]
    upstream_track_id: str | None = None

    @property
    def state(self) -> JobState:
        states = {d.state for d in self.destinations}
        if "pending" in states:
            return "pending"
        return "failed" if "failed" in states else "delivered"

    def as_json(self) -> dict[str, object]:
        """The SPEC §7 JSON of GET /v1/messages/{MessageID}."""
        return {
            "message_id": self.message_id,
            "track_id": self.track_id,
            "upstream_track_id": self.upstream_track_id,
            "sender": self.sender,
            "route": self.route,
            "destinations": [
                {
                    "participant": d.participant,
                    "state": d.state,
                    "attempts": d.attempts,
                    "last_error": d.last_error,
                }
                for d in self.destinations
            ],
            "receipts": [
                {"id": r.id, "kind": r.kind, "destination": r.destination} for r in self.receipts
            ],
        }


@dataclass(frozen=True)
class RelatedMessage:
    """A stored message a signal's wsa:RelatesTo names: who sent it, where answers go, and
    the participants it was routed to (the only ones who may answer it with a signal)."""

    sender: str
    reply_to: str | None
    destinations: tuple[str, ...]


@dataclass(frozen=True)
class JobCounts:
    pending: int
    delivered: int
    failed: int
    oldest_pending: float | None
    """Epoch seconds of the oldest pending job's last change, if any."""


class StoreUnavailable(Exception):
    """The store cannot be reached or a transaction failed; intake answers 503.

    ``outcome_unknown``: the connection was lost while the transaction committed, so it may
    have been committed (an identical resubmission then returns the original receipt)."""

    def __init__(self, message: str, *, outcome_unknown: bool = False) -> None:
        super().__init__(message)
        self.outcome_unknown = outcome_unknown


class Store(Protocol):
    """Durable storage of messages, delivery jobs and receipts."""

    async def open(self) -> None:
        """Connect and apply pending migrations."""

    async def close(self) -> None: ...

    async def ping(self) -> bool:
        """True when the store answers (for /readyz)."""

    async def subscribe(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` when another process commits new jobs (PostgreSQL LISTEN/NOTIFY);
        a store only one process writes may do nothing."""

    async def accept(
        self,
        message: NewMessage,
        jobs: list[NewJob],
        receipt: StoredReceipt,
        events: Sequence[AuditEvent] = (),
    ) -> Accepted:
        """Commit message, jobs, Accepted receipt and audit ``events`` atomically, or return
        the original receipt of an identical earlier submission (auditing a resubmission).
        Raises DuplicateConflict when the same sender and MessageID arrive with another
        digest."""

    async def record_receipt(
        self, receipt: StoredReceipt, events: Sequence[AuditEvent] = ()
    ) -> None:
        """Store a receipt that belongs to no accepted message (Rejected), with its events."""

    async def audit(self, events: Sequence[AuditEvent]) -> None:
        """Append events that record no other state change (routing reloaded, started)."""

    async def audit_entries(self, first: int, last: int) -> list[Entry]:
        """Audit log entries ``first`` to ``last`` (by seq), in order."""

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

    async def pending_by_destination(self) -> dict[str, int]:
        """Pending jobs (messages and receipt pushes) per destination: the backlog gauge."""

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

    async def release(self, owner: str) -> int:
        """Release every lease ``owner`` holds (clean shutdown)."""

    async def message(self, message_id: str, sender: str | None) -> MessageView | None:
        """A message by MessageID, restricted to ``sender`` unless None (admin)."""

    async def related(self, message_id: str) -> list[RelatedMessage]:
        """Every stored message with this MessageID (from any sender), for signals (SPEC §1)."""

    async def receipt(self, receipt_id: str) -> tuple[str | None, bytes] | None:
        """(sender, body) of a stored receipt."""

    async def messages(
        self, state: JobState | None, sender: str | None, since: str | None, limit: int
    ) -> list[MessageView]: ...

    async def retry(
        self,
        message_id: str,
        destination: str | None,
        now: float,
        deadline: float,
        events: Sequence[AuditEvent] = (),
    ) -> int:
        """Put failed destinations of a message back to pending; the number of jobs reset."""

    async def counts(self) -> JobCounts: ...


def resubmitted(message: NewMessage) -> AuditEvent:
    """The audit event of an identical resubmission (nothing else is written for it)."""
    return AuditEvent(
        "resubmitted",
        message.message_id,
        detail={"sender": message.sender, "digest": message.digest},
    )


def redact(url: str) -> str:
    """A store URL fit for logs, errors and the admin API: any password replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    credentials, _, host = rest.partition("@")
    user, colon, _ = credentials.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"


def open_store(
    url: str, auditor: Auditor | None = None, *, create: bool = False, folders: bool = False
) -> Store:
    """The store for a URL: ``sqlite:///relative/path``, ``sqlite:////absolute/path``, or a
    libpq URL ``postgresql://user@host:port/db``.

    ``create``: a SQLite file that does not exist yet may be created (``broker serve``); every
    read-only and operator command refuses one instead, so that a typo in a path is an error
    rather than an empty store. ``folders``: its missing folders may be created too
    (``serve --create-store``)."""
    if url.startswith("sqlite:///"):
        from broker.store.sqlite import SqliteStore

        return SqliteStore(url.removeprefix("sqlite:///"), auditor, create=create, folders=folders)
    if url.startswith(("postgresql://", "postgres://")):
        from broker.store.postgres import PostgresStore

        return PostgresStore(url, auditor=auditor)
    raise ConfigError(f"unknown store URL {redact(url)!r} (sqlite:///path or postgresql://…)")
