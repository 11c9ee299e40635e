"""The intake listener (SPEC §7): POST /v1/messages and the read API, over mutual TLS.

The read stage lives here: content type first (415), then the size limit, checked against
Content-Length and again while reading so an oversized body is refused (413) as soon as the
limit is passed. Both are answered without a receipt, as SPEC §4 says; every later refusal gets
a signed Rejected receipt from :mod:`broker.intake`. Bounded in-flight work: past the limit the
answer is 503 with Retry-After and nothing is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from broker import clock
from broker.errors import CertificateUntrusted, TooLarge, UnsupportedMediaType
from broker.http.admission import Admission, Refusal, Ticket
from broker.http.listener import default_max_connections
from broker.intake import Gateway, TlsIdentity, receive
from broker.signing.xmldsig import certificate_from_der
from broker.store.base import StoreUnavailable, Submission
from broker.tasks import TaskGroup

log = logging.getLogger("broker.http")

ACCEPTED_TYPES = ("application/soap+xml", "application/xml", "text/xml")
UUID = re.compile(
    r"(?:urn:uuid:)?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
    r"[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
)
INSECURE_PARTICIPANT_HEADER = "X-Broker-Participant"


@dataclass
class IntakeSettings:
    """The intake listener's bounds (docs/operations.md "Bounds and timeouts")."""

    max_in_flight: int = 256
    """Requests processed at once; beyond it, 503 with Retry-After and nothing stored."""
    insecure: bool = False
    """Plain HTTP for local development: no TLS identity, the signer is the sender."""
    body_budget: int = 256 * 1024 * 1024
    """Bytes of request bodies in flight at once (by Content-Length, or as a chunked body
    arrives); beyond it, 503 with Retry-After before memory can run away."""
    per_participant: int = 64
    """Requests in flight of one participant (its fair share); beyond it, 429 + Retry-After."""
    body_idle: float = 10.0
    """Seconds a body may go without a byte before the request is cut (408)."""
    body_grace: float = 5.0
    """Seconds before the minimum data rate applies to a body."""
    min_rate: int = 1024
    """Bytes per second a body must average after the grace period, else it is cut (408)."""
    handshake_timeout: float = 10.0
    """Seconds a TLS handshake may take."""
    keepalive_timeout: float = 75.0
    """Seconds a connection may stay idle — before its first request or between requests."""
    header_timeout: float = 30.0
    """Seconds from the TLS handshake to the end of the first request head."""
    max_connections: int = field(default_factory=default_max_connections)
    """Connections open at once (in their handshake included); beyond it they are closed."""
    per_address: int = 0
    """Connections open at once from one source address; 0: a quarter of max_connections."""


GATEWAY = web.AppKey("gateway", Gateway)
SETTINGS = web.AppKey("intake_settings", IntakeSettings)
ADMISSION = web.AppKey("admission", Admission)


def _problem(status: int, code: str, message: str, retry_after: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return web.json_response({"code": code, "message": message}, status=status, headers=headers)


def _tls_identity(request: web.Request) -> TlsIdentity:
    gateway = request.app[GATEWAY]
    if request.app[SETTINGS].insecure:
        return TlsIdentity(request.headers.get(INSECURE_PARTICIPANT_HEADER))
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
    if not der:
        return TlsIdentity(None, CertificateUntrusted("no TLS client certificate"))
    certificate = certificate_from_der(der)
    try:
        participant = gateway.config.current.trust.identify(
            certificate, (), gateway.config.table.participants, clock.now()
        )
    except CertificateUntrusted as exc:
        return TlsIdentity(None, CertificateUntrusted(f"TLS client certificate: {exc.message}"))
    return TlsIdentity(participant.id)


class _Cut(Exception):
    """The body is refused while it is being read: the answer, and the connection closes."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.response = _problem(status, code, message, retry_after)


async def _read_body(request: web.Request, limit: int, ticket: Ticket) -> bytes:
    """The body, within the size limit, the idle timeout and the minimum data rate; a
    chunked body's bytes are counted against the budget as they arrive."""
    settings = request.app[SETTINGS]
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"Content-Length {request.content_length} exceeds {limit} bytes")
    loop = asyncio.get_running_loop()
    began = loop.time()
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            async with asyncio.timeout(settings.body_idle):
                chunk = await request.content.readany()
        except TimeoutError:
            raise _Cut(
                408, "BODY_TIMEOUT", f"no body byte for {settings.body_idle:g} s; nothing stored"
            ) from None
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"body exceeds {limit} bytes")
        if request.content_length is None:
            refused = ticket.reserve(len(chunk))
            if refused is not None:
                raise _Cut(refused.status, refused.code, refused.message, refused.retry_after)
        chunks.append(chunk)
        elapsed = loop.time() - began
        if elapsed > settings.body_grace and size < settings.min_rate * (
            elapsed - settings.body_grace
        ):
            raise _Cut(
                408,
                "BODY_TOO_SLOW",
                f"the body arrives slower than {settings.min_rate} bytes/s; nothing stored",
            )


async def post_message(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    tls = _tls_identity(request)  # known before the body: the fair share needs it
    admitted = request.app[ADMISSION].admit(
        tls.participant if tls.error is None else None, request.content_length
    )
    if isinstance(admitted, Refusal):
        request.app[BUSY].note(tls.participant, admitted)
        return _problem(admitted.status, admitted.code, admitted.message, admitted.retry_after)
    try:
        if request.content_type not in ACCEPTED_TYPES:
            error = UnsupportedMediaType(
                f"Content-Type {request.content_type!r}; expected application/soap+xml"
            )
            return _problem(error.status, error.code, error.message)
        try:
            body = await _read_body(request, gateway.limits.max_bytes, admitted)
        except TooLarge as exc:
            response = _problem(exc.status, exc.code, exc.message)
            response.force_close()
            return response
        except _Cut as cut:
            log.info(
                "request from %s cut while reading its body: %s",
                request.remote,
                cut,
                extra={"event": "body_cut", "remote": request.remote},
            )
            cut.response.force_close()
            return cut.response
        except (ConnectionError, aiohttp.ClientConnectionError) as exc:
            # The client went away mid-body: nothing to answer or store; not our error.
            log.info(
                "client %s disconnected while sending: %s",
                request.remote,
                type(exc).__name__,
                extra={"event": "client_disconnected", "remote": request.remote},
            )
            response = _problem(400, "INCOMPLETE", "the request body was cut off")
            response.force_close()
            return response
        gateway.metrics.received.inc()
        began = time.perf_counter()
        try:
            outcome = await receive(gateway, body, tls)
        except StoreUnavailable as exc:
            log.error("store unavailable: %s", exc, extra={"event": "store_unavailable"})
            if exc.outcome_unknown:
                return _problem(
                    503,
                    "STORE_OUTCOME_UNKNOWN",
                    "the store was lost while committing: the message may or may not have been "
                    "stored. An identical resubmission is safe: it returns the original receipt "
                    "if it was stored, and stores it if not",
                    5,
                )
            return _problem(
                503,
                "STORE_UNAVAILABLE",
                "the store is unavailable; nothing was stored, try again",
                5,
            )
        gateway.metrics.intake_seconds.observe(time.perf_counter() - began)
        if outcome.status < 300:
            gateway.metrics.accepted.inc()
        else:
            gateway.metrics.rejected.labels(outcome.code).inc()
        return web.Response(
            status=outcome.status,
            body=outcome.receipt,
            content_type="application/xml",
            charset="utf-8",
        )
    finally:
        admitted.release()


def _caller(request: web.Request) -> str | None:
    identity = _tls_identity(request)
    return identity.participant if identity.error is None else None


def urn_uuid(value: str) -> str | None:
    match = UUID.fullmatch(value)
    return f"urn:uuid:{match.group(1).lower()}" if match else None


async def get_message(request: web.Request) -> web.Response:
    caller = _caller(request)
    message_id = urn_uuid(request.match_info["message_id"])
    if caller is None or message_id is None:
        return _problem(404, "NOT_FOUND", "no such message")
    view = await request.app[GATEWAY].store.message(message_id, caller)
    if view is None:
        # MessageIDs are kept as sent; try the spelling the sender may have used.
        raw = request.match_info["message_id"]
        view = await request.app[GATEWAY].store.message(
            raw if raw.startswith("urn:uuid:") else f"urn:uuid:{raw}", caller
        )
    if view is None:
        return _problem(404, "NOT_FOUND", "no such message")
    return web.json_response(view.as_json(), dumps=lambda d: json.dumps(d, indent=2))


async def get_receipt(request: web.Request) -> web.Response:
    caller = _caller(request)
    receipt_id = urn_uuid(request.match_info["receipt_id"])
    found = await request.app[GATEWAY].store.receipt(receipt_id) if receipt_id else None
    if found is None or caller is None or found[0] != caller:
        return _problem(404, "NOT_FOUND", "no such receipt")
    return web.Response(body=found[1], content_type="application/xml", charset="utf-8")


class BusyNotes:
    """Busy answers (429/503 with Retry-After) as submissions for `broker conformance
    sender`, at most one per participant per second: a flood must not become a write flood.
    Written off the request's path; lost, not retried, when the store is down."""

    INTERVAL = 1.0

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._last: dict[str, float] = {}
        self._tasks = TaskGroup()

    def note(self, participant: str | None, refusal: Refusal) -> None:
        now = time.time()
        if participant is None or now - self._last.get(participant, 0.0) < self.INTERVAL:
            return
        self._last[participant] = now
        submission = Submission(
            participant, now, refusal.status, refusal.code, retry_after=refusal.retry_after
        )
        self._tasks.start(self._record(submission), "busy-note")

    async def _record(self, submission: Submission) -> None:
        with contextlib.suppress(StoreUnavailable):
            await self.gateway.store.record_submission(submission)

    async def drain(self, app: web.Application) -> None:
        await self._tasks.drain(timeout=5)


BUSY = web.AppKey("busy_notes", BusyNotes)


def intake_app(gateway: Gateway, settings: IntakeSettings) -> web.Application:
    # client_max_size: aiohttp's own cap sits above ours so that our limit answers first.
    app = web.Application(client_max_size=gateway.limits.max_bytes + 1)
    app[GATEWAY] = gateway
    app[SETTINGS] = settings
    app[ADMISSION] = Admission(
        settings.max_in_flight, settings.body_budget, settings.per_participant
    )
    app[BUSY] = BusyNotes(gateway)
    app.on_cleanup.append(app[BUSY].drain)
    app.router.add_post("/v1/messages", post_message)
    app.router.add_get("/v1/messages/{message_id}", get_message)
    app.router.add_get("/v1/receipts/{receipt_id}", get_receipt)
    return app
