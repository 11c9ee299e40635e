"""`broker conformance inbox` against the simulator's inbox (every criterion PASS) and against
deliberately broken inboxes, each failing exactly the criteria it should, with a reason; the
signed report verifies in xmlsec1 and `broker verify`, and a tampered one does not."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from broker.conformance import inbox
from broker.conformance.criteria import INBOX
from broker.http.intake import ADMISSION, IntakeSettings
from broker.simulator import SingleWindow
from broker.store import open_store
from tests.conftest import ROOT
from tests.e2e.conftest import open_exchange, wait_for
from tests.e2e.nodes import signed_declarations
from tests.pki_support import Pki, run_xmlsec, sign_as
from tests.test_cli_validate import broker


class BrokenInbox(SingleWindow):
    """The simulator's strict inbox with one thing wrong."""

    fault: str = ""

    async def start(self) -> None:
        if self.fault == "accepts everything":
            self.strict = False
        if self.fault in ("needs no client certificate", "wrong country's certificate"):
            await self._start_loose()
            return
        await super().start()

    async def _start_loose(self) -> None:
        app = web.Application()
        app.router.add_post("/eaeu/inbox", self._inbox)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        owner = "KZ-SW" if self.fault == "wrong country's certificate" else self.participant
        folder = self.certs / "participants" / owner
        context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
        if self.fault == "needs no client certificate":
            context.verify_mode = ssl.CERT_NONE
        else:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=str(self.certs / "gateway" / "ca.pem"))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def _inbox(self, request: web.Request) -> web.Response:
        if self.fault == "answers too late":
            await asyncio.sleep(2.5)
        if self.fault == "refuses redelivery":
            body = await request.read()
            found = self._check(body)
            if found.verified and found.message_id in {r.message_id for r in self.inbox}:
                return web.Response(status=409, text="duplicate\n")
            self.inbox.append(found)
            if not found.verified:
                return web.Response(status=400, text=found.reason)
            return web.Response(text="received\n")
        return await super()._inbox(request)


EXPECTED_FAILURES = {
    "simulator": set(),
    "accepts everything": {
        "tampered-body-refused",
        "broken-countersignature-refused",
        "untrusted-sender-refused",
        "missing-integration-refused",
        "malformed-refused",
    },
    "needs no client certificate": {"client-certificate-required"},
    "answers too late": {"valid-delivery-accepted", "redelivery-accepted"},
    "refuses redelivery": {"redelivery-accepted"},
    "wrong country's certificate": {"tls-server-identity"},
}


@pytest.fixture
async def target(request: pytest.FixtureRequest, test_pki: Pki) -> AsyncIterator[SingleWindow]:
    window = BrokenInbox("RU-SW", test_pki.folder, strict=True)
    window.fault = request.param
    await window.start()
    try:
        yield window
    finally:
        await window.stop()


@pytest.mark.parametrize("target", list(EXPECTED_FAILURES), indirect=True)
async def test_each_inbox_fails_exactly_its_criteria(target: BrokenInbox, test_pki: Pki) -> None:
    prober = inbox.prober_for(
        test_pki.table,
        "RU-SW",
        target.endpoint,
        test_pki.folder,
        ROOT / "xsd",
        sender_key=None,
        sender_cert=None,
        timeout=2.0,
    )
    report = await inbox.evaluate(prober)
    assert [r.criterion.id for r in report.results] == [c.id for c in INBOX]
    failed = {r.criterion.id for r in report.results if r.verdict == "FAIL"}
    assert failed == EXPECTED_FAILURES[target.fault], [
        (r.criterion.id, r.verdict, r.reason) for r in report.results
    ]
    assert all(r.reason for r in report.results)
    assert report.failed == bool(failed)


async def test_the_cli_report_is_signed_and_verifies(
    test_pki: Pki, tmp_path: Path, xmlsec1: str
) -> None:
    store = f"sqlite:///{tmp_path / 'gateway.sqlite3'}"
    created = open_store(store, create=True)
    await created.open()
    await created.close()
    window = SingleWindow("RU-SW", test_pki.folder, strict=True)
    await window.start()
    try:
        result = await asyncio.to_thread(
            broker,
            "conformance", "inbox", "RU-SW", "--url", window.endpoint,
            "--certs", str(test_pki.folder), "--report", str(tmp_path / "r"), "--store", store,
        )  # fmt: skip
    finally:
        await window.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    audited = broker("audit", "verify", "--store", store, "--certs", str(test_pki.folder))
    assert audited.returncode == 0, audited.stdout
    assert f"intact: {len(INBOX)} entries" in audited.stdout
    assert result.stdout.count("PASS ") == len(INBOX)
    report = tmp_path / "r" / "report.xml"
    assert {p.name for p in (tmp_path / "r").iterdir()} == {
        "report.md", "report.html", "report.xml"
    }  # fmt: skip
    assert run_xmlsec(
        xmlsec1, "--verify", "--trusted-pem", str(test_pki.folder / "gateway" / "ca.pem"),
        str(report),
    ).returncode == 0  # fmt: skip
    verified = broker("verify", str(report), "--certs", str(test_pki.folder))
    assert verified.returncode == 0, verified.stdout
    assert "conformance report of RU-SW: PASS" in verified.stdout
    tampered = tmp_path / "tampered.xml"
    tampered.write_bytes(report.read_bytes().replace(b'verdict="PASS"', b'verdict="FAIL"', 1))
    assert run_xmlsec(
        xmlsec1, "--verify", "--trusted-pem", str(test_pki.folder / "gateway" / "ca.pem"),
        str(tampered),
    ).returncode != 0  # fmt: skip
    assert broker("verify", str(tampered), "--certs", str(test_pki.folder)).returncode == 1
    assert "CONFORMANCE TEST PROBE" in (ROOT / "broker" / "conformance" / "probe.xml").read_text()


def _by_alert(test_pki: Pki, message_id: str, other_content: bool = False) -> bytes:
    def change(text: str) -> str:
        text = text.replace("5f2e7d90-1b87-4c20-af6e-3e4f5c6d7e03", message_id)
        if other_content:  # the same MessageID with another, still valid, document
            text = text.replace(":00+03:00</csdo:EDocDateTime>", ":01+03:00</csdo:EDocDateTime>")
        return text

    return sign_as(test_pki, "BY-SW", "valid-dangerous-product-alert-by-to-kz.xml", edit=change)


async def test_conformance_sender_judges_a_good_and_a_bad_sender(
    test_pki: Pki, tmp_path: Path
) -> None:
    """KZ-SW sends valid messages. BY-SW sends one valid alert, then an invalid document, then
    a MessageID again with other content, and comes back at once after a 429. `broker
    conformance sender` scores each from what intake recorded."""
    settings = IntakeSettings(per_participant=1)
    async with open_exchange(test_pki, tmp_path, intake=settings) as exchange:
        for data in signed_declarations(test_pki, 3).values():
            assert (await exchange.post("KZ-SW", data))[0] == 202
        first = "5f2e7d90-1b87-4c20-af6e-3e4f5c6d7e01"
        assert (await exchange.post("BY-SW", _by_alert(test_pki, first)))[0] == 202
        invalid = sign_as(test_pki, "BY-SW", "invalid-SCHEMA_INVALID-alert-missing-hazard.xml")
        assert (await exchange.post("BY-SW", invalid))[0] == 422
        conflict = _by_alert(test_pki, first, other_content=True)
        assert conflict != _by_alert(test_pki, first)
        status, _ = await exchange.post("BY-SW", conflict)
        assert status == 409
        # Hold BY's one slot with an upload in progress; its next request gets 429 + Retry-After,
        # and it comes straight back.
        _, writer = await asyncio.open_connection(
            "127.0.0.1", exchange.server.intake_port, ssl=exchange.client_context("BY-SW")
        )
        writer.write(
            b"POST /v1/messages HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/soap+xml"
            b"\r\nContent-Length: 100000\r\n\r\n<"
        )
        await writer.drain()
        admission = exchange.server._runners[0].app[ADMISSION]  # the intake's bookkeeping
        await wait_for(lambda: admission.per["BY-SW"] >= 1)
        busy, _ = await exchange.post(
            "BY-SW", _by_alert(test_pki, "5f2e7d90-1b87-4c20-af6e-3e4f5c6d7e02")
        )
        assert busy == 429
        writer.transport.abort()
        await wait_for(lambda: admission.per["BY-SW"] == 0)
        again, _ = await exchange.post(
            "BY-SW", _by_alert(test_pki, "5f2e7d90-1b87-4c20-af6e-3e4f5c6d7e02")
        )
        assert again == 202
    store = f"sqlite:///{tmp_path / 'broker.sqlite3'}"
    common = ("--store", store, "--certs", str(test_pki.folder))
    good = broker("conformance", "sender", "KZ-SW", *common, "--report", str(tmp_path / "kz"))
    assert good.returncode == 0, good.stdout + good.stderr
    verdicts = _verdicts(good.stdout)
    assert verdicts["acceptance-rate"] == "PASS"
    assert verdicts["message-id-reuse"] == "PASS"
    assert verdicts["documents-valid"] == "PASS"
    assert verdicts["retry-after-honoured"] == "INFO"
    assert "X509Data / ecdsa-sha256 ×3" in good.stdout
    bad = broker("conformance", "sender", "BY-SW", *common, "--report", str(tmp_path / "by"))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    verdicts = _verdicts(bad.stdout)
    assert verdicts["acceptance-rate"] == "FAIL"
    assert verdicts["documents-valid"] == "FAIL"
    assert verdicts["retry-after-honoured"] == "FAIL"
    assert verdicts["message-id-reuse"] == "FAIL"
    assert "SCHEMA_INVALID 1" in bad.stdout
    assert "DUPLICATE_CONFLICT 1" in bad.stdout
    assert (tmp_path / "by" / "report.xml").exists()


def _verdicts(output: str) -> dict[str, str]:
    found = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("PASS", "FAIL", "INFO"):
            found[parts[1]] = parts[0]
    return found
