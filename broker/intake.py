"""The intake pipeline, in one place (SPEC §7, §8, §9).

    read → parse → envelope → schema → signature → route → persist → receipt

``read`` (content type, size limit while reading) happens in the HTTP layer; every other stage
is one call below, in order, each returning a new frozen value. A refusal at any stage becomes a
signed Rejected receipt, stored and answered with the stage's SPEC §8 status; nothing refused is
ever stored as a message or forwarded. An Accepted receipt is answered only after the message,
its delivery jobs and the receipt itself are committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from broker import clock, xmlsafe
from broker.audit import AuditEvent
from broker.config import ConfigHolder, Configuration
from broker.envelope import WSA, WSU
from broker.errors import CertificateUntrusted, EnvelopeInvalid, RefusalError
from broker.metrics import Metrics
from broker.receipts import Receipt, build_receipt, refusal_errors, sha256_b64
from broker.routing.table import Decision, RoutingTable
from broker.signing.sign import countersign
from broker.signing.trust import GatewayIdentity
from broker.signing.verify import Verified, verify_sender
from broker.store import Store
from broker.store.base import NewJob, NewMessage, RelatedMessage, StoredReceipt, Submission
from broker.validation import check_document

log = logging.getLogger("broker.intake")


@dataclass(frozen=True)
class TlsIdentity:
    """Who the TLS client certificate says is calling (None participant: insecure HTTP)."""

    participant: str | None
    error: CertificateUntrusted | None = None


@dataclass
class Gateway:
    """Everything the stages need: the configuration in force (reloaded as one set) and what
    stays for the life of the process (identity, store, limits)."""

    config: ConfigHolder
    identity: GatewayIdentity
    store: Store
    limits: xmlsafe.XmlLimits = xmlsafe.DEFAULT_LIMITS
    wake_delivery: Callable[[], None] = lambda: None
    cpu: ThreadPoolExecutor | None = None
    metrics: Metrics = field(default_factory=Metrics)


@dataclass(frozen=True)
class Outcome:
    """What the HTTP layer answers: status and the signed receipt."""

    status: int
    receipt: bytes
    code: str
    message_id: str | None = None
    track_id: str | None = None


@dataclass(frozen=True)
class _Ready:
    """A verified, routed message with everything persist needs, built off the event loop."""

    verified: Verified
    decision: Decision
    table: RoutingTable
    message: NewMessage
    jobs: list[NewJob]
    receipt: StoredReceipt

    def events(self) -> list[AuditEvent]:
        """The audit trail of an acceptance, written in the same transaction."""
        m = self.message
        return [
            received(m.message_id, m.sender, m.digest, len(m.raw)),
            AuditEvent(
                "routed",
                m.message_id,
                m.track_id,
                detail={
                    "rule": m.route,
                    "table": m.table_digest,
                    "destinations": [j.destination for j in self.jobs],
                },
            ),
            AuditEvent(
                "accepted",
                m.message_id,
                m.track_id,
                detail={
                    "sender": m.sender,
                    "coverage": self.verified.coverage,
                    "upstream_track_id": m.upstream_track_id,
                },
            ),
            AuditEvent(
                "receipt_issued",
                m.message_id,
                m.track_id,
                detail={"receipt_id": self.receipt.receipt_id, "kind": "Accepted"},
            ),
        ]


def received(message_id: str | None, sender: str | None, digest: str, size: int) -> AuditEvent:
    return AuditEvent(
        "received", message_id, detail={"sender": sender, "digest": digest, "bytes": size}
    )


def _message_id_if_readable(data: bytes) -> str | None:
    """The MessageID for a Rejected receipt, when the body parses far enough to read one."""
    try:
        root = xmlsafe.parse(data)
    except RefusalError:
        return None
    found = root.find(f".//{{{WSA}}}MessageID")
    return xmlsafe.text_value(found) if found is not None else None


@dataclass(frozen=True)
class _Context:
    """What one message is judged by: one time and one configuration throughout."""

    now: dt.datetime
    config: Configuration

    @property
    def table(self) -> RoutingTable:
        return self.config.table


def _verify(gw: Gateway, body: bytes, tls: TlsIdentity, ctx: _Context) -> Verified:
    """parse → envelope → schema → signature (CPU: run in a worker thread)."""
    validated = check_document(body, ctx.config.catalog, gw.limits)  # parse, envelope, schema
    verified = verify_sender(  # signature: SIGNATURE_*, CERTIFICATE_UNTRUSTED, SENDER_MISMATCH
        validated,
        ctx.config.trust,
        ctx.table.participants,
        at=ctx.now,
        tls_participant=tls.participant if tls.error is None else None,
    )
    if tls.error is not None:
        raise tls.error
    return verified


def _answers(verified: Verified) -> str | None:
    """The MessageID a signal answers, whose stored message the signal must fit (SPEC §1)."""
    envelope = verified.envelope
    if envelope.document.signal is None or envelope.relates_to is None:
        return None
    return envelope.relates_to.value


def check_related(verified: Verified, related: list[RelatedMessage]) -> None:
    """A signal answering a stored message comes from one of its destinations and is
    addressed to its sender's wsa:ReplyTo; one naming no stored message is routed by wsa:To."""
    if not related:
        return
    envelope = verified.envelope
    sender = verified.sender.id
    if any(sender in m.destinations and envelope.to.value == m.reply_to for m in related):
        return
    answered = envelope.relates_to.value if envelope.relates_to else "?"
    if not any(sender in m.destinations for m in related):
        raise EnvelopeInvalid(
            f"signal {envelope.document.signal} answers {answered}, which was not delivered to "
            f"{sender}; only its destinations may answer it"
        )
    expected = ", ".join(sorted({m.reply_to or "?" for m in related if sender in m.destinations}))
    raise EnvelopeInvalid(
        f"signal {envelope.document.signal} answers {answered} but wsa:To is "
        f"{envelope.to.value}, not that message's wsa:ReplyTo {expected}"
    )


def _prepare(gw: Gateway, body: bytes, tls: TlsIdentity, ctx: _Context) -> _Ready | Verified:
    """The CPU stages in one worker-thread hop; a signal answering a message stops after the
    signature, for its store check (:func:`check_related`) before it is routed."""
    verified = _verify(gw, body, tls, ctx)
    if _answers(verified) is not None:
        return verified
    return _forward(gw, verified, ctx)


def _forward(gw: Gateway, verified: Verified, ctx: _Context) -> _Ready:
    """route, then countersign and the receipt (CPU: run in a worker thread)."""
    now, table = ctx.now, ctx.table
    body = verified.validated.raw
    decision = table.route(verified.facts)  # route: NO_ROUTE, ROUTE_DENIED
    track_id = f"urn:uuid:{uuid.uuid4()}"
    accepted_at = clock.format_time(now)
    forwarded = countersign(verified, gw.identity, track_id, accepted_at)
    envelope = verified.envelope
    digest = sha256_b64(body)
    receipt = Receipt(
        kind="Accepted",
        gateway=table.gateway_id,
        message_digest=digest,
        issued_at=clock.format_time(clock.now()),
        message_id=envelope.message_id.value,
        track_id=track_id,
        sender=verified.sender.id,
        route=decision.rule.name,
        table_digest=table.digest,
        destinations=tuple(p.id for p in decision.destinations),
        coverage="body" if verified.coverage == "body" else None,
    )
    signed_receipt = build_receipt(receipt, gw.identity)
    policy = decision.rule.retry
    start = now.timestamp()
    jobs = [
        NewJob(
            track_id=track_id,
            kind="message",
            destination=p.id,
            endpoint=p.endpoint,
            max_attempts=policy.attempts,
            initial_delay=policy.initial,
            max_delay=policy.max,
            deadline=start + policy.ttl,
            next_attempt=start,
        )
        for p in decision.destinations
    ]
    message = NewMessage(
        track_id=track_id,
        sender=verified.sender.id,
        message_id=envelope.message_id.value,
        digest=digest,
        accepted_at=accepted_at,
        route=decision.rule.name,
        table_digest=table.digest,
        action=verified.facts.action,
        document=verified.facts.document,
        recipient=verified.facts.to,
        raw=body,
        forwarded=forwarded,
        upstream_track_id=envelope.upstream_track_id,
        reply_to=envelope.reply_to.value,
    )
    stored = StoredReceipt(
        receipt_id=receipt.receipt_id,
        kind="Accepted",
        issued_at=receipt.issued_at,
        body=signed_receipt,
        track_id=track_id,
        message_id=message.message_id,
        sender=message.sender,
    )
    return _Ready(verified, decision, table, message, jobs, stored)


def _rejection(
    gw: Gateway, body: bytes, sender: str | None, error: RefusalError
) -> tuple[Receipt, bytes]:
    """The signed Rejected receipt (CPU: re-reads the MessageID, signs; run off the loop)."""
    receipt = Receipt(
        kind="Rejected",
        gateway=gw.config.table.gateway_id,
        message_digest=sha256_b64(body),
        message_id=_message_id_if_readable(body),
        sender=sender,
        errors=refusal_errors(error),
    )
    return receipt, build_receipt(receipt, gw.identity)


async def _reject(
    gw: Gateway, body: bytes, tls: TlsIdentity, error: RefusalError, sender: str | None = None
) -> Outcome:
    receipt, signed = await asyncio.get_running_loop().run_in_executor(
        gw.cpu, _rejection, gw, body, sender or tls.participant, error
    )
    message_id = receipt.message_id
    events = [
        received(message_id, receipt.sender, receipt.message_digest, len(body)),
        AuditEvent("rejected", message_id, detail={"code": error.code, "reason": error.message}),
        AuditEvent(
            "receipt_issued",
            message_id,
            detail={"receipt_id": receipt.receipt_id, "kind": "Rejected"},
        ),
    ]
    await gw.store.record_receipt(
        StoredReceipt(
            receipt_id=receipt.receipt_id,
            kind="Rejected",
            issued_at=receipt.issued_at,
            body=signed,
            message_id=message_id,
            sender=receipt.sender,
            code=error.code,
        ),
        events,
        Submission(
            receipt.sender,
            time.time(),
            error.status,
            error.code,
            message_id,
            receipt.message_digest,
        ),
    )
    log.info(
        "rejected",
        extra={
            "event": "rejected",
            "code": error.code,
            "message_id": message_id,
            "reason": error.loggable,
        },
    )
    return Outcome(error.status, signed, error.code, message_id)


def _facts(ready: _Ready, now: dt.datetime) -> Submission:
    """What `broker conformance sender` needs of an accepted submission, read from what
    verification already parsed (nothing is parsed again)."""
    signature = ready.verified.signature
    created = (
        ready.verified.timestamp.findtext(f"{{{WSU}}}Created")
        if ready.verified.timestamp is not None
        else None
    )
    skew = None
    if created:
        with contextlib.suppress(ValueError):
            skew = (clock.parse_rfc3339(created) - now).total_seconds()
    return Submission(
        ready.message.sender,
        time.time(),
        202,
        "ACCEPTED",
        ready.message.message_id,
        ready.message.digest,
        signature.signer.form,
        signature.method.uri,
        skew,
    )


async def receive(gw: Gateway, body: bytes, tls: TlsIdentity) -> Outcome:
    """Run the pipeline on a request body that passed the read stage."""
    loop = asyncio.get_running_loop()
    # One configuration for the whole message: its routing digest goes in the receipt.
    ctx = _Context(clock.now(), gw.config.current)
    try:
        prepared = await loop.run_in_executor(gw.cpu, _prepare, gw, body, tls, ctx)
        if isinstance(prepared, Verified):
            answers = _answers(prepared)
            assert answers is not None
            check_related(prepared, await gw.store.related(answers))
            prepared = await loop.run_in_executor(gw.cpu, _forward, gw, prepared, ctx)
        ready = prepared
    except RefusalError as exc:
        return await _reject(gw, body, tls, exc)
    try:
        accepted = await gw.store.accept(  # persist
            ready.message, ready.jobs, ready.receipt, ready.events(), _facts(ready, ctx.now)
        )
    except RefusalError as exc:  # DUPLICATE_CONFLICT
        return await _reject(gw, body, tls, exc, sender=ready.message.sender)
    message = ready.message
    if not accepted.fresh:
        log.info(
            "resubmission",
            extra={
                "event": "resubmitted",
                "message_id": message.message_id,
                "sender": message.sender,
            },
        )
        return Outcome(200, accepted.receipt, "ACCEPTED", message.message_id)
    gw.wake_delivery()
    log.info(
        "accepted",
        extra={
            "event": "accepted",
            "message_id": message.message_id,
            "track_id": message.track_id,
            "sender": message.sender,
            "route": message.route,
            "destinations": [j.destination for j in ready.jobs],
        },
    )
    return Outcome(202, accepted.receipt, "ACCEPTED", message.message_id, message.track_id)
