"""Simulated member-state single windows (for `broker demo`, `broker bench` and the tests).

Each one is an HTTPS server on loopback with the participant's certificate, requiring the
gateway's client certificate (issued by certs/gateway/ca.pem). Its inbox checks what the gateway
forwards the way a real destination would — the sender's signature against the sender's country
CA and the gateway's signature against the gateway CA — and it can be told to fail: answer 503
(with Retry-After) a number of times, or refuse with 400. Its receipts endpoint keeps the
Delivered/Failed receipts the gateway pushes.
"""

from __future__ import annotations

import datetime as dt
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import NameOID
from lxml import etree

from broker import clock, xmlsafe
from broker.compose import signal_answering
from broker.envelope import DS, SOAP, WSSE, Envelope, parse_envelope
from broker.errors import GatewayError
from broker.gost_pki import signing_identity
from broker.receipts import verify_receipt
from broker.send import send
from broker.signing import keyinfo, xmldsig
from broker.signing.trust import ChainError, TrustStore, chain_to
from broker.tasks import TaskGroup


@dataclass
class Received:
    body: bytes
    sender_verified: bool
    gateway_verified: bool
    problem: str | None
    at: float = field(default_factory=time.time)
    """When it arrived (epoch seconds)."""
    message_id: str | None = None

    @property
    def verified(self) -> bool:
        return self.sender_verified and self.gateway_verified

    @property
    def reason(self) -> str:
        """Why it is not verified (for a refusal), or "verified"."""
        if self.verified:
            return "verified"
        if self.problem:
            return self.problem
        if not self.sender_verified:
            return "the sender's certificate chains to no CA of certs/trust/"
        return "the countersignature is not by a certificate of certs/gateway/ca.pem"


@dataclass
class SingleWindow:
    """One simulated participant with an inbox and a receipts endpoint."""

    participant: str
    certs: Path
    fail_next: list[int] = field(default_factory=list)
    """Statuses to answer before accepting, e.g. [503, 503] (consumed in order)."""
    fail_for: dict[str, list[int]] = field(default_factory=dict)
    """Like fail_next, but only for the message whose body holds this MessageID."""
    retry_after: str | None = None
    inbox: list[Received] = field(default_factory=list)
    receipts: list[bytes] = field(default_factory=list)
    verify: bool = True
    port: int = 0
    extra_routes: list[tuple[str, str, Any]] = field(default_factory=list)
    answer_for: set[str] = field(default_factory=set)
    """MessageIDs to answer, once received and verified, with a signed P.MSG.PRS signal sent
    back through the gateway (SPEC §1). A signal itself is never answered."""
    gateway: str | None = None
    """The gateway's intake URL, where answers go."""
    answers: list[tuple[int, bytes]] = field(default_factory=list)
    """(HTTP status, receipt) of each answer sent."""
    strict: bool = False
    """Refuse (400, with the reason) a delivery whose signatures do not both verify or that
    lacks the gateway's int:Integration, as a real inbox must (`broker simulate`); the tests'
    windows accept everything and record what they found."""
    answer_all: bool = False
    """Answer every verified message (not signals) with P.MSG.PRS (`simulate --answer`)."""
    on_received: Callable[[str, Received], None] | None = None
    """Told of each delivery: (MessageID or "-", what was found)."""
    on_receipt: Callable[[str, str], None] | None = None
    """Told of each pushed receipt: (its kind, "verified" or why not)."""
    _runner: web.AppRunner | None = None
    _tasks: TaskGroup = field(default_factory=TaskGroup)

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}/eaeu/inbox"

    @property
    def receipts_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/eaeu/receipts"

    def _check(self, body: bytes) -> Received:
        if not self.verify:
            return Received(body, False, False, None)
        try:
            root = xmlsafe.parse(body)
            ids = xmldsig.id_index(root)
            security = root.find(f"{{{SOAP}}}Header/{{{WSSE}}}Security")
            signatures = root.findall(f".//{{{WSSE}}}Security/{{{DS}}}Signature")
            trust = _trust(self.certs)
            now = clock.now()

            def sender_key(key_info: etree._Element) -> keyinfo.SignerKey:
                # As a destination: a certificate the sender only named is among the tokens
                # the gateway embedded (SPEC §3).
                return keyinfo.resolve(
                    key_info,
                    security=security,
                    ids=ids,
                    known=None,
                    at=now,
                    parse=xmldsig.certificate_from_der,
                )

            envelope = parse_envelope(root, forwarded=True)
            message_id = envelope.message_id.value
            if envelope.integration is None:
                return Received(
                    body, False, False, "no int:Integration: not forwarded by the gateway",
                    message_id=message_id,
                )  # fmt: skip
            if len(signatures) != 2:
                return Received(
                    body, False, False,
                    f"{len(signatures)} signature(s); a forwarded message has the sender's and "
                    "the gateway's", message_id=message_id,
                )  # fmt: skip
            sender = xmldsig.verify(signatures[0], ids, resolve_key=sender_key)
            gateway = xmldsig.verify(signatures[1], ids)
            sender_ok = any(_chains(sender.certificate, cas, now) for cas in trust.cas.values())
            gateway_ok = _chains(gateway.certificate, _gateway_ca(self.certs), now)
            return Received(body, sender_ok, gateway_ok, None, message_id=message_id)
        except (GatewayError, IndexError) as exc:
            return Received(body, False, False, str(exc))

    async def _inbox(self, request: web.Request) -> web.Response:
        body = await request.read()
        scripted = next((v for k, v in self.fail_for.items() if v and k.encode() in body), None)
        if scripted or self.fail_next:
            status = (scripted or self.fail_next).pop(0)
            headers = {"Retry-After": self.retry_after} if self.retry_after else None
            return web.Response(status=status, text=f"simulated {status}\n", headers=headers)
        received = self._check(body)
        self.inbox.append(received)
        if self.on_received is not None:
            self.on_received(received.message_id or "-", received)
        if self.strict and not received.verified:
            return web.Response(status=400, text=f"refused: {received.reason}\n")
        if (self.answer_for or self.answer_all) and received.verified:
            envelope = parse_envelope(xmlsafe.parse(body), forwarded=True)
            wanted = self.answer_all or envelope.message_id.value in self.answer_for
            if wanted and envelope.document.signal is None:
                self._tasks.start(self._answer(envelope), f"answer-{envelope.message_id.value}")
        return web.Response(status=200, text="received\n")

    @property
    def answering(self) -> int:
        """Answers still being sent."""
        return len(self._tasks)

    async def _answer(self, envelope: Envelope) -> None:
        """Answer a delivered message with P.MSG.PRS, as this participant, via the gateway."""
        assert self.gateway is not None, "answer_for needs the gateway's intake URL"
        to = envelope.to_address
        folder = self.certs / "participants" / self.participant
        names = x509.load_pem_x509_certificate(
            (folder / "cert.pem").read_bytes()
        ).subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)
        country = str(names[0].value) if names else ""
        # Answer from the address the message reached, or this state's address in its process.
        reply_to = (
            to.text if to.segment == country else f"EAEU://{country}/CP/{to.process}/P.ACT.001"
        )
        signal = signal_answering(envelope, "P.MSG.PRS", reply_to)
        result = await send(
            signal,
            gateway=self.gateway,
            key=folder / "key.pem",
            cert=folder / "cert.pem",
            signing=signing_identity(folder),
            gateway_ca=self.certs / "gateway" / "ca.pem",
        )
        self.answers.append((result.status, result.body))

    async def _receipt(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.receipts.append(body)
        if self.on_receipt is not None:
            try:
                checked = verify_receipt(body, _gateway_ca(self.certs))
            except GatewayError as exc:
                self.on_receipt("?", f"NOT VALID: {exc}")
            else:
                self.on_receipt(checked.receipt.kind, "verified")
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/eaeu/inbox", self._inbox)
        app.router.add_post("/eaeu/receipts", self._receipt)
        for method, path, handler in self.extra_routes:
            app.router.add_route(method, path, handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        folder = self.certs / "participants" / self.participant
        context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(self.certs / "gateway" / "ca.pem"))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=context)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        await self._tasks.drain(timeout=10)
        if self._runner is not None:
            await self._runner.cleanup()


_TRUST: dict[Path, TrustStore] = {}


def _trust(certs: Path) -> TrustStore:
    if certs not in _TRUST:
        _TRUST[certs] = TrustStore.load(certs)
    return _TRUST[certs]


def _gateway_ca(certs: Path) -> tuple[x509.Certificate, ...]:
    return tuple(x509.load_pem_x509_certificates((certs / "gateway" / "ca.pem").read_bytes()))


def _chains(cert: x509.Certificate, cas: tuple[x509.Certificate, ...], now: dt.datetime) -> bool:
    try:
        chain_to(cert, (), cas, now)
    except ChainError:
        return False
    return True


def main() -> None:
    """`python -m broker.simulator --certs DIR --participant ID [--port N] [--no-verify]`:
    one single window in a process of its own (the benchmark's destination). GET /count
    answers how many messages and receipts it has received."""
    import argparse
    import asyncio
    import json
    import signal

    parser = argparse.ArgumentParser(prog="python -m broker.simulator")
    parser.add_argument("--certs", type=Path, required=True)
    parser.add_argument("--participant", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-verify", action="store_true")
    args = parser.parse_args()

    async def run() -> None:
        window = SingleWindow(
            args.participant, args.certs, verify=not args.no_verify, port=args.port
        )

        async def count(request: web.Request) -> web.Response:
            return web.json_response({"inbox": len(window.inbox), "receipts": len(window.receipts)})

        window.extra_routes.append(("GET", "/count", count))
        await window.start()
        print(json.dumps({"port": window.port}), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await window.stop()

    asyncio.run(run())


if __name__ == "__main__":
    main()
