"""Signed receipts (SPEC §4): build, sign, and check them years later with only a CA certificate.

A receipt is a standalone document in ``urn:eaeu:gateway:receipt:v1`` with an enveloped
ds:Signature (``URI=""``, enveloped-signature + exc-c14n, the gateway certificate in KeyInfo).
:func:`verify_receipt` checks the signature, then the signing certificate's chain to the given CA
**at the receipt's IssuedAt** — not today — so a receipt stays checkable after the gateway's
certificate has expired, as long as it was valid when the receipt was issued.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from cryptography import x509
from cryptography.x509 import verification
from lxml import etree

from broker import clock, xmlsafe
from broker.errors import CertificateUntrusted, GatewayError, SignatureInvalid
from broker.signing import xmldsig
from broker.signing.trust import GatewayIdentity, verified_chain

RCPT = "urn:eaeu:gateway:receipt:v1"
SHA256_URI = "http://www.w3.org/2001/04/xmlenc#sha256"
Kind = Literal["Accepted", "Rejected", "Delivered", "Failed"]
KINDS: tuple[Kind, ...] = ("Accepted", "Rejected", "Delivered", "Failed")


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


@dataclass(frozen=True)
class Receipt:
    """What a receipt attests, in the element order of SPEC §4."""

    kind: Kind
    gateway: str
    message_digest: str
    """Base64 SHA-256 of the exact request body."""
    receipt_id: str = field(default_factory=lambda: f"urn:uuid:{uuid.uuid4()}")
    issued_at: str = field(default_factory=lambda: clock.format_time(clock.now()))
    message_id: str | None = None
    track_id: str | None = None
    sender: str | None = None
    route: str | None = None
    table_digest: str | None = None
    destinations: tuple[str, ...] = ()
    attempts: int | None = None
    acknowledgement_digest: str | None = None
    errors: tuple[tuple[str, str], ...] = ()
    """(SPEC §8 code, what and where) pairs; on Rejected and Failed."""
    coverage: str | None = None
    """``body`` on the Accepted receipt of a sender whose signature covers only the Body."""


def _element(
    parent: etree._Element, tag: str, text: str | None = None, **attributes: str
) -> etree._Element:
    child = etree.SubElement(parent, f"{{{RCPT}}}{tag}", **attributes)
    if text is not None:
        child.text = text
    return child


def build_receipt(receipt: Receipt, gateway: GatewayIdentity) -> bytes:
    """The signed receipt document, UTF-8 bytes."""
    root = etree.Element(f"{{{RCPT}}}Receipt", nsmap={"rcpt": RCPT})
    _element(root, "ReceiptID", receipt.receipt_id)
    _element(root, "Kind", receipt.kind)
    _element(root, "IssuedAt", receipt.issued_at)
    _element(root, "Gateway", receipt.gateway)
    if receipt.message_id is not None:
        _element(root, "MessageID", receipt.message_id)
    if receipt.track_id is not None:
        _element(root, "TrackID", receipt.track_id)
    if receipt.sender is not None:
        _element(root, "Sender", receipt.sender)
    _element(root, "MessageDigest", receipt.message_digest, Algorithm=SHA256_URI)
    if receipt.route is not None and receipt.table_digest is not None:
        _element(root, "Route", name=receipt.route, table=receipt.table_digest)
    for destination in receipt.destinations:
        _element(root, "Destination", destination)
    if receipt.attempts is not None:
        _element(root, "Attempts", str(receipt.attempts))
    if receipt.acknowledgement_digest is not None:
        _element(
            root, "AcknowledgementDigest", receipt.acknowledgement_digest, Algorithm=SHA256_URI
        )
    for code, text in receipt.errors:
        _element(root, "Error", text, code=code)
    if receipt.coverage is not None:
        _element(root, "Coverage", receipt.coverage)
    xmldsig.sign(root, [("", root)], gateway.key, gateway.certificate_der, enveloped=True)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")  # type: ignore[no-any-return]


@dataclass(frozen=True)
class CheckedReceipt:
    receipt: Receipt
    signer: x509.Certificate


def _text(root: etree._Element, name: str) -> str | None:
    found = root.find(f"{{{RCPT}}}{name}")
    return None if found is None else xmlsafe.text_value(found)


def _read(root: etree._Element) -> Receipt:
    def need(name: str) -> str:
        value = _text(root, name)
        if value is None:
            raise SignatureInvalid(f"receipt has no rcpt:{name}")
        return value

    kind = need("Kind")
    if kind not in KINDS:
        raise SignatureInvalid(f"receipt kind {kind!r} is not one of {', '.join(KINDS)}")
    route = root.find(f"{{{RCPT}}}Route")
    attempts = _text(root, "Attempts")
    return Receipt(
        kind=kind,
        gateway=need("Gateway"),
        message_digest=need("MessageDigest"),
        receipt_id=need("ReceiptID"),
        issued_at=need("IssuedAt"),
        message_id=_text(root, "MessageID"),
        track_id=_text(root, "TrackID"),
        sender=_text(root, "Sender"),
        route=route.get("name") if route is not None else None,
        table_digest=route.get("table") if route is not None else None,
        destinations=tuple(xmlsafe.text_value(d) for d in root.findall(f"{{{RCPT}}}Destination")),
        attempts=int(attempts) if attempts and attempts.isdigit() else None,
        acknowledgement_digest=_text(root, "AcknowledgementDigest"),
        errors=tuple(
            (e.get("code") or "", xmlsafe.text_value(e)) for e in root.findall(f"{{{RCPT}}}Error")
        ),
        coverage=_text(root, "Coverage"),
    )


def read_receipt(data: bytes) -> Receipt:
    """What a receipt says, unverified (use :func:`verify_receipt` to trust it)."""
    return _read(xmlsafe.parse(data))


def verify_receipt(data: bytes, trusted: Sequence[x509.Certificate]) -> CheckedReceipt:
    """Check a receipt's signature and its signer's chain to ``trusted`` at IssuedAt.

    Raises SIGNATURE_INVALID (signature, structure) or CERTIFICATE_UNTRUSTED (chain)."""
    root = xmlsafe.parse(data)
    if root.tag != f"{{{RCPT}}}Receipt":
        raise SignatureInvalid(f"not a receipt: root element {root.tag}")
    signatures = [c for c in root if c.tag == f"{{{xmldsig.DS}}}Signature"]
    if len(signatures) != 1 or root[len(root) - 1] is not signatures[0]:
        raise SignatureInvalid("a receipt holds exactly one ds:Signature, as its last child")
    xmldsig.id_index(root)  # duplicate Ids are refused even though the reference is URI=""
    checked = xmldsig.verify(signatures[0], {}, enveloped=True)
    receipt = _read(root)
    try:
        issued = clock.parse_time(receipt.issued_at)
    except ValueError as exc:
        raise SignatureInvalid(f"IssuedAt {receipt.issued_at!r} is not a UTC time") from exc
    try:
        verified_chain(
            checked.certificate, checked.chain, verification.Store(list(trusted)), issued
        )
    except verification.VerificationError as exc:
        raise CertificateUntrusted(
            f"the receipt's signing certificate does not chain to the trusted CA at "
            f"{receipt.issued_at}: {exc}"
        ) from exc
    return CheckedReceipt(receipt, checked.certificate)


def check_message_digest(receipt: Receipt, message: bytes) -> bool:
    return receipt.message_digest == sha256_b64(message)


def describe(receipt: Receipt) -> list[str]:
    """What a receipt attests, one line each, for `broker verify`."""
    lines = [
        f"kind          {receipt.kind}",
        f"receipt       {receipt.receipt_id}",
        f"issued at     {receipt.issued_at}",
        f"gateway       {receipt.gateway}",
        f"message       {receipt.message_id or '(unreadable)'}",
    ]
    if receipt.track_id:
        lines.append(f"track         {receipt.track_id}")
    if receipt.sender:
        lines.append(f"sender        {receipt.sender}")
    lines.append(f"digest        sha256 {receipt.message_digest}")
    if receipt.route:
        lines.append(f"route         {receipt.route} (table sha256 {receipt.table_digest})")
    lines.extend(f"destination   {d}" for d in receipt.destinations)
    if receipt.attempts is not None:
        lines.append(f"attempts      {receipt.attempts}")
    if receipt.acknowledgement_digest:
        lines.append(f"ack digest    sha256 {receipt.acknowledgement_digest}")
    lines.extend(f"error         {code}: {text}" for code, text in receipt.errors)
    if receipt.coverage:
        lines.append(f"coverage      {receipt.coverage} (headers vouched for by TLS identity)")
    return lines


def refusal_errors(error: GatewayError) -> tuple[tuple[str, str], ...]:
    """The Error elements of a Rejected receipt: one per detail of the refusal."""
    return tuple((error.code, detail) for detail in error.details)
