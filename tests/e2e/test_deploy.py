"""docs/deploy.md, tested: the systemd unit verifies, and a SQLite backup taken while the
gateway runs restores to a store that passes `broker audit verify` and delivers what was
pending; the same with pg_dump for PostgreSQL."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import ROUTING, open_exchange, wait_for
from tests.pki_support import Pki, sign_as
from tests.store.conftest import pg_dsn_or_skip
from tests.test_cli_validate import broker

# Retries that outlast the test while the destination is down.
PATIENT = ROUTING.replace(
    "retry: {{attempts: 5, initial: 50ms, max: 200ms, ttl: 1h}}",
    "retry: {{attempts: 1000, initial: 100ms, max: 200ms, ttl: 1h}}",
)
assert PATIENT != ROUTING


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts docs/deploy/broker.service (its ExecStart pointed at
    this checkout's broker)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    unit = (ROOT / "docs" / "deploy" / "broker.service").read_text()
    unit = unit.replace("/opt/broker/.venv/bin/broker", str(ROOT / ".venv" / "bin" / "broker"))
    (tmp_path / "broker.service").write_text(unit)
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / "broker.service")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


async def test_sqlite_backup_restores_and_delivers_what_was_pending(
    test_pki: Pki, tmp_path: Path
) -> None:
    """Back up while running (one destination down, so a delivery is pending), restore the copy
    as the store of a new gateway: the audit chain holds and the pending message is delivered."""
    live = tmp_path / "live"
    live.mkdir()
    async with open_exchange(test_pki, live, PATIENT, lease=1.0) as exchange:
        exchange.windows["RU-SW"].fail_next = [503] * 100_000
        status, _ = await exchange.post("KZ-SW", sign_as(test_pki, "KZ-SW"))
        assert status == 202
        await wait_for(lambda: exchange.server.worker.attempts_made >= 3)
        store = f"sqlite:///{live / 'broker.sqlite3'}"
        backup = tmp_path / "backup.sqlite3"
        result = await asyncio.to_thread(broker, "store", "backup", str(backup), "--store", store)
        assert result.returncode == 0, result.stderr
        again = await asyncio.to_thread(broker, "store", "backup", str(backup), "--store", store)
        assert again.returncode == 2  # never overwrites
        # The restored gateway runs on the same host: the destinations are where they were.
        ports = {p: w.port for p, w in exchange.windows.items()}
    restored = tmp_path / "restored"
    restored.mkdir()
    shutil.copy(backup, restored / "broker.sqlite3")
    checked = await asyncio.to_thread(
        broker,
        "audit",
        "verify",
        "--store",
        f"sqlite:///{restored / 'broker.sqlite3'}",
        "--certs",
        str(test_pki.folder),
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # A job in flight at backup time is leased in the copy: it is taken up once the lease ends.
    async with open_exchange(test_pki, restored, PATIENT, lease=1.0, ports=ports) as exchange:
        ru = exchange.windows["RU-SW"]
        await wait_for(lambda: len(ru.inbox) == 1, timeout=20)
        assert ru.inbox[0].sender_verified


async def test_pg_dump_restores_and_passes_audit_verify(test_pki: Pki, tmp_path: Path) -> None:
    """pg_dump of a gateway schema, restored into another database schema with psql: audit
    verify holds on the restored copy."""
    dsn = pg_dsn_or_skip()
    pg_dump, psql = shutil.which("pg_dump"), shutil.which("psql")
    if pg_dump is None or psql is None:
        pytest.skip("pg_dump/psql are not installed here")
    from broker.store.postgres import create_schema, drop_schema

    source, store = await create_schema(dsn, "deploy_src")
    target, restored = await create_schema(dsn, "deploy_dst")
    from broker.audit import AuditEvent, Auditor
    from broker.store import open_store

    live = open_store(store, Auditor(test_pki.gateway()))
    await live.open()
    await live.audit([AuditEvent("gateway_started"), AuditEvent("configuration_reloaded")])
    await live.close()
    dump = tmp_path / "dump.sql"
    subprocess.run(
        [pg_dump, "--no-owner", "--schema", source, "--file", str(dump), dsn], check=True
    )
    # Restore into the other schema: the dump names its schema, so point it there.
    text = dump.read_text().replace(f"{source}.", f"{target}.")
    text = text.replace(f"CREATE SCHEMA {target};", "").replace(f"CREATE SCHEMA {source};", "")
    dump.write_text(text)
    subprocess.run([psql, "--quiet", "--set", "ON_ERROR_STOP=1", "-f", str(dump), dsn], check=True)
    checked = await asyncio.to_thread(
        broker,
        "audit",
        "verify",
        "--store",
        restored,
        "--certs",
        str(test_pki.folder),
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "intact" in checked.stdout
    for schema in (source, target):
        await drop_schema(dsn, schema)
