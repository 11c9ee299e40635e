"""`broker report`: the exchange matrix of real traffic, as CSV (checked against the store)
and as SVG."""

from __future__ import annotations

import asyncio
import csv
import io

from lxml import etree

from tests.e2e.conftest import Exchange, wait_for
from tests.e2e.nodes import signed_declarations
from tests.test_cli_validate import broker


async def test_report_counts_real_traffic(exchange: Exchange) -> None:
    for data in signed_declarations(exchange.pki, 3).values():
        assert (await exchange.post("KZ-SW", data))[0] == 202
    await wait_for(lambda: len(exchange.windows["RU-SW"].inbox) == 3)
    store = f"sqlite:///{exchange.folder / 'broker.sqlite3'}"

    async def delivered() -> bool:
        return (await exchange.server.gateway.store.counts()).delivered == 3

    async with asyncio.timeout(10):
        while not await delivered():
            await asyncio.sleep(0.05)
    result = await asyncio.to_thread(broker, "report", "--store", store)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows[0].keys() == {
        "sender", "destination", "process", "messages", "delivered", "failed", "pending",
        "p50_ms", "p95_ms",
    }  # fmt: skip
    (row,) = rows
    assert (row["sender"], row["destination"], row["process"]) == ("KZ-SW", "RU-SW", "P.CC.01")
    assert (row["messages"], row["delivered"], row["failed"], row["pending"]) == (
        "3", "3", "0", "0",
    )  # fmt: skip
    assert 0 <= float(row["p50_ms"]) <= float(row["p95_ms"]) < 10_000
    filtered = await asyncio.to_thread(broker, "report", "--store", store, "--process", "P.TS.01")
    assert filtered.stdout.strip().count("\n") == 0  # the header only
    svg = await asyncio.to_thread(broker, "report", "--store", store, "--format", "svg")
    root = etree.fromstring(svg.stdout.encode())
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "3 msg, 100% delivered" in texts
    assert any(t and t.startswith("p50 ") for t in texts)
