"""A GOST-signed message over real TLS (SPEC v1.1 §2): RU-SW signs with GOST R 34.10-2012
(its TLS identity stays ECDSA), the gateway accepts and forwards it with its ECDSA
countersignature, and KZ-SW's window verifies the sender's GOST signature with our verifier
and xmlsec1 verifies the countersignature."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from broker import xmlsafe
from broker.gost_pki import create_gost_identities, signing_identity
from broker.receipts import verify_receipt
from broker.send import prepare
from broker.signing.algorithms import GOST_256_METHOD
from tests.e2e.conftest import Exchange, open_exchange, wait_for
from tests.e2e.test_real_exchange import _gateway_signature_verifies
from tests.gost_support import require_gost
from tests.pki_support import Pki

pytestmark = pytest.mark.xmlsec


@pytest.fixture
async def gost_exchange(test_pki: Pki, tmp_path: Path) -> AsyncIterator[Exchange]:
    """The test PKI, copied, with a GOST CA for RU beside its ECDSA one and a GOST signing
    identity for RU-SW (as `broker certs demo --gost RU` makes them)."""
    require_gost()
    folder = tmp_path / "certs"
    shutil.copytree(test_pki.folder, folder)
    create_gost_identities(folder, {"RU-SW": "RU"}, {"RU"})
    pki = dataclasses.replace(test_pki, folder=folder)
    async with open_exchange(pki, tmp_path) as opened:
        yield opened


def _gost_signed(exchange: Exchange, sample: str) -> bytes:
    key, cert = signing_identity(exchange.pki.folder / "participants" / "RU-SW")
    data = (Path(__file__).parent.parent / "data" / sample).read_bytes()
    return prepare(data, key.read_bytes(), cert.read_bytes())


async def test_a_gost_signed_message_is_accepted_forwarded_and_delivered(
    gost_exchange: Exchange, xmlsec1: str, tmp_path: Path
) -> None:
    data = _gost_signed(gost_exchange, "valid-processing-result-ru-to-kz.xml")
    assert GOST_256_METHOD.encode() in data
    status, body = await gost_exchange.post("RU-SW", data)
    assert status == 202, body
    receipt = verify_receipt(body, gost_exchange.pki.gateway().ca).receipt
    assert receipt.kind == "Accepted"
    window = gost_exchange.windows["KZ-SW"]
    await wait_for(lambda: len(window.inbox) >= 1)
    forwarded = window.inbox[-1]
    assert forwarded.sender_verified, forwarded.problem
    assert forwarded.gateway_verified, forwarded.problem
    methods = [
        m.get("Algorithm")
        for m in xmlsafe.parse(forwarded.body).iter(
            "{http://www.w3.org/2000/09/xmldsig#}SignatureMethod"
        )
    ]
    assert methods[0] == GOST_256_METHOD  # the sender's, unchanged
    assert methods[1].endswith("ecdsa-sha256")  # the gateway's countersignature
    _gateway_signature_verifies(gost_exchange, xmlsec1, forwarded.body, tmp_path)


async def test_a_tampered_gost_message_is_refused(gost_exchange: Exchange) -> None:
    data = _gost_signed(gost_exchange, "valid-processing-result-ru-to-kz.xml")
    tampered = data.replace(b"2026-11-29T07:16:02", b"2026-11-29T07:16:03", 1)
    assert tampered != data
    status, body = await gost_exchange.post("RU-SW", tampered)
    assert status == 422, body
    assert b"SIGNATURE_INVALID" in body


async def test_readyz_says_whether_gost_is_available(gost_exchange: Exchange) -> None:
    status, body = await gost_exchange.admin("GET", "/readyz")
    assert status == 200
    assert b"GOST backend: available" in body


async def test_broker_send_with_a_gost_signing_identity(
    gost_exchange: Exchange, tmp_path: Path
) -> None:
    """`broker send --signing-key/--signing-cert`: TLS as RU-SW's ECDSA identity, the message
    signed with its GOST one; accepted."""
    import asyncio

    from tests.test_cli_validate import broker

    identity = gost_exchange.pki.folder / "participants" / "RU-SW"
    message = tmp_path / "result.xml"
    message.write_bytes(
        (
            Path(__file__).parent.parent / "data" / "valid-processing-result-ru-to-kz.xml"
        ).read_bytes()
    )
    result = await asyncio.to_thread(
        broker,
        "send",
        *("--key", str(identity / "key.pem"), "--cert", str(identity / "cert.pem")),
        *("--signing-key", str(identity / "signing" / "key.pem")),
        *("--signing-cert", str(identity / "signing" / "cert.pem")),
        *("--gateway", gost_exchange.base, "--certs", str(gost_exchange.pki.folder)),
        str(message),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("HTTP 202: Accepted")
    assert GOST_256_METHOD.encode() in (tmp_path / "result.signed.xml").read_bytes()
