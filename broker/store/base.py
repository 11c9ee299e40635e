"""The store's vocabulary: the records intake, delivery and the APIs pass to and get from
durable storage (SPEC §9), and its failure, :class:`StoreUnavailable`.

The one implementation is :class:`broker.store.ledger.Ledger` over a connector for SQLite
(embedded, the default) or PostgreSQL (several gateway processes on one database);
:func:`broker.store.open_store` picks it from a URL. The contract that matters most: ``accept``
commits the message, its delivery jobs and its Accepted receipt in one transaction, and only
then returns; jobs are leased to one worker at a time and an expired lease can be taken over,
so a job survives the crash of its holder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from broker.audit import AuditEvent

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
class Submission:
    """What one answered submission showed of its sender (`broker conformance sender`)."""

    sender: str | None
    at: float
    """Epoch seconds."""
    status: int
    code: str
    """``ACCEPTED``, a SPEC §8 code, or a busy answer's (``BUSY``, ``TOO_MANY_REQUESTS``)."""
    message_id: str | None = None
    digest: str | None = None
    keyinfo: str | None = None
    algorithm: str | None = None
    skew: float | None = None
    """Seconds from the gateway's clock to the sender's wsu:Timestamp Created."""
    retry_after: float | None = None


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
    code: str | None = None
    """Rejected and Failed receipts: the SPEC §8 code (the first of its errors)."""


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
    bodies_purged_at: str | None = None
    """When retention emptied its stored envelopes (SPEC §6); None while they are kept."""

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


@dataclass(frozen=True)
class MatrixRow:
    """One cell of the exchange matrix, for one process."""

    sender: str
    destination: str
    process: str
    messages: int
    delivered: int
    failed: int
    pending: int
    p50_ms: float | None
    p95_ms: float | None


@dataclass(frozen=True)
class MessageQuery:
    """The console's message search: every filter optional. ``state`` is a message's state
    (:attr:`MessageView.state`) or ``rejected``; ``code`` a SPEC §8 code of a Rejected or Failed
    receipt; times are in the store's form, ``until`` exclusive."""

    message_id: str | None = None
    track_id: str | None = None
    upstream_track_id: str | None = None
    sender: str | None = None
    destination: str | None = None
    process: str | None = None
    document: str | None = None
    route: str | None = None
    state: JobState | Literal["rejected"] | None = None
    since: str | None = None
    until: str | None = None
    code: str | None = None

    @property
    def accepted_only(self) -> bool:
        """A filter that no rejected submission can meet (it has no TrackID, rule, …)."""
        return bool(
            self.track_id
            or self.upstream_track_id
            or self.destination
            or self.process
            or self.document
            or self.route
            or self.state in ("pending", "delivered", "failed")
        )


@dataclass(frozen=True)
class MessageRecord:
    """What routed a stored message, and its envelopes."""

    action: str
    document: str
    recipient: str
    table_digest: str
    raw: bytes
    """As received, byte for byte (empty once retention purged it)."""
    forwarded: bytes
    """As delivered to its destinations (empty once purged)."""


@dataclass(frozen=True)
class RejectedView:
    """A rejected submission: nothing of it is stored but its Rejected receipt."""

    message_id: str | None
    receipt_id: str
    sender: str | None
    rejected_at: str
    code: str | None


@dataclass(frozen=True)
class SeriesPoint:
    """One interval of the console's time-series strip."""

    start: float
    """Epoch seconds."""
    accepted: int
    rejected: int
    delivered: int
    failed: int


@dataclass(frozen=True)
class Lease:
    owner: str
    jobs: int
    first_expiry: float


class StoreUnavailable(Exception):
    """The store cannot be reached or a transaction failed; intake answers 503.

    ``outcome_unknown``: the connection was lost while the transaction committed, so it may
    have been committed (an identical resubmission then returns the original receipt)."""

    def __init__(self, message: str, *, outcome_unknown: bool = False) -> None:
        super().__init__(message)
        self.outcome_unknown = outcome_unknown


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
