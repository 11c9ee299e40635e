"""Intake that no participant can monopolise (SPEC §7 busy answers): each bound and timeout
driven against a real listener over TLS, while a legitimate sender keeps being served."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from pathlib import Path

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
