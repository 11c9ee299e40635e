"""What real member-state software sends, end to end over mutual TLS (SPEC v1.1 §1–§3):
zeep-signed messages in each KeyInfo shape, a body-only national signer, a certificate named
by IssuerSerial and resolved in certs/known, an upstream int:Integration, and signals flowing
back. Each forwarded envelope is verified at the destination (both signatures) and the
gateway's countersignature by xmlsec1."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from lxml import etree

from broker import pki, xmlsafe
from broker.envelope import INT
from broker.receipts import verify_receipt
from broker.signing import keyinfo
from tests import wss_signers
from tests.conftest import DATA
from tests.e2e.conftest import ROUTING, Exchange, open_exchange, wait_for
from tests.pki_support import XMLSEC_ID_ATTRS, Pki, run_xmlsec, sign_as

pytestmark = pytest.mark.xmlsec

# Kazakhstan's national signer signs the Body only (EEC-NOTES): mark it so.
BODY_ONLY_KZ = ROUTING.replace(
    "    receipts: {KZ-SW-receipts}\n", "    receipts: {KZ-SW-receipts}\n    signature: body\n", 1
)
CONFORMITY = "valid-conformity-kz-to-ru.xml"
PROCESSING_RESULT = "valid-processing-result-ru-to-kz.xml"


@pytest.fixture
async def body_only_kz(test_pki: Pki, tmp_path: Path) -> AsyncIterator[Exchange]:
    async with open_exchange(test_pki, tmp_path, BODY_ONLY_KZ) as opened:
        yield opened


def _pem(exchange: Exchange, name: str) -> tuple[bytes, bytes]:
    issued = exchange.pki.identities[name]
    return pki.key_pem(issued.key), pki.cert_pem(issued.certificate)


def _gateway_signature_verifies(
    exchange: Exchange, xmlsec1: str, forwarded: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "forwarded.xml"
    path.write_bytes(forwarded)
    root = xmlsafe.parse(forwarded)
    node_id = [s.get("Id") for s in root.iter("{http://www.w3.org/2000/09/xmldsig#}Signature")][1]
    result = run_xmlsec(
        xmlsec1,
        "--verify",
        "--trusted-pem",
        str(exchange.pki.folder / "gateway" / "ca.pem"),
        *XMLSEC_ID_ATTRS,
        "--node-id",
        str(node_id),
        str(path),
    )
    assert result.returncode == 0, result.stderr


async def _deliver_and_check(
    exchange: Exchange,
    sender: str,
    data: bytes,
    destination: str,
    xmlsec1: str,
    tmp_path: Path,
) -> tuple[dict[str, object], bytes]:
    status, body = await exchange.post(sender, data)
    assert status == 202, body
    receipt = vars(verify_receipt(body, exchange.pki.gateway().ca).receipt)
    window = exchange.windows[destination]
    await wait_for(lambda: len(window.inbox) >= 1)
    forwarded = window.inbox[-1]
    assert forwarded.sender_verified, forwarded.problem
    assert forwarded.gateway_verified, forwarded.problem
    _gateway_signature_verifies(exchange, xmlsec1, forwarded.body, tmp_path)
    return receipt, forwarded.body


async def test_zeep_binary_signature_of_a_body_only_sender(
    body_only_kz: Exchange, xmlsec1: str, tmp_path: Path
) -> None:
    """zeep's BinarySignature out of the box (Body + Timestamp) from a `signature: body`
    participant: accepted with rcpt:Coverage body, forwarded with every header countersigned."""
    data = wss_signers.zeep_sign(
        (DATA / CONFORMITY).read_bytes(), *_pem(body_only_kz, "KZ-SW"), binary=True, headers=False
    )
    receipt, forwarded = await _deliver_and_check(
        body_only_kz, "KZ-SW", data, "RU-SW", xmlsec1, tmp_path
    )
    assert receipt["coverage"] == "body"
    root = xmlsafe.parse(forwarded)
    gateway = root.findall(".//{http://www.w3.org/2000/09/xmldsig#}Signature")[1]
    uris = [r.get("URI") for r in gateway.iter("{http://www.w3.org/2000/09/xmldsig#}Reference")]
    # Body, the six headers the sender left unsigned, our Integration, the Timestamp, the token
    # and the sender's signature.
    assert len(uris) == 11
    audit = body_only_kz.folder / "broker.sqlite3"
    details = [
        json.loads(row[0])
        for row in sqlite3.connect(audit).execute(
            "SELECT detail FROM audit_log WHERE event = 'accepted'"
        )
    ]
    assert details[0]["coverage"] == "body"


@pytest.mark.parametrize("binary", [True, False], ids=["BinarySignature", "Signature"])
async def test_zeep_with_headers_from_a_full_participant(
    exchange: Exchange, xmlsec1: str, tmp_path: Path, binary: bool
) -> None:
    """zeep's two shapes, with the WS-A headers referenced too, from a `full` participant."""
    data = wss_signers.zeep_sign(
        (DATA / PROCESSING_RESULT).read_bytes(), *_pem(exchange, "RU-SW"), binary=binary
    )
    receipt, forwarded = await _deliver_and_check(
        exchange, "RU-SW", data, "KZ-SW", xmlsec1, tmp_path
    )
    assert receipt["coverage"] is None
    signature = xmlsafe.parse(forwarded).find(".//{http://www.w3.org/2000/09/xmldsig#}Signature")
    assert signature is not None
    assert (signature.get("Id") or "").startswith("sig-")  # zeep wrote none; the gateway named it


async def test_key_identifier_as_kazakhstan_writes_it(
    exchange: Exchange, xmlsec1: str, tmp_path: Path
) -> None:
    """WSS4J's X509_KEY_IDENTIFIER (the whole certificate in a KeyIdentifier)."""
    data = wss_signers.xmlsec_sign(
        (DATA / CONFORMITY).read_bytes(),
        *_pem(exchange, "KZ-SW"),
        wss_signers.key_identifier_x509,
    )
    await _deliver_and_check(exchange, "KZ-SW", data, "RU-SW", xmlsec1, tmp_path)


@pytest.fixture
async def with_known(test_pki: Pki, tmp_path: Path) -> AsyncIterator[Exchange]:
    """A gateway whose certs/known/ holds KZ-SW's signing certificate."""
    folder = tmp_path / "certs"
    shutil.copytree(test_pki.folder, folder)
    (folder / "known").mkdir()
    (folder / "known" / "kz-sw.pem").write_bytes(
        pki.cert_pem(test_pki.identities["KZ-SW"].certificate)
    )
    async with open_exchange(dataclasses.replace(test_pki, folder=folder), tmp_path) as opened:
        yield opened


async def test_issuer_serial_resolved_in_certs_known_is_forwarded_with_a_token(
    with_known: Exchange, xmlsec1: str, tmp_path: Path
) -> None:
    """WSS4J's default IssuerSerial: resolved in certs/known, and the forwarded envelope
    carries the certificate as a BinarySecurityToken so destinations can verify (SPEC §3)."""
    data = wss_signers.xmlsec_sign(
        (DATA / CONFORMITY).read_bytes(), *_pem(with_known, "KZ-SW"), wss_signers.issuer_serial
    )
    _, forwarded = await _deliver_and_check(with_known, "KZ-SW", data, "RU-SW", xmlsec1, tmp_path)
    tokens = list(xmlsafe.parse(forwarded).iter(keyinfo.BST))
    assert len(tokens) == 1


async def test_issuer_serial_not_in_certs_known_is_refused(exchange: Exchange) -> None:
    """Not found in certs/known: 422 SIGNATURE_INVALID saying how to fix it."""
    data = wss_signers.xmlsec_sign(
        (DATA / CONFORMITY).read_bytes(), *_pem(exchange, "KZ-SW"), wss_signers.issuer_serial
    )
    status, body = await exchange.post("KZ-SW", data)
    assert status == 422
    receipt = verify_receipt(body, exchange.pki.gateway().ca).receipt
    assert receipt.errors[0][0] == "SIGNATURE_INVALID"
    assert "certs/known/" in receipt.errors[0][1]


async def test_upstream_integration_is_kept_and_replaced(
    exchange: Exchange, xmlsec1: str, tmp_path: Path
) -> None:
    """An upstream stamp: its TrackID in the status JSON, and exactly one int:Integration — the
    gateway's — in what is forwarded."""
    data = sign_as(exchange.pki, "KZ-SW", "valid-upstream-integration-kz-to-ru.xml")
    receipt, forwarded = await _deliver_and_check(
        exchange, "KZ-SW", data, "RU-SW", xmlsec1, tmp_path
    )
    stamps = list(xmlsafe.parse(forwarded).iter(f"{{{INT}}}Integration"))
    assert len(stamps) == 1
    assert etree.QName(stamps[0][0]).localname == "TrackID"
    assert stamps[0][0].text == receipt["track_id"]
    message_id = str(receipt["message_id"]).removeprefix("urn:uuid:")
    status, body, _ = await exchange.request("KZ-SW", "GET", f"/v1/messages/{message_id}")
    assert status == 200
    assert json.loads(body)["upstream_track_id"] == "NSW-KZ:2020-000123"


async def test_suffixed_participant_code_is_accepted(exchange: Exchange) -> None:
    """A participant code with a suffix (P.TS.01.ACT.002AT) is a valid address."""
    status, body = await exchange.post(
        "KZ-SW", sign_as(exchange.pki, "KZ-SW", "valid-suffixed-participant-code-kz-to-ru.xml")
    )
    assert status == 202, body


async def test_signal_flows_back_to_the_sender(exchange: Exchange) -> None:
    """RU's window answers a delivered message with P.MSG.PRS; the gateway checks it against
    the stored message and delivers it to KZ, whose window verifies both signatures."""
    ru, kz = exchange.windows["RU-SW"], exchange.windows["KZ-SW"]
    ru.answer_for.add("urn:uuid:3f0c5b7e-9f65-4a0e-8d4c-1c2e3a4b5c01")
    status, _ = await exchange.post("KZ-SW", sign_as(exchange.pki, "KZ-SW"))
    assert status == 202
    await wait_for(lambda: len(ru.answers) == 1)
    assert ru.answers[0][0] == 202, ru.answers[0][1]
    await wait_for(lambda: len(kz.inbox) == 1)
    signal = kz.inbox[0]
    assert b"ProcessingReceipt" in signal.body
    assert signal.sender_verified, signal.problem
    assert signal.gateway_verified, signal.problem


async def test_signal_from_a_non_destination_or_to_the_wrong_address_is_refused(
    exchange: Exchange,
) -> None:
    """A signal answering a stored message must come from one of its destinations and go to
    its ReplyTo (ENVELOPE_INVALID otherwise); one naming no stored message routes by wsa:To."""
    await exchange.post("RU-SW", sign_as(exchange.pki, "RU-SW", PROCESSING_RESULT))
    # Answered by RU itself (the sender, not a destination): refused.
    answered = "urn:uuid:4e1d6c8f-0a76-4b1f-9e5d-2d3f4b5c6d02"
    signal = "valid-signal-processing-receipt-ru-to-kz.xml"

    def relating_to(message_id: str) -> str:
        def edit(text: str) -> str:
            return text.replace("urn:uuid:3f0c5b7e-9f65-4a0e-8d4c-1c2e3a4b5c01", message_id)

        return sign_as(exchange.pki, "RU-SW", signal, edit=edit).decode()

    status, body = await exchange.post("RU-SW", relating_to(answered).encode())
    assert status == 422
    receipt = verify_receipt(body, exchange.pki.gateway().ca).receipt
    assert receipt.errors[0][0] == "ENVELOPE_INVALID"
    assert "not delivered to RU-SW" in receipt.errors[0][1]
    # Answered by a destination, but addressed elsewhere than the sender's ReplyTo: refused.
    await exchange.post("KZ-SW", sign_as(exchange.pki, "KZ-SW", CONFORMITY))
    misaddressed = sign_as(
        exchange.pki,
        "RU-SW",
        signal,
        edit=lambda t: t.replace(
            '<wsa:To wsu:Id="id-to">EAEU://KZ/CP/P.TS.01/P.TS.01.ACT.001',
            '<wsa:To wsu:Id="id-to">EAEU://KZ/CP/P.TS.01/P.TS.01.ACT.009',
        ),
    )
    status, body = await exchange.post("RU-SW", misaddressed)
    assert status == 422
    receipt = verify_receipt(body, exchange.pki.gateway().ca).receipt
    assert "not that message's wsa:ReplyTo" in receipt.errors[0][1]
    # Naming no stored message at all: routed by its wsa:To.
    status, body = await exchange.post(
        "RU-SW", relating_to("urn:uuid:00000000-0000-4000-8000-000000000001").encode()
    )
    assert status == 202, body
