"""Operators and auditors at work: audit verify on a live store, metrics moving with traffic,
retry from the command line, certificate hygiene, the admin token (SPEC §7, §10, §11)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from broker import clock, pki
from broker.errors import ConfigError
from broker.server import GatewayServer, ServeSettings
from tests.conftest import ROOT
from tests.e2e.conftest import Exchange, wait_for
from tests.pki_support import sign_as
from tests.test_cli_validate import broker


def _store(exchange: Exchange) -> str:
    return f"sqlite:///{exchange.folder / 'broker.sqlite3'}"


async def _cli(*args: str) -> tuple[int, str]:
    result = await asyncio.to_thread(broker, *args)
    return result.returncode, result.stdout + result.stderr


async def test_audit_verify_after_traffic_and_after_tampering(exchange: Exchange) -> None:
    """A run of traffic leaves an intact log; an edited row is found and named (exit 1)."""
    await exchange.post("KZ-SW", sign_as(exchange.pki, "KZ-SW"))
    await exchange.post("KZ-SW", b"<not a message/>")
    await wait_for(lambda: len(exchange.windows["KZ-SW"].receipts) == 2)
    code, out = await _cli(
        "audit", "verify", "--store", _store(exchange), "--certs", str(exchange.pki.folder)
    )
    assert code == 0, out
    entries = int(re.search(r"intact: (\d+) entries", out).group(1))  # type: ignore[union-attr]
    assert entries >= 12
    events = [
        row[0]
        for row in sqlite3.connect(exchange.folder / "broker.sqlite3").execute(
            "SELECT event FROM audit_log ORDER BY seq"
        )
    ]
    assert events[0] == "gateway_started"
    for expected in (
        "received",
        "routed",
        "accepted",
        "receipt_issued",
        "rejected",
        "delivery_attempt",
        "delivered",
    ):
        assert expected in events
    conn = sqlite3.connect(exchange.folder / "broker.sqlite3")
    conn.execute("UPDATE audit_log SET detail = '{}' WHERE seq = 5")
    conn.commit()
    conn.close()
    code, out = await _cli(
        "audit", "verify", "--store", _store(exchange), "--certs", str(exchange.pki.folder)
    )
    assert code == 1
    assert "audit log TAMPERED: entry 5 was changed" in out


async def test_audit_export_checks_elsewhere(exchange: Exchange, tmp_path: Path) -> None:
    """An exported range verifies on its own; a changed entry in the export does not."""
    await exchange.post("KZ-SW", sign_as(exchange.pki, "KZ-SW"))
    await wait_for(lambda: len(exchange.windows["KZ-SW"].receipts) == 2)
    export = tmp_path / "audit.json"
    code, _ = await _cli(
        "audit",
        "export",
        "--store",
        _store(exchange),
        "--from",
        "3",
        "--to",
        "8",
        "-o",
        str(export),
    )
    assert code == 0
    data = json.loads(export.read_text())
    assert data["start"]["seq"] == 2
    assert [e["seq"] for e in data["entries"]] == [3, 4, 5, 6, 7, 8]
    code, out = await _cli(
        "audit", "verify", "--file", str(export), "--certs", str(exchange.pki.folder)
    )
    assert code == 0, out
    data["entries"][2]["destination"] = "XX-SW"
    export.write_text(json.dumps(data))
    code, out = await _cli(
        "audit", "verify", "--file", str(export), "--certs", str(exchange.pki.folder)
    )
    assert code == 1
    assert "entry 5 was changed" in out


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def _scrape_until(
    exchange: Exchange, condition: Callable[[str], bool], timeout: float = 10.0
) -> str:
    """Scrape /metrics until ``condition`` holds for the text; fail after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        text = (await exchange.admin("GET", "/metrics"))[1].decode()
        if condition(text):
            return text
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"metrics did not reach the expected values:\n{text}")
        await asyncio.sleep(0.02)


async def test_metrics_move_with_traffic(exchange: Exchange) -> None:
    """Scrape before and after traffic: counters, histograms and the routing gauge move."""
    before = (await exchange.admin("GET", "/metrics"))[1].decode()
    await exchange.post("KZ-SW", sign_as(exchange.pki, "KZ-SW"))
    await exchange.post(
        "KZ-SW",
        sign_as(exchange.pki, "KZ-SW", edit=lambda t: t.replace("9405210000", "94052100X0")),
    )
    await wait_for(lambda: len(exchange.windows["KZ-SW"].receipts) == 2)
    # The window holds the pushed receipt a moment before the worker counts the push (and the
    # delivery's duration): wait for the counters themselves, not for what they count.
    after = await _scrape_until(
        exchange,
        lambda text: (
            _metric(text, 'broker_receipts_pushed_total{outcome="delivered"}') >= 2
            and _metric(text, "broker_delivery_seconds_count") >= 2
            and _metric(text, 'broker_deliveries_total{destination="RU-SW",outcome="delivered"}')
            >= 1
        ),
    )
    assert (
        _metric(after, "broker_messages_accepted_total")
        == _metric(before, "broker_messages_accepted_total") + 1
    )
    assert _metric(after, 'broker_messages_rejected_total{code="SCHEMA_INVALID"}') == 1
    assert _metric(after, 'broker_deliveries_total{destination="RU-SW",outcome="delivered"}') == 1
    assert _metric(after, 'broker_delivery_attempts_total{destination="BY-SW",kind="message"}') == 1
    assert _metric(after, 'broker_receipts_pushed_total{outcome="delivered"}') == 2
    assert _metric(after, "broker_intake_seconds_count") == 2
    assert _metric(after, "broker_delivery_seconds_count") == 2
    digest = exchange.server.gateway.config.table.digest
    assert f'broker_routing_table{{sha256="{digest}"}} 1.0' in after
    assert 'broker_certificate_expiry_days{role="gateway signing"' in after


async def test_cli_retry_of_a_failed_message_delivers_it(exchange: Exchange) -> None:
    """`broker messages retry` puts a Failed destination back; once it answers, it is
    delivered with a new receipt, and the audit log records who asked."""
    ru, kz = exchange.windows["RU-SW"], exchange.windows["KZ-SW"]
    ru.fail_next = [400]
    await exchange.post(
        "KZ-SW", sign_as(exchange.pki, "KZ-SW", "valid-goods-declaration-kz-to-ru.xml")
    )
    await wait_for(lambda: len(kz.receipts) == 1)
    message_id = "urn:uuid:6a3f8ea1-2c98-4d31-b07f-4f5a6d7e8f04"
    code, out = await _cli("messages", "list", "--state", "failed", "--store", _store(exchange))
    assert code == 0
    assert message_id in out
    code, out = await _cli("messages", "show", message_id, "--store", _store(exchange))
    assert '"last_error": "DESTINATION_REJECTED: RU-SW answered HTTP 400"' in out
    code, out = await _cli(
        "messages",
        "retry",
        message_id,
        "--store",
        _store(exchange),
        "--certs",
        str(exchange.pki.folder),
    )
    assert code == 0, out
    assert "1 failed destination(s) put back to pending" in out
    exchange.server.worker.wake()
    await wait_for(lambda: len(ru.inbox) == 1 and len(kz.receipts) == 2)
    row = (
        sqlite3.connect(exchange.folder / "broker.sqlite3")
        .execute("SELECT detail FROM audit_log WHERE event = 'retry_requested'")
        .fetchone()
    )
    assert "(broker messages retry)" in row[0]


async def test_certs_check_lists_and_flags_expiring_certificates(
    exchange: Exchange, tmp_path: Path
) -> None:
    """Every certificate is listed; one expiring within 30 days makes the check fail."""
    code, out = await _cli("certs", "check", "--certs", str(exchange.pki.folder))
    assert code == 0, out
    assert "gateway signing" in out
    assert "trusted CA KZ" in out
    folder = tmp_path / "certs"
    ca = pki.make_ca("Soon CA", "KZ")
    soon = pki.make_leaf(ca, "KZ-SW", "KZ", not_before=clock.now() - dt.timedelta(days=5), days=15)
    (folder / "trust" / "KZ").mkdir(parents=True)
    (folder / "trust" / "KZ" / "ca.pem").write_bytes(pki.cert_pem(ca.certificate))
    pki.write_identity(folder / "participants" / "KZ-SW", soon)
    code, out = await _cli("certs", "check", "--certs", str(folder))
    assert code == 1
    assert re.search(r"EXPIRES in 1[01] days\s+participant", out), out


async def test_admin_listener_leaves_loopback_only_with_a_token(
    exchange: Exchange, tmp_path: Path
) -> None:
    """Non-loopback admin without a token refuses to start; with one, /admin/* needs it."""
    settings = ServeSettings(
        routing=ROOT / "routing.yaml",
        certs=exchange.pki.folder,
        xsd=ROOT / "xsd",
        store=f"sqlite:///{tmp_path / 's.sqlite3'}",
        listen="127.0.0.1:0",
        admin="0.0.0.0:0",
    )
    with pytest.raises(ConfigError, match="not on loopback"):
        await GatewayServer(settings).start()
    settings.admin, settings.admin_token = "127.0.0.1:0", "s3cret"
    server = GatewayServer(settings)
    await server.start()
    try:
        base = f"http://127.0.0.1:{server.admin_port}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/admin/routing") as response:
                assert response.status == 401
            async with session.get(
                f"{base}/admin/routing", headers={"Authorization": "Bearer s3cret"}
            ) as response:
                assert response.status == 200
            async with session.get(f"{base}/healthz") as response:
                assert response.status == 200
    finally:
        await server.stop()
