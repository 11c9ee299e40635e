"""A plain-TCP connection flood against a real `broker serve` that may open only 256 files
(`ulimit -n 256`): the gateway neither runs out of descriptors nor fills its log, and keeps
serving a legitimate sender."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from tests.e2e.nodes import ROUTING, Node, participant_context, start_node
from tests.pki_support import Pki, sign_as

OPEN_FILES = 256
FLOOD = 600


@contextlib.asynccontextmanager
async def _gateway(folder: Path, pki: Pki, *extra: str) -> AsyncIterator[Node]:
    (folder / "routing.yaml").write_text(ROUTING.format(endpoint="https://127.0.0.1:1/none"))
    node = await start_node(
        folder,
        pki,
        f"sqlite:///{folder / 'broker.sqlite3'}",
        extra=extra,
        open_files=OPEN_FILES,
    )
    try:
        yield node
    finally:
        node.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(node.process.wait(), 30)


@contextlib.asynccontextmanager
async def _flood(port: int) -> AsyncIterator[list[asyncio.StreamWriter]]:
    """FLOOD connections from 127.0.0.1 that never send a byte, held open."""

    async def one() -> asyncio.StreamWriter | None:
        try:
            async with asyncio.timeout(1):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                return writer
        except (TimeoutError, OSError):
            return None  # the listen queue is full: the SYN waits; fine for a flood

    writers = [w for w in await asyncio.gather(*(one() for _ in range(FLOOD))) if w is not None]
    try:
        yield writers
    finally:
        for writer in writers:
            writer.transport.abort()


async def _legitimate_send(pki: Pki, port: int) -> int:
    """KZ-SW sends a signed message from 127.0.0.2, retrying a refused or reset connection
    (what a member state's client does) for up to 20 s."""
    body = sign_as(pki, "KZ-SW", "valid-goods-declaration-kz-to-ru.xml")
    async with asyncio.timeout(20):
        while True:
            connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
            try:
                async with (
                    aiohttp.ClientSession(connector=connector) as session,
                    session.post(
                        f"https://127.0.0.1:{port}/v1/messages",
                        data=body,
                        ssl=participant_context(pki, "KZ-SW"),
                        headers={"Content-Type": "application/soap+xml"},
                    ) as response,
                ):
                    return response.status
            except aiohttp.ClientError:
                await asyncio.sleep(0.2)


def _log_lines(folder: Path, text: str) -> int:
    return sum(text in line for line in (folder / "node.log").read_text().splitlines())


async def test_flood_is_capped_and_another_address_is_served(test_pki: Pki, tmp_path: Path) -> None:
    """Default caps under 256 descriptors (128 connections, 32 per address): the flood's
    connections beyond its share are closed at accept, a sender from another address is
    accepted at once, and the refusals take a line or two of log, not thousands."""
    async with _gateway(tmp_path, test_pki, "--handshake-timeout", "2") as node:
        async with _flood(node.port) as writers:
            assert len(writers) > 200
            assert await _legitimate_send(test_pki, node.port) == 202
        assert node.process.returncode is None
    assert 1 <= _log_lines(tmp_path, "connection refused") <= 3
    assert _log_lines(tmp_path, "out of system resource") == 0


async def test_out_of_descriptors_recovers_without_flooding_the_log(
    test_pki: Pki, tmp_path: Path
) -> None:
    """Caps set above the descriptor limit: accept() fails with EMFILE. Accepting pauses a
    moment at each failure and says so once per 10 s; handshakes that never come time out,
    descriptors come back, and the legitimate sender gets through during the flood."""
    caps = ("--max-connections", "5000", "--max-connections-per-address", "5000")
    async with _gateway(tmp_path, test_pki, *caps, "--handshake-timeout", "1") as node:
        async with _flood(node.port):
            assert await _legitimate_send(test_pki, node.port) == 202
        assert node.process.returncode is None
    assert 1 <= _log_lines(tmp_path, "accept() failed") <= 3
    assert _log_lines(tmp_path, "out of system resource") == 0
