"""An honest 503 (SPEC §7): when the connection to PostgreSQL is lost while a message's
transaction commits, the gateway cannot know whether it was stored. It must not say "nothing
was stored"; an identical resubmission must then return the original receipt."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from broker.receipts import verify_receipt
from broker.store.postgres import create_schema, drop_schema
from tests.e2e.conftest import open_exchange
from tests.e2e.nodes import TcpProxy
from tests.pki_support import Pki, sign_as
from tests.store.conftest import pg_dsn_or_skip

pytestmark = pytest.mark.postgres


class CommitCutter(TcpProxy):
    """Once armed, lets the COMMIT of a transaction that inserted a message reach the server
    and then cuts that connection before the answer comes back."""

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(target)
        self.armed = False
        self.cuts = 0
        self.dropping: set[asyncio.StreamWriter] = set()
        """Client connections whose answers from the server are no longer passed on."""

    async def _up(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: asyncio.StreamWriter,
    ) -> None:
        inserting = False
        try:
            while data := await reader.read(65536):
                inserting = inserting or b"INSERT INTO messages" in data
                writer.write(data)
                await writer.drain()
                if self.armed and inserting and b"COMMIT" in data:
                    self.armed = False
                    self.cuts += 1
                    # The server commits; its answer is dropped, and the connection cut.
                    self.dropping.add(client)
                    await asyncio.sleep(0.2)
                    client.transport.abort()
                    writer.transport.abort()
                    return
                if b"COMMIT" in data or b"ROLLBACK" in data:
                    inserting = False
        except (ConnectionError, OSError):
            pass

    async def _down(self, reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if client in self.dropping:
                    continue
                client.write(data)
                await client.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            client.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.pipes |= {writer, up_writer}
        await asyncio.gather(self._up(reader, up_writer, writer), self._down(up_reader, writer))


@pytest.fixture
async def via_cutter() -> AsyncIterator[tuple[str, CommitCutter, str]]:
    dsn = pg_dsn_or_skip()
    name, schema_dsn = await create_schema(dsn, "lost_commit")
    target = urlsplit(dsn)
    cutter = CommitCutter((target.hostname or "127.0.0.1", target.port or 5432))
    await cutter.start()
    proxied = schema_dsn.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{cutter.port}")
    try:
        yield proxied, cutter, schema_dsn
    finally:
        await cutter.cut()
        await drop_schema(dsn, name)


async def test_lost_commit_says_outcome_unknown_and_resubmission_gets_the_receipt(
    test_pki: Pki, tmp_path: Path, via_cutter: tuple[str, CommitCutter, str]
) -> None:
    """503 STORE_OUTCOME_UNKNOWN (not "nothing was stored") with Retry-After; the identical
    resubmission gets 200 and the original Accepted receipt; one message is stored."""
    store, cutter, _ = via_cutter
    message = sign_as(test_pki, "KZ-SW")
    async with open_exchange(test_pki, tmp_path, store=store) as exchange:
        cutter.armed = True
        status, headers_body = await exchange.post("KZ-SW", message)
        assert cutter.cuts == 1
        assert status == 503, headers_body
        problem = json.loads(headers_body)
        assert problem["code"] == "STORE_OUTCOME_UNKNOWN"
        assert "nothing was stored" not in problem["message"]
        assert "identical resubmission is safe" in problem["message"]
        status, body = await exchange.post("KZ-SW", message)
        assert status == 200, body
        receipt = verify_receipt(body, test_pki.gateway().ca).receipt
        assert receipt.kind == "Accepted"
        view = await exchange.server.gateway.store.message(receipt.message_id or "", "KZ-SW")
        assert view is not None
        assert view.track_id == receipt.track_id
