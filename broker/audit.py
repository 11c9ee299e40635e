"""The tamper-evident audit log (SPEC §10).

Every event — received, rejected, accepted, delivery attempt, delivered, failed, receipt issued,
retry requested, routing reloaded or refused, gateway started with its trust — is appended in the
same transaction as the state change it records. Entry *n* holds:

    hash(n) = SHA-256 of the canonical JSON [seq, at, event, message_id, track_id,
                                              destination, detail, hash(n−1)]

(``hash(0)`` is 64 zeros) and the gateway's signature over ``hash(n)``. The chain makes an edited,
removed, inserted or reordered entry visible; the signature makes a forged entry — even one
appended at the end with a correctly computed hash — visible too, and lets an auditor check the
log with nothing but the gateway's certificate. Appends are serialised (one writer thread on
SQLite, an advisory lock on PostgreSQL) so several gateway processes keep one chain.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from broker import clock
from broker.signing import algorithms
from broker.signing.trust import GatewayIdentity

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditEvent:
    event: str
    message_id: str | None = None
    track_id: str | None = None
    destination: str | None = None
    detail: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Entry:
    seq: int
    at: str
    event: str
    message_id: str | None
    track_id: str | None
    destination: str | None
    detail: str
    """Canonical JSON (sorted keys)."""
    prev_hash: str
    hash: str
    signature: str

    def as_row(self) -> dict[str, object]:
        return vars(self).copy()


def entry_hash(
    seq: int,
    at: str,
    event: str,
    message_id: str | None,
    track_id: str | None,
    destination: str | None,
    detail: str,
    prev_hash: str,
) -> str:
    canonical = json.dumps(
        [seq, at, event, message_id, track_id, destination, detail, prev_hash],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class Auditor:
    """Turns events into signed chain entries (used by the stores inside their transactions)."""

    def __init__(self, identity: GatewayIdentity) -> None:
        self.identity = identity

    def _sign(self, digest_hex: str) -> str:
        key = self.identity.key
        signature = algorithms.private_family(key).sign_plain(key, bytes.fromhex(digest_hex))
        return base64.b64encode(signature).decode("ascii")

    def entries(self, events: Sequence[AuditEvent], head: tuple[int, str] | None) -> list[Entry]:
        """Chain ``events`` after ``head`` (seq, hash of the last entry; None for an empty log)."""
        seq, prev = head if head is not None else (0, GENESIS)
        out: list[Entry] = []
        at = clock.format_time(clock.now())
        for event in events:
            seq += 1
            detail = json.dumps(
                dict(event.detail),
                sort_keys=True,
                separators=(",", ":"),
                ensure_ascii=False,
                default=str,
            )
            digest = entry_hash(
                seq,
                at,
                event.event,
                event.message_id,
                event.track_id,
                event.destination,
                detail,
                prev,
            )
            out.append(
                Entry(
                    seq,
                    at,
                    event.event,
                    event.message_id,
                    event.track_id,
                    event.destination,
                    detail,
                    prev,
                    digest,
                    self._sign(digest),
                )
            )
            prev = digest
        return out


@dataclass(frozen=True)
class ChainCheck:
    entries: int
    head: str
    """Hash of the last entry checked (record it: it pins the whole log up to there)."""
    problem: str | None = None
    """The first entry that was changed, removed, inserted or reordered, or a bad signature."""


def _verify_signature(identity_key: object, digest_hex: str, signature_b64: str) -> bool:
    family = algorithms.family_of(identity_key)
    if family is None:
        return False
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        data = bytes.fromhex(digest_hex)
    except ValueError:
        return False
    return family.verify_plain(identity_key, signature, data)  # type: ignore[arg-type]


def verify_chain(
    entries: Iterable[Entry], public_key: object, start: tuple[int, str] = (0, GENESIS)
) -> ChainCheck:
    """Recompute the chain from ``start`` (seq, hash before the first entry); with a
    ``public_key`` also check each entry's signature (None: the chain alone)."""
    expected_seq, prev = start
    count = 0
    for entry in entries:
        expected_seq += 1
        count += 1
        recomputed = entry_hash(
            entry.seq,
            entry.at,
            entry.event,
            entry.message_id,
            entry.track_id,
            entry.destination,
            entry.detail,
            entry.prev_hash,
        )
        if recomputed != entry.hash:
            return ChainCheck(
                count, prev, f"entry {entry.seq} was changed (its content does not match its hash)"
            )
        if entry.seq != expected_seq:
            what = "removed" if entry.seq > expected_seq else "inserted or reordered"
            return ChainCheck(
                count,
                prev,
                f"entry {expected_seq} was {what} (found entry {entry.seq} in its place)",
            )
        if entry.prev_hash != prev:
            return ChainCheck(
                count,
                prev,
                f"entry {entry.seq} does not follow entry "
                f"{entry.seq - 1}: entries were removed, inserted "
                "or reordered",
            )
        if public_key is not None and not _verify_signature(
            public_key, entry.hash, entry.signature
        ):
            return ChainCheck(
                count, prev, f"entry {entry.seq} is not signed by the gateway key: forged"
            )
        prev = entry.hash
    return ChainCheck(count, prev)
