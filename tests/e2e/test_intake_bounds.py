"""Intake that no participant can monopolise (SPEC §7 busy answers): each bound and timeout
driven against a real listener over TLS, while a legitimate sender keeps being served."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from pathlib import Path

import aiohttp

from broker.http.intake import IntakeSettings
from tests.e2e.conftest import Exchange, open_exchange
from tests.pki_support import Pki, sign_as


def _context(exchange: Exchange, participant: str) -> ssl.SSLContext:
    return exchange.client_context(participant)


async def _open(
    exchange: Exchange, participant: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(
        "127.0.0.1", exchange.server.intake_port, ssl=_context(exchange, participant)
    )


def _headers(length: int) -> bytes:
    return (
        b"POST /v1/messages HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/soap+xml\r\n"
        + f"Content-Length: {length}\r\n\r\n".encode()
    )


async def _status(reader: asyncio.StreamReader, timeout: float) -> int | None:
    """The status of the first answer, or None if the connection closed without one."""
    with contextlib.suppress(TimeoutError, ConnectionError, ssl.SSLError):
        async with asyncio.timeout(timeout):
            line = await reader.readline()
            return int(line.split()[1]) if line.startswith(b"HTTP/") else None
    return None


async def test_slow_body_flood_gets_429_and_408_while_others_are_served(
    test_pki: Pki, tmp_path: Path
) -> None:
    """BY opens 20 uploads that dribble a byte every 0.3 s: beyond its fair share (4) each is
    answered 429 at once; the 4 admitted are cut with 408 once they fall below the minimum
    rate; KZ's messages meanwhile are all accepted."""
    settings = IntakeSettings(per_participant=4, body_grace=1.0, min_rate=1000)
    async with open_exchange(test_pki, tmp_path, intake=settings) as exchange:
        attackers = [await _open(exchange, "BY-SW") for _ in range(20)]
        for _, writer in attackers:
            writer.write(_headers(100_000) + b"<")
            await writer.drain()

        async def dribble() -> None:
            for _ in range(20):
                await asyncio.sleep(0.3)
                for _, writer in attackers:
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        writer.write(b" ")

        dribbling = asyncio.create_task(dribble())
        began = time.monotonic()
        statuses = await asyncio.gather(*(_status(r, 8) for r, _ in attackers))
        legit = []
        for number in range(5):

            def renumber(text: str, n: int = number) -> str:
                return text.replace("1c2e3a4b5c01", f"1c2e3a4b5c{n:02d}")

            edited = sign_as(test_pki, "KZ-SW", edit=renumber)
            legit.append((await exchange.post("KZ-SW", edited))[0])
        dribbling.cancel()
        for _, writer in attackers:
            writer.transport.abort()
        assert statuses.count(429) == 16, statuses
        assert statuses.count(408) == 4, statuses
        assert time.monotonic() - began < 8
        assert legit == [202] * 5


async def test_body_budget_answers_503_before_memory_runs_away(
    test_pki: Pki, tmp_path: Path
) -> None:
    """Two 120 kB uploads in flight fill a 300 kB budget: a third gets 503 + Retry-After at
    once, before it sends its body."""
    settings = IntakeSettings(body_budget=300_000)
    async with open_exchange(test_pki, tmp_path, intake=settings) as exchange:
        held = [await _open(exchange, p) for p in ("KZ-SW", "RU-SW")]
        for _, writer in held:
            writer.write(_headers(120_000) + b"<" * 2000)
            await writer.drain()
        await asyncio.sleep(0.2)
        reader, writer = await _open(exchange, "BY-SW")
        writer.write(_headers(120_000))
        await writer.drain()
        assert await _status(reader, 5) == 503
        headers = await reader.readuntil(b"\r\n\r\n")
        assert b"Retry-After: 1" in headers
        for _, w in [*held, (reader, writer)]:
            w.transport.abort()


async def test_idle_connection_and_stalled_handshake_are_closed(
    test_pki: Pki, tmp_path: Path
) -> None:
    """A TLS connection that sends no request is closed after the keep-alive timeout; a TCP
    connection that never completes its TLS handshake after the handshake timeout."""
    settings = IntakeSettings(keepalive_timeout=1.0, handshake_timeout=1.0)
    async with open_exchange(test_pki, tmp_path, intake=settings) as exchange:
        reader, writer = await _open(exchange, "KZ-SW")
        began = time.monotonic()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            async with asyncio.timeout(5):
                assert await reader.read() == b""
        assert time.monotonic() - began < 4
        writer.transport.abort()
        raw_reader, raw_writer = await asyncio.open_connection(
            "127.0.0.1", exchange.server.intake_port
        )
        began = time.monotonic()
        with contextlib.suppress(ConnectionError):
            async with asyncio.timeout(5):
                await raw_reader.read()
        assert time.monotonic() - began < 4
        raw_writer.transport.abort()


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """True if the peer closes (or resets) the connection within ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(4096):
                pass
    except TimeoutError:
        return False
    except (ConnectionError, ssl.SSLError):
        pass
    return True


async def _refused_at_accept(exchange: Exchange) -> bool:
    """A new plain connection from 127.0.0.1 is closed at once (nothing is read from it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", exchange.server.intake_port)
    try:
        return await _closed_within(reader, 2)
    finally:
        writer.transport.abort()


async def _post_from(exchange: Exchange, source: str, body: bytes) -> int:
    """POST as KZ-SW from the loopback address ``source`` (127.0.0.x)."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(
            f"{exchange.base}/v1/messages",
            data=body,
            ssl=exchange.client_context("KZ-SW"),
            headers={"Content-Type": "application/soap+xml"},
        ) as response,
    ):
        return response.status


async def test_header_dribble_is_closed_after_the_header_timeout(
    test_pki: Pki, tmp_path: Path
) -> None:
    """A client that sends its request head a byte at a time is cut after the header timeout
    (1 s here), long before the keep-alive timeout; KZ is served meanwhile."""
    settings = IntakeSettings(header_timeout=1.0, keepalive_timeout=60.0)
    async with open_exchange(test_pki, tmp_path, intake=settings) as exchange:
        reader, writer = await _open(exchange, "BY-SW")
        began = time.monotonic()

        async def dribble() -> None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                for (
                    byte
                ) in b"POST /v1/messages HTTP/1.1\r\nHost: gateway\r\nX-Slow: aaaaaaaaaaaaaaaa":
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.1)

        task = asyncio.create_task(dribble())
        status, _ = await exchange.post("KZ-SW", sign_as(test_pki, "KZ-SW"))
        assert status == 202
        assert await _closed_within(reader, 5)
        assert 0.9 < time.monotonic() - began < 4
        task.cancel()
        writer.transport.abort()


async def test_connections_beyond_the_cap_are_closed_at_once(test_pki: Pki, tmp_path: Path) -> None:
    """With 4 connections open (the cap), a fifth is closed at accept, counted in the metrics;
    once one closes, a sender is served again."""
    settings = IntakeSettings(max_connections=4, per_address=4)
    async with open_exchange(test_pki, tmp_path, intake=settings) as exchange:
        held = [await _open(exchange, "BY-SW") for _ in range(4)]
        assert await _refused_at_accept(exchange)
        _, metrics = await exchange.admin("GET", "/metrics")
        assert b'broker_connections_refused_total{listener="intake"} 1.0' in metrics
        assert b'broker_connections_open{listener="intake"} 4.0' in metrics
        _, closing = held.pop()
        closing.close()
        async with asyncio.timeout(5):
            while b'broker_connections_open{listener="intake"} 3.0' not in metrics:
                await asyncio.sleep(0.05)
                _, metrics = await exchange.admin("GET", "/metrics")
        status, _ = await exchange.post("KZ-SW", sign_as(test_pki, "KZ-SW"))
        assert status == 202
        for _, writer in held:
            writer.transport.abort()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await closing.wait_closed()


async def test_one_address_cannot_take_every_connection(test_pki: Pki, tmp_path: Path) -> None:
    """127.0.0.1 holds its 3 connections (the cap per address); its fourth is closed, while a
    sender from 127.0.0.2 is served."""
    settings = IntakeSettings(max_connections=100, per_address=3)
    async with open_exchange(test_pki, tmp_path, intake=settings) as exchange:
        held = [await _open(exchange, "BY-SW") for _ in range(3)]
        assert await _refused_at_accept(exchange)
        assert await _post_from(exchange, "127.0.0.2", sign_as(test_pki, "KZ-SW")) == 202
        for _, writer in held:
            writer.transport.abort()
