"""Receipts: the SPEC §4 document per kind, checked at IssuedAt, and `broker verify`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from lxml import etree

from broker import clock, pki, xmlsafe
from broker.errors import CertificateUntrusted, SignatureInvalid
from broker.receipts import RCPT, Receipt, build_receipt, sha256_b64, verify_receipt
from broker.signing.trust import GatewayIdentity
from tests.pki_support import Pki
from tests.test_cli_validate import broker

DIGEST = sha256_b64(b"<soap:Envelope/>")


def _names(data: bytes) -> list[str]:
    return [etree.QName(e).localname for e in xmlsafe.parse(data)]


def test_accepted_receipt_has_the_spec_elements_in_order(test_pki: Pki) -> None:
    """Accepted: route, one Destination per destination, no Attempts, signature last."""
    data = build_receipt(
        Receipt(
            kind="Accepted",
            gateway="EEC-GW",
            message_digest=DIGEST,
            message_id="urn:uuid:m",
            track_id="urn:uuid:t",
            sender="KZ-SW",
            route="r1",
            table_digest="a" * 64,
            destinations=("RU-SW", "BY-SW"),
        ),
        test_pki.gateway(),
    )
    assert _names(data) == [
        "ReceiptID",
        "Kind",
        "IssuedAt",
        "Gateway",
        "MessageID",
        "TrackID",
        "Sender",
        "MessageDigest",
        "Route",
        "Destination",
        "Destination",
        "Signature",
    ]
    root = xmlsafe.parse(data)
    assert root.find(f"{{{RCPT}}}Route").attrib == {"name": "r1", "table": "a" * 64}
    assert (
        root.find(f"{{{RCPT}}}MessageDigest").get("Algorithm")
        == "http://www.w3.org/2001/04/xmlenc#sha256"
    )


def test_rejected_receipt_has_errors_and_no_track_or_route(test_pki: Pki) -> None:
    """Rejected: no TrackID, no Route, one Error per problem with its code."""
    data = build_receipt(
        Receipt(
            kind="Rejected",
            gateway="EEC-GW",
            message_digest=DIGEST,
            message_id="urn:uuid:m",
            sender="KZ-SW",
            errors=(("SCHEMA_INVALID", "line 3: a"), ("SCHEMA_INVALID", "line 9: b")),
        ),
        test_pki.gateway(),
    )
    assert _names(data) == [
        "ReceiptID",
        "Kind",
        "IssuedAt",
        "Gateway",
        "MessageID",
        "Sender",
        "MessageDigest",
        "Error",
        "Error",
        "Signature",
    ]
    checked = verify_receipt(data, test_pki.gateway().ca)
    assert checked.receipt.errors[1] == ("SCHEMA_INVALID", "line 9: b")


def test_delivered_receipt_has_attempts_and_acknowledgement(test_pki: Pki) -> None:
    """Delivered: one Destination, Attempts, AcknowledgementDigest."""
    data = build_receipt(
        Receipt(
            kind="Delivered",
            gateway="EEC-GW",
            message_digest=DIGEST,
            message_id="urn:uuid:m",
            track_id="urn:uuid:t",
            sender="KZ-SW",
            route="r1",
            table_digest="a" * 64,
            destinations=("RU-SW",),
            attempts=3,
            acknowledgement_digest=sha256_b64(b"ok"),
        ),
        test_pki.gateway(),
    )
    assert _names(data)[-4:] == ["Destination", "Attempts", "AcknowledgementDigest", "Signature"]
    assert verify_receipt(data, test_pki.gateway().ca).receipt.attempts == 3


def test_issued_at_is_utc_with_milliseconds(test_pki: Pki) -> None:
    """Every time the gateway writes is YYYY-MM-DDThh:mm:ss.sssZ."""
    data = build_receipt(
        Receipt(kind="Accepted", gateway="G", message_digest=DIGEST), test_pki.gateway()
    )
    issued = xmlsafe.parse(data).findtext(f"{{{RCPT}}}IssuedAt")
    assert issued is not None
    assert len(issued) == 24
    assert issued.endswith("Z")
    assert issued[19] == "."


def test_receipt_stays_valid_after_the_gateway_certificate_expired(tmp_path: Path) -> None:
    """Checked at IssuedAt: a receipt issued while the certificate was valid still verifies."""
    start = clock.now() - dt.timedelta(days=400)
    ca = pki.make_ca("Gateway CA", None, now=start - dt.timedelta(days=1))
    leaf = pki.make_leaf(ca, "EEC-GW signing", None, not_before=start, days=30)
    from cryptography.hazmat.primitives import serialization

    gateway = GatewayIdentity(
        leaf.key,
        leaf.certificate,
        leaf.certificate.public_bytes(serialization.Encoding.DER),
        (ca.certificate,),
    )
    then = clock.format_time(start + dt.timedelta(days=10))
    old = build_receipt(
        Receipt(kind="Delivered", gateway="G", message_digest=DIGEST, issued_at=then), gateway
    )
    assert verify_receipt(old, [ca.certificate]).receipt.issued_at == then
    recent = build_receipt(Receipt(kind="Delivered", gateway="G", message_digest=DIGEST), gateway)
    with pytest.raises(CertificateUntrusted):
        verify_receipt(recent, [ca.certificate])


def test_a_second_signature_or_a_moved_one_is_refused(test_pki: Pki) -> None:
    """A receipt holds exactly one signature, as its last child."""
    data = build_receipt(
        Receipt(kind="Accepted", gateway="G", message_digest=DIGEST), test_pki.gateway()
    )
    root = xmlsafe.parse(data)
    signature = root[-1]
    root.insert(0, signature)
    with pytest.raises(SignatureInvalid, match="last child"):
        verify_receipt(etree.tostring(root), test_pki.gateway().ca)


def _write_receipt(test_pki: Pki, tmp_path: Path, message: bytes) -> Path:
    data = build_receipt(
        Receipt(
            kind="Delivered",
            gateway="EEC-GW",
            message_digest=sha256_b64(message),
            message_id="urn:uuid:m",
            track_id="urn:uuid:t",
            sender="KZ-SW",
            route="r1",
            table_digest="a" * 64,
            destinations=("RU-SW",),
            attempts=1,
        ),
        test_pki.gateway(),
    )
    path = tmp_path / "receipt.xml"
    path.write_bytes(data)
    return path


def test_broker_verify_prints_what_the_receipt_attests(test_pki: Pki, tmp_path: Path) -> None:
    """`broker verify RECEIPT --message FILE` exits 0 and names kind, message, route, digest."""
    message = tmp_path / "message.xml"
    message.write_bytes(b"<soap:Envelope/>")
    receipt = _write_receipt(test_pki, tmp_path, message.read_bytes())
    result = broker(
        "verify", str(receipt), "--certs", str(test_pki.folder), "--message", str(message)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for expected in (
        "kind          Delivered",
        "destination   RU-SW",
        "attempts      1",
        "route         r1 (table sha256 " + "a" * 64 + ")",
        f"message       {message} matches the digest",
    ):
        assert expected in result.stdout


def test_broker_verify_exits_1_for_another_message_or_a_tampered_receipt(
    test_pki: Pki, tmp_path: Path
) -> None:
    """A receipt for another message, or an edited one, is a negative verdict (exit 1)."""
    receipt = _write_receipt(test_pki, tmp_path, b"<soap:Envelope/>")
    other = tmp_path / "other.xml"
    other.write_bytes(b"<soap:Envelope></soap:Envelope>")
    result = broker(
        "verify",
        str(receipt),
        "--trust",
        str(test_pki.folder / "gateway" / "ca.pem"),
        "--message",
        str(other),
    )
    assert result.returncode == 1
    assert "digest differs" in result.stdout
    receipt.write_bytes(receipt.read_bytes().replace(b"RU-SW", b"BY-SW"))
    result = broker("verify", str(receipt), "--certs", str(test_pki.folder))
    assert result.returncode == 1
    assert "NOT VALID: SIGNATURE_INVALID" in result.stdout


def test_broker_verify_with_another_ca_is_untrusted(test_pki: Pki, tmp_path: Path) -> None:
    """Trusting a CA that did not issue the gateway certificate fails the check."""
    receipt = _write_receipt(test_pki, tmp_path, b"x")
    result = broker(
        "verify", str(receipt), "--trust", str(test_pki.folder / "trust" / "KZ" / "ca.pem")
    )
    assert result.returncode == 1
    assert "CERTIFICATE_UNTRUSTED" in result.stdout
