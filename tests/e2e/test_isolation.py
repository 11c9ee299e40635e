"""One destination never stalls the others (SPEC §7: each destination succeeds or fails on its
own): a black-hole destination — it accepts TCP and never answers — beside a healthy one."""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ROUTING, open_exchange, wait_for
from tests.pki_support import Pki, sign_as

MESSAGES = 100


@pytest.fixture
async def black_hole() -> AsyncIterator[int]:
    """A TCP server that accepts every connection and never sends a byte."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.transport.abort()
        server.close()
        await server.wait_closed()


def _metric(text: str, name: str) -> float | None:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


async def test_black_hole_does_not_stall_a_healthy_destination(
    test_pki: Pki, tmp_path: Path, black_hole: int
) -> None:
    """100 register updates fan out to RU (a black hole) and BY (healthy): BY's p95 from
    acceptance to arrival stays under 5 s while RU holds all 100, its breaker opens and its
    backlog and breaker state show in /metrics."""
    routing = ROUTING.replace(
        "    endpoint: {RU-SW}\n", f"    endpoint: https://127.0.0.1:{black_hole}/eaeu/inbox\n"
    )
    async with open_exchange(test_pki, tmp_path, routing) as exchange:
        accepted: dict[str, float] = {}

        async def send(number: int) -> None:
            message_id = f"3f0c5b7e-9f65-4a0e-8d4c-{number:012d}"
            body = sign_as(
                test_pki,
                "KZ-SW",
                edit=lambda t: t.replace("3f0c5b7e-9f65-4a0e-8d4c-1c2e3a4b5c01", message_id),
            )
            status, _ = await exchange.post("KZ-SW", body)
            assert status == 202
            accepted[message_id] = time.time()

        for start in range(0, MESSAGES, 10):
            await asyncio.gather(*(send(n) for n in range(start, start + 10)))
        by = exchange.windows["BY-SW"]
        await wait_for(lambda: len(by.inbox) == MESSAGES, timeout=60)
        delays = []
        for item in by.inbox:
            message_id = next(m for m in accepted if m.encode() in item.body)
            delays.append(item.at - accepted[message_id])
        p95 = statistics.quantiles(delays, n=20)[-1]
        assert p95 < 5.0, f"BY's p95 acceptance→arrival {p95:.2f} s"
        backlog = await exchange.server.gateway.store.pending_by_destination()
        assert backlog["RU-SW"] == MESSAGES  # every one still held by RU's queue, none lost
        await wait_for(lambda: exchange.server.worker.health.state("RU-SW", time.time()) == "open")
        text = (await exchange.admin("GET", "/metrics"))[1].decode()
        assert _metric(text, 'broker_destination_breaker{destination="RU-SW"}') == 1.0
        assert (_metric(text, 'broker_destination_in_flight{destination="RU-SW"}') or 0) <= 8
