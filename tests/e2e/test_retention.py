"""Retention (SPEC §6) on a running gateway: `broker store purge`, then `audit verify` and the
read API; the purge that `broker serve` runs by itself; no fragment left on disk."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.e2e.conftest import ROUTING, Exchange, open_exchange
from tests.pki_support import Pki, sign_as
from tests.test_cli_validate import broker

MARKER = "Подшипники шариковые радиальные однорядные"
"""Text that is in the stored envelopes only (the goods description of the sample)."""

# Bodies go 100 ms after a message finished; receipts and status are kept for ten years.
RETAINING = ROUTING.replace(
    "gateway: {{id: EEC-GW}}\n",
    "gateway: {{id: EEC-GW}}\nretention: {{bodies: 100ms, receipts: 3650d}}\n",
)
MESSAGE_ID = "6a3f8ea1-2c98-4d31-b07f-4f5a6d7e8f04"  # of the sample


def _stored_files(folder: Path) -> bytes:
    return b"".join(
        path.read_bytes() for path in sorted(folder.glob("broker.sqlite3*")) if path.is_file()
    )


async def _finished(exchange: Exchange) -> None:
    """Sent, delivered, and its receipts pushed: the message is finished."""
    status, _ = await exchange.post(
        "KZ-SW", sign_as(exchange.pki, "KZ-SW", "valid-goods-declaration-kz-to-ru.xml")
    )
    assert status == 202
    store = exchange.server.gateway.store

    async def done() -> bool:
        return (await store.counts()).delivered == 1 and not await store.pending_by_destination()

    deadline = asyncio.get_running_loop().time() + 10
    while not await done():
        assert asyncio.get_running_loop().time() < deadline, "not finished in time"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.15)  # past the 100 ms bodies period


async def _cli(*args: str) -> tuple[int, str]:
    result = await asyncio.to_thread(broker, *args)
    return result.returncode, result.stdout + result.stderr


async def test_purge_keeps_status_receipts_and_the_audit_chain(
    test_pki: Pki, tmp_path: Path
) -> None:
    """`broker store purge` on a live gateway: the bodies go (from every file), the status and
    receipts stay for the sender, and the audit chain verifies with the purge in it."""
    async with open_exchange(test_pki, tmp_path, routing=RETAINING) as exchange:
        await _finished(exchange)
        assert MARKER.encode() in _stored_files(tmp_path)  # else the check below proves nothing
        store = f"sqlite:///{tmp_path / 'broker.sqlite3'}"
        common = (
            *("--store", store),
            *("--routing", str(tmp_path / "routing.yaml")),
            *("--certs", str(test_pki.folder)),
        )
        code, out = await _cli("store", "purge", "--dry-run", *common)
        assert code == 0, out
        assert "would purge: bodies of 1 message(s)" in out
        code, out = await _cli("store", "purge", *common)
        assert code == 0, out
        assert "purged: bodies of 1 message(s)" in out
        code, out = await _cli("store", "purge", *common)
        assert "purged: bodies of 0 message(s)" in out  # nothing twice

        code, out = await _cli("audit", "verify", "--store", store, "--certs", str(test_pki.folder))
        assert code == 0, out
        status, body, _ = await exchange.request("KZ-SW", "GET", f"/v1/messages/{MESSAGE_ID}")
        assert status == 200
        view = json.loads(body)
        assert [d["state"] for d in view["destinations"]] == ["delivered"]
        kinds = sorted(r["kind"] for r in view["receipts"])
        assert kinds == ["Accepted", "Delivered"]
        for receipt in view["receipts"]:
            status, signed, _ = await exchange.request(
                "KZ-SW", "GET", f"/v1/receipts/{receipt['id']}"
            )
            assert status == 200
            assert b"Signature" in signed
        code, out = await _cli("messages", "show", MESSAGE_ID, "--store", store)
        assert code == 0, out
        assert json.loads(out)["bodies_purged_at"] is not None
    assert MARKER.encode() not in _stored_files(tmp_path)


async def test_serve_purges_by_itself(test_pki: Pki, tmp_path: Path) -> None:
    """The purge `broker serve` runs on its own schedule (here every 200 ms), audited."""
    async with open_exchange(test_pki, tmp_path, routing=RETAINING, purge_every=0.2) as exchange:
        await _finished(exchange)
        store = exchange.server.gateway.store

        async def purged() -> bool:
            view = await store.message(f"urn:uuid:{MESSAGE_ID}", None)
            return view is not None and view.bodies_purged_at is not None

        deadline = asyncio.get_running_loop().time() + 5
        while not await purged():
            assert asyncio.get_running_loop().time() < deadline, "serve did not purge"
            await asyncio.sleep(0.05)
        entries = await store.audit_entries(1, 1000)
        assert "purged" in [e.event for e in entries]
    assert MARKER.encode() not in _stored_files(tmp_path)


async def test_a_table_without_retention_keeps_everything(test_pki: Pki, tmp_path: Path) -> None:
    """No `retention`: the purge finds nothing and says everything is kept."""
    async with open_exchange(test_pki, tmp_path) as exchange:
        await _finished(exchange)
        code, out = await _cli(
            "store",
            "purge",
            "--store",
            f"sqlite:///{tmp_path / 'broker.sqlite3'}",
            "--routing",
            str(tmp_path / "routing.yaml"),
            "--certs",
            str(test_pki.folder),
        )
        assert code == 0, out
        assert "purged: bodies of 0 message(s)" in out
        assert "no retention: everything is kept for ever" in out
    assert MARKER.encode() in _stored_files(tmp_path)
