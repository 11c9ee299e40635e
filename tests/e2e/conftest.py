"""A whole exchange on loopback: the gateway (in this process) and simulated single windows of
KZ, RU and BY over mutual TLS, with clients that present each participant's certificate."""

from __future__ import annotations

import asyncio
import contextlib
import io
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from broker.delivery.worker import WorkerSettings
from broker.http.intake import IntakeSettings
from broker.server import GatewayServer, ServeSettings
from broker.simulator import SingleWindow
from tests.conftest import ROOT
from tests.e2e.nodes import participant_context
from tests.pki_support import Pki

ROUTING = """\
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
routes:
  - name: signals-to-addressee
    match: {{action: "*/P.MSG.*", document: "P.MSG.*"}}
    deliver: addressee
    retry: {{attempts: 5, initial: 50ms, max: 200ms, ttl: 1h}}
  - name: ts01-registry-update-to-all
    match: {{action: "int://CP/P.TS.01/*/P.TS.01.MSG.001"}}
    deliver: ["*-SW"]
    retry: {{attempts: 5, initial: 50ms, max: 200ms, ttl: 1h}}
  - name: processing-result-to-addressee
    match: {{document: R.006}}
    deliver: addressee
    retry: {{attempts: 5, initial: 50ms, max: 200ms, ttl: 1h}}
  - name: ss08-alert-to-all
    match: {{action: "int://CP/P.SS.08/*"}}
    deliver: ["*"]
    retry: {{attempts: 5, initial: 50ms, max: 200ms, ttl: 1h}}
  - name: goods-declaration-to-addressee
    match: {{document: R.055}}
    deliver: addressee
    retry: {{attempts: 100, initial: 50ms, max: 100ms, ttl: 1500ms}}
"""


@dataclass
class Exchange:
    server: GatewayServer
    windows: dict[str, SingleWindow]
    pki: Pki
    folder: Path

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.server.intake_port}"

    def client_context(self, participant: str) -> ssl.SSLContext:
        return participant_context(self.pki, participant)

    async def request(
        self,
        participant: str,
        method: str,
        path: str,
        body: bytes = b"",
        content_type: str = "application/soap+xml",
    ) -> tuple[int, bytes, dict[str, str]]:
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                method,
                self.base + path,
                data=io.BytesIO(body) if body else None,
                ssl=self.client_context(participant),
                headers={"Content-Type": content_type} if body else None,
            ) as response,
        ):
            return response.status, await response.read(), dict(response.headers)

    async def post(
        self, participant: str, body: bytes, content_type: str = "application/soap+xml"
    ) -> tuple[int, bytes]:
        status, data, _ = await self.request(
            participant, "POST", "/v1/messages", body, content_type
        )
        return status, data

    async def admin(self, method: str, path: str) -> tuple[int, bytes]:
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, f"http://127.0.0.1:{self.server.admin_port}{path}") as response,
        ):
            return response.status, await response.read()


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def open_exchange(
    test_pki: Pki,
    folder: Path,
    routing: str = ROUTING,
    xsd: Path = ROOT / "xsd",
    admin_token: str | None = None,
    store: str | None = None,
    lease: float = 60.0,
    ports: dict[str, int] | None = None,
    intake: IntakeSettings | None = None,
    purge_every: float = 86_400.0,
) -> AsyncIterator[Exchange]:
    """Start the three windows (on ``ports``, else free ones) and a gateway on ``routing`` (a
    template of ROUTING's form)."""
    windows = {
        p: SingleWindow(p, test_pki.folder, port=(ports or {}).get(p, 0))
        for p in ("KZ-SW", "RU-SW", "BY-SW")
    }
    for window in windows.values():
        await window.start()
    table = folder / "routing.yaml"
    table.write_text(
        routing.format(
            **{p: w.endpoint for p, w in windows.items()},
            **{
                "KZ-SW-receipts": windows["KZ-SW"].receipts_url,
                "RU-SW-receipts": windows["RU-SW"].receipts_url,
            },
        )
    )
    settings = ServeSettings(
        routing=table,
        certs=test_pki.folder,
        xsd=xsd,
        store=store or f"sqlite:///{folder / 'broker.sqlite3'}",
        listen="127.0.0.1:0",
        admin="127.0.0.1:0",
        worker=WorkerSettings(poll=0.05, timeout=5, lease=lease),
        shutdown_timeout=5,
        admin_token=admin_token,
        intake=intake or IntakeSettings(),
        purge_every=purge_every,
        purge_first=min(60.0, purge_every),
    )
    server = GatewayServer(settings)
    await server.start()
    for window in windows.values():
        window.gateway = f"https://127.0.0.1:{server.intake_port}"
    try:
        yield Exchange(server, windows, test_pki, folder)
    finally:
        await server.stop()
        for window in windows.values():
            await window.stop()


@pytest.fixture
async def exchange(test_pki: Pki, tmp_path: Path) -> AsyncIterator[Exchange]:
    async with open_exchange(test_pki, tmp_path) as opened:
        yield opened
