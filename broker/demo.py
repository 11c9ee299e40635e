"""`broker demo`: a whole exchange on this machine, in one command.

It creates a development PKI (if the demo folder has none), starts simulated single windows of
Kazakhstan, Russia and Belarus over TLS on loopback, starts the gateway on a fresh SQLite store,
sends a mix of valid and invalid messages — Kazakhstan's window answers 503 twice before it
accepts — waits for every delivery with a progress line, and prints what happened: each message,
its route, each destination's outcome and each receipt, verified. Receipts and forwarded
messages are left in the demo folder.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from cryptography import x509

from broker import pki
from broker.delivery.worker import WorkerSettings
from broker.errors import GatewayError
from broker.gost_pki import create_gost_identities, signing_identity
from broker.receipts import verify_receipt
from broker.send import client_context, prepare
from broker.server import GatewayServer, ServeSettings
from broker.signing import gost
from broker.signing.algorithms import describe
from broker.simulator import SingleWindow

PARTICIPANTS = {"KZ-SW": "KZ", "RU-SW": "RU", "BY-SW": "BY"}
ANSWERED = "urn:uuid:3f0c5b7e-9f65-4a0e-8d4c-1c2e3a4b5c01"
"""The register update (scenario 1) that Russia's window answers with a signal."""

ROUTING = """\
# Demo routing table written by `broker demo`: three national single windows on loopback.
version: 1
gateway: {{id: EEC-GW}}
participants:
  KZ-SW:
    country: KZ
    addresses: ["EAEU://KZ/*"]
    endpoint: {KZ-SW}
    receipts: {KZ-SW-receipts}
  RU-SW:
    country: RU
    addresses: ["EAEU://RU/*"]
    endpoint: {RU-SW}
    receipts: {RU-SW-receipts}
  BY-SW:
    country: BY
    addresses: ["EAEU://BY/*"]
    endpoint: {BY-SW}
    receipts: {BY-SW-receipts}
routes:
  - name: signals-to-addressee
    match: {{action: "*/P.MSG.*", document: "P.MSG.*"}}
    deliver: addressee
    retry: {{attempts: 10, initial: 200ms, max: 2s, ttl: 1h}}
  - name: ts01-registry-update-to-all
    match: {{action: "int://CP/P.TS.01/*/P.TS.01.MSG.001", document: R.TR.TS.01.001}}
    deliver: ["*-SW"]
    retry: {{attempts: 10, initial: 200ms, max: 2s, ttl: 1h}}
  - name: processing-result-to-addressee
    match: {{document: R.006}}
    deliver: addressee
    retry: {{attempts: 10, initial: 200ms, max: 2s, ttl: 1h}}
  - name: ss08-alert-to-all
    match: {{action: "int://CP/P.SS.08/*", document: "R.SM.SS.08.*"}}
    deliver: ["*"]
    retry: {{attempts: 10, initial: 200ms, max: 2s, ttl: 1h}}
  - name: goods-declaration-to-addressee
    match: {{document: R.055}}
    deliver: addressee
    retry: {{attempts: 10, initial: 200ms, max: 2s, ttl: 1h}}
"""


@dataclass(frozen=True)
class Scenario:
    label: str
    sender: str
    sample: str
    edit: Callable[[bytes], bytes] | None = None
    sign: bool = True
    tls_as: str | None = None
    """Submit over this participant's TLS identity instead of the sender's."""
    tamper: Callable[[bytes], bytes] | None = None
    """Applied after signing."""
    resend: int | None = None
    """Send again, byte for byte, what scenario number ``resend`` sent."""


SCENARIOS = (
    Scenario("conformity register update", "KZ-SW", "valid-conformity-kz-to-ru.xml"),
    Scenario(
        "processing result (KZ answers 503 twice)", "RU-SW", "valid-processing-result-ru-to-kz.xml"
    ),
    Scenario("dangerous product alert", "BY-SW", "valid-dangerous-product-alert-by-to-kz.xml"),
    Scenario("goods declaration", "KZ-SW", "valid-goods-declaration-kz-to-ru.xml"),
    Scenario(
        "goods declaration, resent identically",
        "KZ-SW",
        "valid-goods-declaration-kz-to-ru.xml",
        resend=4,
    ),
    Scenario(
        "register update with a bad commodity code",
        "KZ-SW",
        "invalid-SCHEMA_INVALID-conformity-commodity-code.xml",
    ),
    Scenario(
        "register update changed after signing",
        "KZ-SW",
        "valid-conformity-kz-to-ru.xml",
        tamper=lambda b: b.replace(b"9405210000", b"8405210000"),
    ),
    Scenario(
        "KZ-signed message sent over RU's connection",
        "KZ-SW",
        "valid-goods-declaration-kz-to-ru.xml",
        tls_as="RU-SW",
        edit=lambda b: b.replace(b"6a3f8ea1", b"6a3f8ea2"),
    ),
    Scenario(
        "unsigned message",
        "KZ-SW",
        "valid-goods-declaration-kz-to-ru.xml",
        sign=False,
        edit=lambda b: b.replace(b"6a3f8ea1", b"6a3f8ea3"),
    ),
)


@dataclass
class Sent:
    scenario: Scenario
    status: int
    receipt: bytes
    message_id: str | None
    body: bytes


def _samples() -> Path:
    here = Path(__file__).resolve().parent.parent / "tests" / "data"
    if not here.is_dir():
        raise SystemExit("broker demo needs the sample messages in tests/data/ of a checkout")
    return here


async def _submit(
    server: GatewayServer, certs: Path, scenario: Scenario, earlier: list[Sent]
) -> Sent:
    data = (_samples() / scenario.sample).read_bytes()
    if scenario.edit:
        data = scenario.edit(data)
    identity = certs / "participants" / scenario.sender
    if scenario.sign:
        key, cert = signing_identity(identity)
        data = prepare(data, key.read_bytes(), cert.read_bytes())
    if scenario.tamper:
        data = scenario.tamper(data)
    if scenario.resend is not None:
        data = earlier[scenario.resend - 1].body
    tls = certs / "participants" / (scenario.tls_as or scenario.sender)
    context = client_context(tls / "key.pem", tls / "cert.pem", certs / "gateway" / "ca.pem")
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"https://127.0.0.1:{server.intake_port}/v1/messages",
            data=io.BytesIO(data),
            ssl=context,
            headers={"Content-Type": "application/soap+xml"},
        ) as response,
    ):
        body = await response.read()
    trusted = x509.load_pem_x509_certificates((certs / "gateway" / "ca.pem").read_bytes())
    message_id = verify_receipt(body, trusted).receipt.message_id
    return Sent(scenario, response.status, body, message_id, data)


async def _wait(
    server: GatewayServer, windows: dict[str, SingleWindow], timeout: float = 60.0
) -> None:
    start = time.monotonic()
    store = server.gateway.store
    tty = sys.stdout.isatty()
    last = ""
    while True:
        # A signal answering a delivery is still on its way while its window sends it.
        answering = sum(w.answering for w in windows.values())
        expected = sum(len(w.answer_for) for w in windows.values())
        answered = sum(len(w.answers) for w in windows.values())
        counts = await store.counts()
        line = (
            f"  deliveries: {counts.pending} pending, {counts.delivered} delivered, "
            f"{counts.failed} failed"
        )
        if tty:  # one line, rewritten in place
            sys.stdout.write(f"\r{line} ({time.monotonic() - start:4.1f}s) ")
        elif line != last:  # a log: a line per change
            sys.stdout.write(f"{line}\n")
        last = line
        sys.stdout.flush()
        settled = counts.pending == 0 and answering == 0 and answered >= expected
        if settled or time.monotonic() - start > timeout:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)  # let the last receipt pushes land
    if tty:
        sys.stdout.write("\n")


async def _report(server: GatewayServer, certs: Path, sent: list[Sent], out: Path) -> int:
    trusted = x509.load_pem_x509_certificates((certs / "gateway" / "ca.pem").read_bytes())
    receipts_dir = out / "receipts"
    receipts_dir.mkdir(parents=True, exist_ok=True)
    problems = 0
    print(f"\n  {'#':>2}  {'message':<45} {'from':<6} {'HTTP':>4}  route / outcome")
    for number, item in enumerate(sent, 1):
        scenario = item.scenario
        checked = verify_receipt(item.receipt, trusted).receipt
        (receipts_dir / f"{number:02d}-{checked.kind}.xml").write_bytes(item.receipt)
        outcome = checked.route or ", ".join(f"{c}: {t}" for c, t in checked.errors)
        if len(outcome) > 110:
            outcome = outcome[:107] + "…"
        print(
            f"  {number:>2}  {scenario.label:<45} {scenario.sender[:2]:<6} {item.status:>4}  "
            f"{outcome}"
        )
        method = _signature_method(item.body)
        if method and "gost" in method:
            print(f"      signed with GOST R 34.10-2012 ({describe(method)})")
        if checked.kind != "Accepted" or item.message_id is None:
            print(f"      receipt {checked.kind} ✓ verified")
            continue
        view = await server.gateway.store.message(item.message_id, scenario.sender)
        assert view is not None
        for destination in view.destinations:
            print(
                f"      → {destination.participant:<6} {destination.state:<9} "
                f"after {destination.attempts} attempt(s)"
                + (f" — last error {destination.last_error}" if destination.last_error else "")
            )
            problems += destination.state != "delivered"
        kinds = []
        for receipt in view.receipts:
            found = await server.gateway.store.receipt(receipt.id)
            assert found is not None
            try:
                verify_receipt(found[1], trusted)
                mark = "✓"
            except GatewayError:
                mark, problems = "✗", problems + 1
            suffix = f"-{receipt.destination}" if receipt.destination else ""
            (receipts_dir / f"{number:02d}-{receipt.kind}{suffix}.xml").write_bytes(found[1])
            kinds.append(
                f"{receipt.kind}{'→' + receipt.destination if receipt.destination else ''} {mark}"
            )
        print(f"      receipts: {', '.join(kinds)}")
    return problems


async def _report_signals(
    server: GatewayServer, certs: Path, windows: dict[str, SingleWindow]
) -> int:
    """Each signal a window sent back, and where the gateway delivered it."""
    trusted = x509.load_pem_x509_certificates((certs / "gateway" / "ca.pem").read_bytes())
    problems = 0
    for participant, window in windows.items():
        for status, receipt in window.answers:
            message_id = verify_receipt(receipt, trusted).receipt.message_id
            view = await server.gateway.store.message(message_id or "", participant)
            outcome = (
                ", ".join(f"{d.participant} {d.state}" for d in view.destinations)
                if view is not None
                else "not accepted"
            )
            print(
                f"\n  signal P.MSG.PRS from {participant} answering {ANSWERED}: HTTP {status}, "
                f"route {view.route if view else '-'} → {outcome}"
            )
            problems += view is None or any(d.state != "delivered" for d in view.destinations)
    return problems


def _signature_method(body: bytes) -> str | None:
    """The sender's SignatureMethod in a submitted envelope (for the summary)."""
    match = re.search(rb'SignatureMethod Algorithm="([^"]+)"', body)
    return match.group(1).decode() if match else None


async def _until_stopped() -> None:
    """Wait for Ctrl-C or SIGTERM."""
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stopped.set)
    await stopped.wait()


async def run_demo(out: Path, xsd: Path, keep: bool = False) -> int:
    certs = out / "certs"
    pki.create_demo_pki(certs, PARTICIPANTS)
    if gost.available():  # Russia signs with GOST R 34.10-2012 (SPEC §2)
        create_gost_identities(certs, PARTICIPANTS, {"RU"})
    store = out / "broker.sqlite3"
    for stale in (store, out / "broker.sqlite3-wal", out / "broker.sqlite3-shm"):
        stale.unlink(missing_ok=True)
    shutil.rmtree(out / "receipts", ignore_errors=True)
    shutil.rmtree(out / "forwarded", ignore_errors=True)
    windows = {p: SingleWindow(p, certs) for p in PARTICIPANTS}
    for window in windows.values():
        await window.start()
    # The processing result (scenario 2) meets two 503s at Kazakhstan's window first.
    windows["KZ-SW"].fail_for["urn:uuid:4e1d6c8f-0a76-4b1f-9e5d-2d3f4b5c6d02"] = [503, 503]
    # Russia's window answers the register update (scenario 1) with a P.MSG.PRS signal.
    windows["RU-SW"].answer_for.add(ANSWERED)
    routing = out / "routing.yaml"
    routing.write_text(
        ROUTING.format(
            **{p: w.endpoint for p, w in windows.items()},
            **{f"{p}-receipts": w.receipts_url for p, w in windows.items()},
        )
    )
    server = GatewayServer(
        ServeSettings(
            routing=routing,
            certs=certs,
            xsd=xsd,
            store=f"sqlite:///{store}",
            listen="127.0.0.1:0",
            admin="127.0.0.1:0",
            worker=WorkerSettings(poll=0.1),
            shutdown_timeout=5,
        )
    )
    await server.start()
    for window in windows.values():
        window.gateway = f"https://127.0.0.1:{server.intake_port}"
    print(
        f"EAEU gateway demo — gateway on https://127.0.0.1:{server.intake_port} (admin "
        f"http://127.0.0.1:{server.admin_port}), single windows "
        + ", ".join(f"{p} :{w.port}" for p, w in windows.items())
    )
    try:
        print(f"  sending {len(SCENARIOS)} messages (valid and invalid) …")
        sent: list[Sent] = []
        for scenario in SCENARIOS:
            sent.append(await _submit(server, certs, scenario, sent))
        await _wait(server, windows)
        problems = await _report(server, certs, sent, out)
        problems += await _report_signals(server, certs, windows)
        forwarded = out / "forwarded"
        forwarded.mkdir(exist_ok=True)
        for participant, window in windows.items():
            for number, item in enumerate(window.inbox, 1):
                (forwarded / f"{participant}-{number:02d}.xml").write_bytes(item.body)
                problems += not (item.sender_verified and item.gateway_verified)
        verified = sum(len(w.inbox) for w in windows.values())
        pushed = sum(len(w.receipts) for w in windows.values())
        print(
            f"\n  {verified} forwarded envelopes, both signatures verified at each destination; "
            f"{pushed} Delivered/Failed receipts pushed to senders"
        )
        print(
            f"  receipts and forwarded messages are in {out}/ (check one with: broker verify "
            f"{out}/receipts/01-Accepted.xml --certs {certs})"
        )
        stats = json.dumps({"problems": problems})
        print(f"  demo {'OK' if problems == 0 else 'FINISHED WITH PROBLEMS'} {stats}")
        console = f"http://127.0.0.1:{server.admin_port}/console/"
        if keep:
            print(f"  console: {console} — the gateway keeps running; Ctrl-C stops it", flush=True)
            await _until_stopped()
        else:
            print(f"  console: {console} (`broker demo --keep` leaves it running for a look)")
        return 0 if problems == 0 else 1
    finally:
        await server.stop()
        for window in windows.values():
            await window.stop()
