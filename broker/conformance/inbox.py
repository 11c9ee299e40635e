"""`broker conformance inbox PARTICIPANT --url URL`: a participant's inbox met as the gateway
would meet it, with a scripted series of deliveries scored against criteria.INBOX.

Probes are real forwarded envelopes:
- the sender's signature is made by a development participant of another member state (or
  ``--sender-key/--sender-cert``);
- the countersignature is made by the conformance identity, ``certs/conformance/``. That
  certificate is issued by the gateway CA, and its CN ends in ``-CONFORMANCE`` so that an
  inbox can tell a probe from traffic. It is never the gateway's signing key.

Each probe's document says CONFORMANCE TEST PROBE in its goods description: no member state
can mistake it for trade data.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ssl
import statistics
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from broker import clock, pki, xmlsafe
from broker.audit import AuditEvent
from broker.compose import Addressing, compose_envelope
from broker.conformance.criteria import Evaluation, Result, result
from broker.delivery.retry import parse_retry_after
from broker.envelope import DS, INT, SOAP, WSSE, WSU_ID, parse_envelope
from broker.errors import ConfigError, GatewayError
from broker.gost_pki import signing_identity
from broker.routing.table import Participant, RoutingTable
from broker.schemas import Catalog
from broker.signing import algorithms, xmldsig
from broker.signing.sign import countersign, sign_envelope
from broker.signing.trust import ChainError, GatewayIdentity, TrustStore, chain_to, fingerprint
from broker.signing.verify import verify_sender
from broker.validation import check_document

PROBE_TEXT = "CONFORMANCE TEST PROBE"
ACTION = "int://CP/P.CC.01/1.0.0/P.CC.01.PRC.001/P.CC.01.TRN.001/P.CC.01.MSG.001"


@dataclass
class Answer:
    status: int | None
    """None when no HTTP answer came (TLS refused, connection reset, timeout)."""
    seconds: float
    error: str | None = None
    retry_after: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def describe(self) -> str:
        if self.status is None:
            return f"no answer ({self.error})"
        return f"HTTP {self.status} in {self.seconds:.2f} s"


def load_conformance_identity(certs: Path) -> GatewayIdentity:
    folder = certs / "conformance"
    try:
        key = algorithms.standard_private(
            serialization.load_pem_private_key((folder / "key.pem").read_bytes(), None)
        )
        certificate = x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes())
        ca = tuple(x509.load_pem_x509_certificates((certs / "gateway" / "ca.pem").read_bytes()))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{folder}: no conformance identity ({exc}); `broker certs demo` creates one, or "
            "have the gateway CA issue one whose CN ends in -CONFORMANCE"
        ) from exc
    cn = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if not cn or not str(cn[0].value).endswith("-CONFORMANCE"):
        raise ConfigError(f"{folder / 'cert.pem'}: its CN must end in -CONFORMANCE")
    return GatewayIdentity(
        key, certificate, certificate.public_bytes(serialization.Encoding.DER), ca
    )


def default_sender(table: RoutingTable, target: Participant, certs: Path) -> str:
    """A development participant of another member state, to sign the probes."""
    for participant in sorted(table.participants.values(), key=lambda p: p.id):
        if (
            participant.country != target.country
            and (certs / "participants" / participant.id / "key.pem").is_file()
        ):
            return participant.id
    raise ConfigError(
        f"no participant of another country than {target.country} has a development identity "
        f"in {certs / 'participants'}; give --sender-key and --sender-cert"
    )


@dataclass
class Prober:
    table: RoutingTable
    target: Participant
    url: str
    certs: Path
    catalog: Catalog
    sender_id: str
    sender_key: algorithms.PrivateKey
    sender_cert: x509.Certificate
    identity: GatewayIdentity
    timeout: float = 40.0

    # -- building probes ------------------------------------------------------------------------
    def _envelope(self) -> bytes:
        document = (resources.files("broker.conformance") / "probe.xml").read_bytes()
        sender = self.table.participants[self.sender_id]
        return compose_envelope(
            document,
            Addressing(
                to=f"EAEU://{self.target.country}/CP/P.CC.01/P.CC.01.ACT.002",
                reply_to=f"EAEU://{sender.country}/CP/P.CC.01/P.CC.01.ACT.001",
                action=ACTION,
            ),
        )

    def forwarded(
        self,
        key: algorithms.PrivateKey | None = None,
        cert: x509.Certificate | None = None,
        trust: TrustStore | None = None,
    ) -> bytes:
        """A probe as the gateway would forward it: signed by the sender, checked by the
        gateway's own pipeline, countersigned by the conformance identity."""
        key, cert = key or self.sender_key, cert or self.sender_cert
        envelope = parse_envelope(xmlsafe.parse(self._envelope()))
        signed = sign_envelope(envelope, key, cert.public_bytes(serialization.Encoding.DER))
        now = clock.now()
        verified = verify_sender(
            check_document(signed, self.catalog),
            trust or TrustStore.load(self.certs),
            self.table.participants,
            at=now,
        )
        return countersign(
            verified, self.identity, f"urn:uuid:{uuid.uuid4()}", clock.format_time(now)
        )

    def untrusted(self) -> bytes:
        """Signed by a sender whose CA no member state trusts (made now, thrown away)."""
        sender = self.table.participants[self.sender_id]
        ca = pki.make_ca("Untrusted conformance test CA", sender.country)
        leaf = pki.make_leaf(ca, self.sender_id, sender.country)
        trust = TrustStore({sender.country: (ca.certificate,)})
        return self.forwarded(leaf.key, leaf.certificate, trust)

    def without_integration(self) -> bytes:
        """A valid probe whose int:Integration is removed and whose countersignature is made
        again over what is left: only the missing stamp is wrong."""
        root = xmlsafe.parse(self.forwarded())
        header = root.find(f"{{{SOAP}}}Header")
        security = root.find(f"{{{SOAP}}}Header/{{{WSSE}}}Security")
        assert header is not None
        assert security is not None
        integration = header.find(f"{{{INT}}}Integration")
        assert integration is not None
        header.remove(integration)
        signatures = security.findall(f"{{{DS}}}Signature")
        security.remove(signatures[1])
        body = root.find(f"{{{SOAP}}}Body")
        assert body is not None
        parts = [body, *(b for b in header if b is not security), signatures[0]]
        references = [
            (f"#{p.get(WSU_ID) or p.get('Id')}", p) for p in parts if p.get(WSU_ID) or p.get("Id")
        ]
        xmldsig.sign(
            security,
            references,
            self.identity.key,
            self.identity.certificate_der,
            signature_id=f"gw-sig-{uuid.uuid4()}",
        )
        data: bytes = etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")
        return data

    # -- meeting the inbox ------------------------------------------------------------------------
    def _context(self, client_certificate: bool) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # The server's identity is judged by its own criterion; the others are scored anyway.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if client_certificate:
            tls = self.certs / "tls"
            context.load_cert_chain(tls / "cert.pem", tls / "key.pem")
        return context

    async def post(self, body: bytes, *, client_certificate: bool = True) -> Answer:
        began = time.monotonic()
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session,
                session.post(
                    self.url,
                    data=body,
                    ssl=self._context(client_certificate),
                    headers={"Content-Type": "application/soap+xml"},
                ) as response,
            ):
                await response.read()
                return Answer(
                    response.status,
                    time.monotonic() - began,
                    retry_after=response.headers.get("Retry-After"),
                )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return Answer(None, time.monotonic() - began, error=type(exc).__name__)

    async def server_certificate(self) -> x509.Certificate | None:
        parts = urlsplit(self.url)
        try:
            async with asyncio.timeout(self.timeout):
                _, writer = await asyncio.open_connection(
                    parts.hostname, parts.port or 443, ssl=self._context(True)
                )
        except (OSError, TimeoutError, ssl.SSLError):
            return None
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        writer.close()
        return x509.load_der_x509_certificate(der) if der else None


def audit_events(report: Evaluation, by: str) -> list[AuditEvent]:
    """One audit event per probe's criterion, for the gateway's chain (SPEC §10)."""
    return [
        AuditEvent(
            "conformance_probe",
            detail={
                "participant": report.participant,
                "url": report.tested.get("url"),
                "criterion": r.criterion.id,
                "verdict": r.verdict,
                "reason": r.reason,
                "by": by,
            },
        )
        for r in report.results
    ]


def _accepted(criterion: str, answer: Answer) -> Result:
    if answer.accepted:
        return result(criterion, "PASS", answer.describe())
    return result(criterion, "FAIL", f"not accepted: {answer.describe()}")


def _refused(criterion: str, answer: Answer) -> Result:
    if answer.accepted:
        return result(criterion, "FAIL", f"accepted ({answer.describe()}): it must be refused")
    return result(criterion, "PASS", f"refused: {answer.describe()}")


def _retry_after_ok(value: str) -> bool:
    """Seconds or an HTTP-date, as SPEC §7 reads it (the delivery worker's own parser)."""
    return parse_retry_after(value, time.time()) is not None


def _server_identity(
    prober: Prober, certificate: x509.Certificate | None, trust: TrustStore
) -> Result:
    if certificate is None:
        return result("tls-server-identity", "FAIL", "no TLS server certificate was presented")
    cas = trust.cas.get(prober.target.country, ())
    try:
        chain_to(certificate, (), cas, dt.datetime.now(dt.UTC))
    except ChainError as exc:
        return result(
            "tls-server-identity",
            "FAIL",
            f"the server certificate does not chain to a CA of {prober.target.country}: {exc}",
        )
    cn = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    named = (
        (fingerprint(certificate) in prober.target.pins)
        if prober.target.pins
        else bool(cn and cn[0].value == prober.target.id)
    )
    if not named:
        return result(
            "tls-server-identity",
            "FAIL",
            f"the server certificate names {str(cn[0].value) if cn else 'no CN'}, not "
            f"{prober.target.id}",
        )
    return result("tls-server-identity", "PASS", f"chains to {prober.target.country}'s CA")


async def evaluate(prober: Prober) -> Evaluation:
    """Run the probes in order and score each criterion."""
    trust = TrustStore.load(prober.certs)
    certificate = await prober.server_certificate()
    tested = {
        "url": prober.url,
        "endpoint": prober.target.endpoint,
        "equalsEndpoint": "true" if prober.url == prober.target.endpoint else "false",
    }
    if certificate is not None:
        der = certificate.public_bytes(serialization.Encoding.DER)
        tested["serverCertificateSha256"] = hashlib.sha256(der).hexdigest()
    report = Evaluation("inbox", prober.target.id, tested)
    report.results.append(_server_identity(prober, certificate, trust))
    valid = prober.forwarded()
    answers: list[Answer] = []

    without_cert = await prober.post(valid, client_certificate=False)
    report.results.append(_refused("client-certificate-required", without_cert))

    for criterion in ("valid-delivery-accepted", "redelivery-accepted"):  # the same bytes twice
        answer = await prober.post(valid)
        answers.append(answer)
        report.results.append(_accepted(criterion, answer))
    fresh = prober.forwarded().decode()
    tampered = fresh.replace(PROBE_TEXT, PROBE_TEXT.replace("PROBE", "PR0BE"), 1).encode()
    report.results.append(_refused("tampered-body-refused", await prober.post(tampered)))
    report.results.append(
        _refused(
            "broken-countersignature-refused", await prober.post(_broken_countersignature(prober))
        )
    )
    report.results.append(
        _refused("untrusted-sender-refused", await prober.post(prober.untrusted()))
    )
    report.results.append(
        _refused("missing-integration-refused", await prober.post(prober.without_integration()))
    )
    report.results.append(_refused("malformed-refused", await prober.post(b"<not a message")))
    report.results.append(_answer_time(answers))
    return report


def _broken_countersignature(prober: Prober) -> bytes:
    root = xmlsafe.parse(prober.forwarded())
    values = list(root.iter(f"{{{DS}}}SignatureValue"))
    value = values[1]
    assert value.text
    value.text = ("A" if value.text[0] != "A" else "B") + value.text[1:]
    data: bytes = etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")
    return data


def _answer_time(answers: list[Answer]) -> Result:
    timed = [a.seconds for a in answers if a.status is not None]
    bad = [a.retry_after for a in answers if a.retry_after and not _retry_after_ok(a.retry_after)]
    if bad:
        return result("answer-time", "FAIL", f"malformed Retry-After {bad[0]!r}")
    if not timed:
        return result("answer-time", "INFO", "no answer to a valid delivery was timed")
    p50, worst = statistics.median(timed), max(timed)
    text = f"p50 {p50:.2f} s, max {worst:.2f} s over {len(timed)} valid deliveries"
    if p50 >= 30:
        return result("answer-time", "FAIL", text)
    return result("answer-time", "INFO" if p50 >= 10 else "PASS", text)


def prober_for(
    table: RoutingTable,
    participant: str,
    url: str,
    certs: Path,
    xsd: Path,
    *,
    sender_key: Path | None,
    sender_cert: Path | None,
    timeout: float,
) -> Prober:
    target = table.participants.get(participant)
    if target is None:
        raise ConfigError(f"{participant}: not a participant of the routing table")
    if (sender_key is None) != (sender_cert is None):
        raise ConfigError("--sender-key and --sender-cert go together")
    if sender_key is None or sender_cert is None:
        sender_id = default_sender(table, target, certs)
        sender_key, sender_cert = signing_identity(certs / "participants" / sender_id)
    try:
        key = algorithms.load_private_pem(sender_key.read_bytes())
        cert = x509.load_pem_x509_certificate(sender_cert.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{sender_key} / {sender_cert}: {exc}") from exc
    named = TrustStore.named(cert, table.participants)
    if not named:
        raise ConfigError(f"{sender_cert}: the certificate names no participant of the table")
    try:
        catalog = Catalog.load(xsd)
    except GatewayError as exc:
        raise ConfigError(str(exc)) from exc
    return Prober(
        table,
        target,
        url,
        certs,
        catalog,
        named[0].id,
        key,
        cert,
        load_conformance_identity(certs),
        timeout,
    )
