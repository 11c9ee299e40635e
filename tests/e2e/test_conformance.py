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
from broker.simulator import SingleWindow
from broker.store import open_store
from tests.conftest import ROOT
from tests.pki_support import Pki, run_xmlsec
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
