"""Several gateway nodes on one PostgreSQL database (SPEC §9): leases, take-over, losing the
database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from broker.simulator import SingleWindow
from broker.store.postgres import drop_schema
from tests.e2e.conftest import wait_for
from tests.e2e.nodes import (
    ROUTING,
    Node,
    TcpProxy,
    delivered_ids,
    participant_context,
    post,
    signed_declarations,
    start_node,
)
from tests.pki_support import Pki
from tests.store.conftest import new_schema, pg_dsn_or_skip

pytestmark = pytest.mark.postgres


@dataclass
class Cluster:
    folder: Path
    pki: Pki
    dsn: str
    """Gateway DSN (a fresh schema, application_name broker-…)."""
    admin_dsn: str
    schema: str
    window: SingleWindow


@pytest.fixture
async def cluster(test_pki: Pki, tmp_path: Path) -> AsyncIterator[Cluster]:
    base = pg_dsn_or_skip()
    schema, dsn = await new_schema(base)
    window = SingleWindow("RU-SW", test_pki.folder, verify=False)
    await window.start()
    (tmp_path / "routing.yaml").write_text(ROUTING.format(endpoint=window.endpoint))
    try:
        yield Cluster(
            tmp_path, test_pki, f"{dsn}&application_name=broker-node", base, schema, window
        )
    finally:
        await window.stop()
        await drop_schema(base, schema)


async def _stop(*nodes: Node) -> None:
    for node in nodes:
        if node.process.returncode is None:
            node.process.send_signal(signal.SIGTERM)
    for node in nodes:
        with contextlib.suppress(ProcessLookupError):
            await asyncio.wait_for(node.process.wait(), 30)


async def _committed(cluster: Cluster) -> set[str]:
    conn = await asyncpg.connect(cluster.admin_dsn)
    try:
        rows = await conn.fetch(f"SELECT message_id FROM {cluster.schema}.messages")
    finally:
        await conn.close()
    return {r[0].removeprefix("urn:uuid:") for r in rows}


async def test_two_nodes_share_the_load_and_deliver_each_message_once(cluster: Cluster) -> None:
    """Load split over two nodes: every message delivered exactly once; a resubmission to the
    other node gets the same Accepted receipt."""
    messages = signed_declarations(cluster.pki, 60)
    one = await start_node(cluster.folder, cluster.pki, cluster.dsn, name="one")
    two = await start_node(cluster.folder, cluster.pki, cluster.dsn, name="two")
    context = participant_context(cluster.pki, "KZ-SW")
    try:
        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(
                *(
                    post(session, (one, two)[n % 2].port, body, context)
                    for n, body in enumerate(messages.values())
                )
            )
            assert [status for status, _ in results] == [202] * len(messages)
            await wait_for(lambda: len(cluster.window.inbox) >= len(messages), timeout=30)
            await asyncio.sleep(1)  # any duplicate delivery would arrive by now
            first = next(iter(messages.values()))
            again = await post(session, two.port, first, context)
            assert again == (200, results[0][1])
    finally:
        await _stop(one, two)
    ids = delivered_ids([m.body for m in cluster.window.inbox])
    assert sorted(ids) == sorted(messages)  # each exactly once


async def test_killed_node_jobs_are_finished_by_the_other(cluster: Cluster) -> None:
    """kill -9 one node mid-run: nothing it accepted is lost; the other delivers its jobs."""
    cluster.window.fail_next = [503] * 20  # keep jobs pending while the node dies
    messages = signed_declarations(cluster.pki, 40)
    one = await start_node(cluster.folder, cluster.pki, cluster.dsn, name="one")
    two = await start_node(cluster.folder, cluster.pki, cluster.dsn, name="two")
    context = participant_context(cluster.pki, "KZ-SW")
    accepted: set[str] = set()
    try:
        async with aiohttp.ClientSession() as session:

            async def send(n: int, message_id: str, body: bytes) -> None:
                status, _ = await post(session, (one, two)[n % 2].port, body, context)
                if status == 202:
                    accepted.add(message_id)

            tasks = [
                asyncio.create_task(send(n, i, b)) for n, (i, b) in enumerate(messages.items())
            ]
            await wait_for(lambda: len(accepted) >= 10, timeout=30)
            os.kill(one.process.pid, signal.SIGKILL)
            await one.process.wait()
            await asyncio.gather(*tasks)
        await wait_for(
            lambda: accepted <= set(delivered_ids([m.body for m in cluster.window.inbox])),
            timeout=60,
        )
    finally:
        await _stop(one, two)
    assert accepted <= await _committed(cluster)
    assert set(delivered_ids([m.body for m in cluster.window.inbox])) <= await _committed(cluster)


async def test_terminated_database_connections_lose_nothing(cluster: Cluster) -> None:
    """pg_terminate_backend mid-load: every Accepted message is committed and delivered;
    refusals are 503 (never an Accepted receipt without a commit)."""
    messages = signed_declarations(cluster.pki, 60)
    node = await start_node(cluster.folder, cluster.pki, cluster.dsn, name="node")
    context = participant_context(cluster.pki, "KZ-SW")
    accepted: set[str] = set()
    statuses: list[int] = []
    stop = asyncio.Event()

    async def terminate() -> None:
        conn = await asyncpg.connect(cluster.admin_dsn)
        try:
            while not stop.is_set():
                await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'broker-node'"
                )
                await asyncio.sleep(0.15)
        finally:
            await conn.close()

    killer = asyncio.create_task(terminate())
    try:
        async with aiohttp.ClientSession() as session:
            semaphore = asyncio.Semaphore(8)

            async def send(message_id: str, body: bytes) -> None:
                async with semaphore:
                    status, _ = await post(session, node.port, body, context)
                statuses.append(status)
                if status == 202:
                    accepted.add(message_id)

            await asyncio.gather(*(send(i, b) for i, b in messages.items()))
        stop.set()
        await killer
        assert set(statuses) <= {202, 503}, statuses
        assert accepted
        await wait_for(
            lambda: accepted <= set(delivered_ids([m.body for m in cluster.window.inbox])),
            timeout=60,
        )
    finally:
        stop.set()
        await _stop(node)
    assert accepted <= await _committed(cluster)
    # Every loss was handled as one (503, or a claim tried again): no request failed with an
    # unhandled error. (asyncpg's own words for a connection ended mid-COMMIT may still appear
    # in a logged cause; what matters is that nothing escaped.)
    log = (cluster.folder / "node.log").read_text()
    assert "Error handling request" not in log
    assert "Unhandled exception" not in log


async def test_losing_the_database_gives_503_and_recovery(cluster: Cluster) -> None:
    """Database unreachable: intake 503 with Retry-After and /readyz false; when it returns,
    the node recovers by itself."""
    from urllib.parse import urlsplit

    target = urlsplit(cluster.admin_dsn)
    proxy = TcpProxy((target.hostname or "127.0.0.1", target.port or 5432))
    await proxy.start()
    via_proxy = cluster.dsn.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{proxy.port}")
    messages = list(signed_declarations(cluster.pki, 3).values())
    node = await start_node(cluster.folder, cluster.pki, via_proxy, name="node")
    context = participant_context(cluster.pki, "KZ-SW")
    try:
        async with aiohttp.ClientSession() as session:
            assert (await post(session, node.port, messages[0], context))[0] == 202
            await proxy.cut()
            async with session.post(
                f"https://127.0.0.1:{node.port}/v1/messages",
                data=messages[1],
                ssl=context,
                headers={"Content-Type": "application/soap+xml"},
            ) as response:
                assert response.status == 503
                assert response.headers["Retry-After"]
            async with session.get(f"http://127.0.0.1:{node.admin}/readyz") as response:
                assert response.status == 503
            await proxy.start()

            async def ready() -> bool:
                async with session.get(f"http://127.0.0.1:{node.admin}/readyz") as response:
                    return response.status == 200

            for _ in range(100):
                if await ready():
                    break
                await asyncio.sleep(0.1)
            assert await ready()
            assert (await post(session, node.port, messages[1], context))[0] == 202
            await wait_for(lambda: len(cluster.window.inbox) >= 2, timeout=30)
    finally:
        await _stop(node)
        await proxy.cut()
