"""Gateway processes for the crash and cluster tests: real `broker serve` subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import resource
import socket
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from broker.send import client_context
from tests.conftest import ROOT
from tests.pki_support import Pki, sign_as


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: each socket stays bound until all are chosen, so two
    calls cannot be handed the same port (one run in a few hundred, they were)."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            sock = held.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port() -> int:
    return free_ports(1)[0]


@dataclass
class Node:
    process: asyncio.subprocess.Process
    port: int
    admin: int


async def start_node(
    folder: Path,
    pki: Pki,
    store: str,
    *,
    name: str = "node",
    port: int | None = None,
    admin: int | None = None,
    lease: float = 2.0,
    extra: Sequence[str] = (),
    open_files: int | None = None,
) -> Node:
    """Start `broker serve` (with ``extra`` options, and at most ``open_files`` file
    descriptors when given, as `ulimit -n` would) and wait until /readyz says ready."""
    chosen = free_ports(2)
    port = port or chosen[0]
    admin = admin or next(p for p in chosen if p != port)
    with open(folder / f"{name}.log", "ab") as log:  # the child keeps its own copy
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "broker.cli",
            "serve",
            "--routing",
            str(folder / "routing.yaml"),
            "--certs",
            str(pki.folder),
            "--xsd",
            str(ROOT / "xsd"),
            "--store",
            store,
            "--listen",
            f"127.0.0.1:{port}",
            "--admin",
            f"127.0.0.1:{admin}",
            "--lease",
            str(lease),
            *extra,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
            preexec_fn=None if open_files is None else functools.partial(_limit_files, open_files),
        )
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            try:
                async with session.get(f"http://127.0.0.1:{admin}/readyz") as response:
                    if response.status == 200:
                        return Node(process, port, admin)
            except aiohttp.ClientError:
                pass
            if process.returncode is not None:
                break
            await asyncio.sleep(0.05)
    raise AssertionError(f"{name} did not become ready; see {folder / f'{name}.log'}")


def _limit_files(count: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))


def participant_context(pki: Pki, participant: str) -> ssl.SSLContext:
    identity = pki.folder / "participants" / participant
    return client_context(
        identity / "key.pem", identity / "cert.pem", pki.folder / "gateway" / "ca.pem"
    )


async def post(
    session: aiohttp.ClientSession, port: int, body: bytes, context: ssl.SSLContext
) -> tuple[int, bytes]:
    """POST a message; (0, b"") when the node cannot be reached."""
    try:
        async with session.post(
            f"https://127.0.0.1:{port}/v1/messages",
            data=io.BytesIO(body),
            ssl=context,
            headers={"Content-Type": "application/soap+xml"},
        ) as response:
            return response.status, await response.read()
    except (aiohttp.ClientError, OSError):
        return 0, b""


MESSAGE_ID = "6a3f8ea1-2c98-4d31-b07f-4f5a6d7e8f04"

ROUTING = """\
version: 1
gateway: {{id: EEC-GW}}
participants:
  KZ-SW: {{country: KZ, addresses: ["EAEU://KZ/*"], endpoint: "https://127.0.0.1:1/none"}}
  RU-SW: {{country: RU, addresses: ["EAEU://RU/*"], endpoint: "{endpoint}"}}
routes:
  - name: goods-declaration-to-addressee
    match: {{document: R.055}}
    deliver: addressee
    retry: {{attempts: 50, initial: 50ms, max: 500ms, ttl: 1h}}
"""


def signed_declarations(pki: Pki, count: int) -> dict[str, bytes]:
    """``count`` goods declarations from KZ-SW, each with its own MessageID, signed."""
    ids = [f"{i:08x}-2c98-4d31-b07f-4f5a6d7e8f04" for i in range(count)]
    return {
        i: sign_as(
            pki,
            "KZ-SW",
            "valid-goods-declaration-kz-to-ru.xml",
            edit=functools.partial(_with_id, message_id=i),
        )
        for i in ids
    }


def _with_id(text: str, message_id: str) -> str:
    return text.replace(MESSAGE_ID, message_id)


def delivered_ids(bodies: list[bytes]) -> list[str]:
    """The MessageIDs (bare uuids) of forwarded envelopes, in arrival order."""
    import re

    found = []
    for body in bodies:
        match = re.search(rb"<wsa:MessageID[^>]*>urn:uuid:([0-9a-f-]+)<", body)
        assert match is not None
        found.append(match.group(1).decode())
    return found


class TcpProxy:
    """A TCP proxy (to PostgreSQL) that a test can cut."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.pipes: set[asyncio.StreamWriter] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.pipes |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def start(self) -> None:
        self.server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.pipes:
            writer.transport.abort()
        self.pipes.clear()
        await self.server.wait_closed()
