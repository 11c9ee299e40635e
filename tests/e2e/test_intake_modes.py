"""Intake modes the main exchange does not exercise: busy (503, nothing stored) and plain HTTP
for local development."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from broker.http.intake import IntakeSettings
from broker.server import GatewayServer, ServeSettings
from tests.conftest import ROOT
from tests.e2e.conftest import Exchange
from tests.pki_support import sign_as


async def _server(
    exchange: Exchange,
    tmp_path: Path,
    *,
    insecure_http: bool = False,
    intake: IntakeSettings | None = None,
) -> GatewayServer:
    server = GatewayServer(
        ServeSettings(
            routing=exchange.server.gateway.config.sources.routing,
            certs=exchange.pki.folder,
            xsd=ROOT / "xsd",
            store=f"sqlite:///{tmp_path / 'mode.sqlite3'}",
            listen="127.0.0.1:0",
            admin="127.0.0.1:0",
            insecure_http=insecure_http,
            intake=intake or IntakeSettings(),
        )
    )
    await server.start()
    return server


@pytest.fixture
async def busy(exchange: Exchange, tmp_path: Path) -> AsyncIterator[GatewayServer]:
    server = await _server(exchange, tmp_path, intake=IntakeSettings(max_in_flight=0))
    yield server
    await server.stop()


async def test_busy_gateway_answers_503_with_retry_after_and_stores_nothing(
    exchange: Exchange, busy: GatewayServer
) -> None:
    """Past the in-flight bound: 503 + Retry-After, no receipt, nothing in the store."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"https://127.0.0.1:{busy.intake_port}/v1/messages",
            data=io.BytesIO(sign_as(exchange.pki, "KZ-SW")),
            ssl=exchange.client_context("KZ-SW"),
            headers={"Content-Type": "application/soap+xml"},
        ) as response,
    ):
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        assert json.loads(await response.read())["code"] == "BUSY"
    counts = await busy.gateway.store.counts()
    assert (counts.pending, counts.delivered, counts.failed) == (0, 0, 0)
    assert (
        await busy.gateway.store.message("urn:uuid:3f0c5b7e-9f65-4a0e-8d4c-1c2e3a4b5c01", None)
        is None
    )


async def test_insecure_http_takes_the_signer_as_sender(exchange: Exchange, tmp_path: Path) -> None:
    """--insecure-http: plain HTTP, no client certificate; the signer is the sender, and the
    read API takes the caller from X-Broker-Participant."""
    server = await _server(exchange, tmp_path, insecure_http=True)
    base = f"http://127.0.0.1:{server.intake_port}"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{base}/v1/messages",
                data=io.BytesIO(sign_as(exchange.pki, "KZ-SW")),
                headers={"Content-Type": "application/soap+xml"},
            ) as r:
                assert r.status == 202
            message = "/v1/messages/3f0c5b7e-9f65-4a0e-8d4c-1c2e3a4b5c01"
            async with session.get(base + message, headers={"X-Broker-Participant": "KZ-SW"}) as r:
                assert r.status == 200
                assert json.loads(await r.read())["sender"] == "KZ-SW"
            async with session.get(base + message, headers={"X-Broker-Participant": "RU-SW"}) as r:
                assert r.status == 404
    finally:
        await server.stop()
