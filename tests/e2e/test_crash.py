"""kill -9 under load: nothing accepted is lost, nothing unaccepted is forwarded (SPEC §9)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from pathlib import Path

import aiohttp

from broker.simulator import SingleWindow
from tests.e2e.conftest import wait_for
from tests.e2e.nodes import (
    ROUTING,
    delivered_ids,
    free_ports,
    participant_context,
    post,
    signed_declarations,
    start_node,
)
from tests.pki_support import Pki

MESSAGES = 120


async def test_kill_9_under_load_loses_nothing_accepted(test_pki: Pki, tmp_path: Path) -> None:
    """Every message that got an Accepted receipt is delivered after a kill -9 and restart;
    nothing that was not committed is forwarded; duplicates only with the same MessageID."""
    window = SingleWindow("RU-SW", test_pki.folder, verify=False)
    await window.start()
    (tmp_path / "routing.yaml").write_text(ROUTING.format(endpoint=window.endpoint))
    messages = signed_declarations(test_pki, MESSAGES)
    store = f"sqlite:///{tmp_path / 'broker.sqlite3'}"
    port, admin = free_ports(2)
    node = await start_node(tmp_path, test_pki, store, port=port, admin=admin)
    context = participant_context(test_pki, "KZ-SW")
    accepted: set[str] = set()

    async def submit(session: aiohttp.ClientSession, message_id: str, body: bytes) -> None:
        status, _ = await post(session, port, body, context)
        if status == 202:  # no receipt (the node died under us): not accepted, as we know it
            accepted.add(message_id)

    async with aiohttp.ClientSession() as session:
        pending = [asyncio.create_task(submit(session, i, b)) for i, b in messages.items()]
        await wait_for(lambda: len(accepted) >= MESSAGES // 3, timeout=60)
        os.kill(node.process.pid, signal.SIGKILL)  # mid-load, deliveries and intakes in flight
        await node.process.wait()
        await asyncio.gather(*pending)
    assert 0 < len(accepted) < MESSAGES
    restarted = await start_node(
        tmp_path, test_pki, store, name="restarted", port=port, admin=admin
    )
    try:
        await wait_for(
            lambda: accepted <= set(delivered_ids([m.body for m in window.inbox])), timeout=60
        )
    finally:
        restarted.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(restarted.process.wait(), 30) == 0  # clean on SIGTERM
        await window.stop()
    conn = sqlite3.connect(tmp_path / "broker.sqlite3")
    committed = {
        row[0].removeprefix("urn:uuid:") for row in conn.execute("SELECT message_id FROM messages")
    }
    conn.close()
    delivered = delivered_ids([m.body for m in window.inbox])
    assert accepted <= committed
    assert set(delivered) <= committed  # nothing forwarded that was not accepted and committed
    assert len(delivered) >= len(set(delivered))  # at-least-once: repeats share a MessageID
