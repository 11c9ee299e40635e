"""Live reload of everything an operator edits (SPEC §7 `POST /admin/reload`, SIGHUP): a new
document type imported with `broker xsd import`, a new CA, a CRL — each judged by the running
gateway without a restart — and a broken set that changes nothing."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import sqlite3
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization

from broker import pki, xmlsafe
from broker.compose import Addressing, compose_envelope
from broker.envelope import parse_envelope
from broker.signing.sign import sign_envelope
from tests.conftest import XSD
from tests.e2e.conftest import Exchange, open_exchange
from tests.pki_support import Pki
from tests.test_cli_validate import broker
from tests.test_xsd_import import _registry


@pytest.fixture
async def editable(test_pki: Pki, tmp_path: Path) -> AsyncIterator[Exchange]:
    """A gateway on its own copies of xsd/ and certs/, for the operator to edit."""
    certs = tmp_path / "certs"
    shutil.copytree(test_pki.folder, certs)
    xsd = tmp_path / "xsd"
    shutil.copytree(XSD, xsd)
    own = dataclasses.replace(test_pki, folder=certs)
    async with open_exchange(own, tmp_path, xsd=xsd) as opened:
        yield opened


async def _reload(exchange: Exchange) -> tuple[int, dict[str, object]]:
    status, body = await exchange.admin("POST", "/admin/reload")
    return status, json.loads(body)


def _request_document_message() -> bytes:
    document = b"""<rq:ConformityDocsRegistryRequest
    xmlns:rq="urn:EEC:R:TR:TS:01:ConformityDocsRegistryRequest:v1.0.0"
    xmlns:ccdo="urn:EEC:M:ComplexDataObjects:v0.4.5" xmlns:csdo="urn:EEC:M:SimpleDataObjects:v0.4.5"
    xmlns:x="urn:EEC:M:TR:RequestObjects:v1.0.0">
  <ccdo:EDocHeader>
    <csdo:InfEnvelopeCode>P.TS.01.MSG.001</csdo:InfEnvelopeCode>
    <csdo:EDocCode>R.TR.TS.01.005</csdo:EDocCode>
    <csdo:EDocId>0e6f1b7a-3c2d-4e5f-9a8b-7c6d5e4f3a21</csdo:EDocId>
    <csdo:EDocDateTime>2026-12-01T10:00:00Z</csdo:EDocDateTime>
  </ccdo:EDocHeader>
  <x:RequestedDocId>KZ.7500361.22.01.00123</x:RequestedDocId>
</rq:ConformityDocsRegistryRequest>"""
    return compose_envelope(
        document,
        Addressing(
            to="EAEU://RU/CP/P.TS.01/P.TS.01.ACT.002",
            reply_to="EAEU://KZ/CP/P.TS.01/P.TS.01.ACT.001",
            action="int://CP/P.TS.01/1.0.1/P.TS.01.PRC.001/P.TS.01.TRN.001/P.TS.01.MSG.001",
        ),
    )


def _signed(issued: pki.Issued, data: bytes) -> bytes:
    envelope = parse_envelope(xmlsafe.parse(data))
    der = issued.certificate.public_bytes(serialization.Encoding.DER)
    return sign_envelope(envelope, issued.key, der)


async def test_reload_takes_a_new_document_type(editable: Exchange, tmp_path: Path) -> None:
    """UNKNOWN_DOCUMENT before; `broker xsd import` then POST /admin/reload; accepted after, and
    the audit log records the digests of the new set."""
    key = editable.pki.identities["KZ-SW"]
    status, _ = await editable.post("KZ-SW", _signed(key, _request_document_message()))
    assert status == 422
    xsd = editable.server.settings.xsd
    imported = broker("xsd", "import", str(_registry(tmp_path)), "--xsd", str(xsd))
    assert imported.returncode == 0, imported.stderr
    before = editable.server.gateway.config.current.digests
    status, body = await _reload(editable)
    assert status == 200, body
    assert body["reloaded"] is True
    assert "not reloaded" in str(body["not_reloaded"])
    digests = body["digests"]
    assert isinstance(digests, dict)
    assert digests["catalog"] != before["catalog"]
    assert digests["routing"] == before["routing"]
    status, data = await editable.post("KZ-SW", _signed(key, _request_document_message()))
    assert status == 202, data
    events = [
        (row[0], json.loads(row[1]))
        for row in sqlite3.connect(editable.folder / "broker.sqlite3").execute(
            "SELECT event, detail FROM audit_log WHERE event LIKE 'configuration_%'"
        )
    ]
    assert events[-1][0] == "configuration_reloaded"
    assert events[-1][1]["catalog"] == digests["catalog"]


def _client(exchange: Exchange, issued: pki.Issued, tmp_path: Path) -> ssl.SSLContext:
    key, cert = tmp_path / "new-key.pem", tmp_path / "new-cert.pem"
    key.write_bytes(pki.key_pem(issued.key))
    cert.write_bytes(pki.cert_pem(issued.certificate))
    context = ssl.create_default_context(cafile=str(exchange.pki.folder / "gateway" / "ca.pem"))
    context.load_cert_chain(cert, key)
    return context


async def _post_as(exchange: Exchange, context: ssl.SSLContext, body: bytes) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{exchange.base}/v1/messages",
            data=io.BytesIO(body),
            ssl=context,
            headers={"Content-Type": "application/soap+xml"},
        ) as response,
    ):
        await response.read()
        return response.status


async def test_reload_takes_a_new_ca_then_a_crl(editable: Exchange, tmp_path: Path) -> None:
    """A participant certificate from a CA not yet trusted cannot even connect; after the CA is
    added to certs/trust/KZ/ and the set reloaded it is accepted; after a CRL revoking it is
    added and reloaded it is CERTIFICATE_UNTRUSTED — all without a restart."""
    new_ca = pki.make_ca("Kazakhstan second development CA", "KZ")
    issued = pki.make_leaf(new_ca, "KZ-SW", "KZ")
    context = _client(editable, issued, tmp_path)
    message = (Path(__file__).parent.parent / "data" / "valid-conformity-kz-to-ru.xml").read_bytes()
    with pytest.raises(aiohttp.ClientError):
        await _post_as(editable, context, _signed(issued, message))
    folder = editable.pki.folder
    (folder / "trust" / "KZ" / "second.pem").write_bytes(pki.cert_pem(new_ca.certificate))
    status, body = await _reload(editable)
    assert status == 200, body
    assert await _post_as(editable, context, _signed(issued, message)) == 202
    crl = pki.make_crl(new_ca, [issued.certificate])
    (folder / "crl" / "second.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    status, body = await _reload(editable)
    assert status == 200, body
    again = message.replace(b"3f0c5b7e-9f65", b"3f0c5b7e-9f66")
    assert await _post_as(editable, context, _signed(issued, again)) == 403


async def test_broken_set_is_refused_whole(editable: Exchange) -> None:
    """A broken catalog beside a good routing edit: 422 naming the error, nothing swapped in
    (not even the routing edit), and messages are still judged by the set in force."""
    config = editable.server.gateway.config
    before = config.current
    routing = config.sources.routing
    routing.write_text(routing.read_text() + "\n# an edit\n")
    catalog = editable.server.settings.xsd / "catalog.yaml"
    catalog.write_text(catalog.read_text() + "  - code: broken\n")
    status, body = await _reload(editable)
    assert status == 422
    assert any("schema catalog" in e for e in body["errors"])  # type: ignore[attr-defined]
    assert config.current is before
    key = editable.pki.identities["KZ-SW"]
    message = (Path(__file__).parent.parent / "data" / "valid-conformity-kz-to-ru.xml").read_bytes()
    status, _ = await editable.post("KZ-SW", _signed(key, message))
    assert status == 202
    # The v1 address still works and answers the same way.
    status, _ = await editable.admin("POST", "/admin/routing/reload")
    assert status == 422
