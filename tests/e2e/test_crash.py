"""kill -9 under load: nothing accepted is lost, nothing unaccepted is forwarded (SPEC §9)."""

from __future__ import annotations

import asyncio
import functools
import io
import os
import re
import signal
import socket
import sqlite3
import sys
from pathlib import Path

import aiohttp

from broker.simulator import SingleWindow
from tests.conftest import ROOT
from tests.e2e.conftest import wait_for
from tests.pki_support import Pki, sign_as

MESSAGES = 120
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


def _with_id(text: str, message_id: str) -> str:
    return text.replace(MESSAGE_ID, message_id)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _start(folder: Path, pki: Pki, port: int, admin: int) -> asyncio.subprocess.Process:
    with open(folder / "serve.log", "ab") as log:  # the child keeps its own copy
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
            f"sqlite:///{folder / 'broker.sqlite3'}",
            "--listen",
            f"127.0.0.1:{port}",
            "--admin",
            f"127.0.0.1:{admin}",
            "--lease",
            "2",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
        )
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(f"http://127.0.0.1:{admin}/readyz") as response:
                    if response.status == 200:
                        return process
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("the gateway did not become ready")


async def test_kill_9_under_load_loses_nothing_accepted(test_pki: Pki, tmp_path: Path) -> None:
    """Every message that got an Accepted receipt is delivered after a kill -9 and restart;
    nothing that was not committed is forwarded; duplicates only with the same MessageID."""
    window = SingleWindow("RU-SW", test_pki.folder, verify=False)
    await window.start()
    (tmp_path / "routing.yaml").write_text(ROUTING.format(endpoint=window.endpoint))
    # Pre-signed messages, each with its own MessageID.
    ids = [f"{i:08x}-2c98-4d31-b07f-4f5a6d7e8f04" for i in range(MESSAGES)]
    bodies = [
        sign_as(
            test_pki,
            "KZ-SW",
            "valid-goods-declaration-kz-to-ru.xml",
            edit=functools.partial(_with_id, message_id=i),
        )
        for i in ids
    ]
    port, admin = _free_port(), _free_port()
    process = await _start(tmp_path, test_pki, port, admin)
    identity = test_pki.folder / "participants" / "KZ-SW"
    import ssl

    context = ssl.create_default_context(cafile=str(test_pki.folder / "gateway" / "ca.pem"))
    context.load_cert_chain(identity / "cert.pem", identity / "key.pem")
    accepted: set[str] = set()
    sent = 0

    async def submit(session: aiohttp.ClientSession, message_id: str, body: bytes) -> None:
        nonlocal sent
        sent += 1
        try:
            async with session.post(
                f"https://127.0.0.1:{port}/v1/messages",
                data=io.BytesIO(body),
                ssl=context,
                headers={"Content-Type": "application/soap+xml"},
            ) as r:
                if r.status == 202:
                    await r.read()
                    accepted.add(message_id)
        except (aiohttp.ClientError, OSError):
            pass  # the gateway died under us: no receipt, so not accepted as far as we know

    async with aiohttp.ClientSession() as session:
        pending = [
            asyncio.create_task(submit(session, i, b)) for i, b in zip(ids, bodies, strict=True)
        ]
        await wait_for(lambda: len(accepted) >= MESSAGES // 3, timeout=60)
        os.kill(process.pid, signal.SIGKILL)  # mid-load, deliveries and intakes in flight
        await process.wait()
        await asyncio.gather(*pending)
    assert 0 < len(accepted) < MESSAGES
    restarted = await _start(tmp_path, test_pki, port, admin)
    try:

        def delivered() -> set[str]:
            found = set()
            for item in window.inbox:
                match = re.search(rb"<wsa:MessageID[^>]*>urn:uuid:([0-9a-f-]+)<", item.body)
                assert match is not None
                found.add(match.group(1).decode())
            return found

        await wait_for(lambda: accepted <= delivered(), timeout=60)
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(restarted.wait(), 30) == 0  # clean stop on SIGTERM
        await window.stop()
    committed = {
        row[0].removeprefix("urn:uuid:")
        for row in sqlite3.connect(tmp_path / "broker.sqlite3").execute(
            "SELECT message_id FROM messages"
        )
    }
    assert accepted <= committed
    assert delivered() <= committed  # nothing forwarded that was not accepted and committed
    assert len(window.inbox) >= len(delivered())  # at-least-once: repeats share a MessageID
