"""The audit chain on both stores: appended with each state change, and every kind of direct
tampering in the database detected and named (SPEC §10)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from broker import pki
from broker.audit import AuditEvent, Auditor, entry_hash, verify_chain
from broker.signing.trust import GatewayIdentity
from broker.store import Store, open_store
from broker.store.ledger import PurgeCutoffs
from broker.store.postgres import drop_schema
from tests.pki_support import Pki
from tests.store.conftest import new_schema, pg_dsn_or_skip
from tests.store.test_contract import _jobs, _message, _receipt

SQL = Callable[[str], Awaitable[None]]


@dataclass
class Audited:
    store: Store
    sql: SQL
    """Run SQL directly in the store's database, as a tamperer would."""
    table: str


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def audited(
    request: pytest.FixtureRequest, tmp_path: Path, test_pki: Pki
) -> AsyncIterator[Audited]:
    auditor = Auditor(test_pki.gateway())
    if request.param == "sqlite":
        path = tmp_path / "audited.sqlite3"
        store = open_store(f"sqlite:///{path}", auditor, create=True)
        await store.open()

        async def run_sqlite(statement: str) -> None:
            conn = sqlite3.connect(path)
            conn.executescript(statement)
            conn.close()

        yield Audited(store, run_sqlite, "audit_log")
        await store.close()
        return
    dsn = pg_dsn_or_skip()
    name, scoped = await new_schema(dsn)
    postgres = open_store(scoped, auditor)
    await postgres.open()

    async def run_pg(statement: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    try:
        yield Audited(postgres, run_pg, f"{name}.audit_log")
    finally:
        await postgres.close()
        await drop_schema(dsn, name)


async def _traffic(store: Store) -> None:
    """Acceptances, a resubmission, a delivery with its receipt, a rejection, a reload."""
    for n in range(3):
        await store.accept(
            _message(n),
            _jobs(n),
            _receipt(n),
            [AuditEvent("accepted", f"urn:uuid:m-{n}", f"urn:uuid:t-{n}")],
        )
    await store.accept(_message(0), _jobs(0), _receipt(0))  # identical: audited as resubmitted
    (job, *_) = await store.claim("w", 1e12, 60, 10)
    await store.finish(
        job,
        "w",
        "delivered",
        1,
        None,
        _receipt(0, "Delivered", "RU-SW"),
        None,
        [AuditEvent("delivered", job.message_id, job.track_id, "RU-SW")],
    )
    await store.audit([AuditEvent("routing_reloaded", detail={"routing": "ab" * 32})])


async def _check(audited: Audited, test_pki: Pki) -> str | None:
    entries = await audited.store.audit_entries(1, 10_000)
    return verify_chain(entries, test_pki.gateway().certificate.public_key()).problem


async def test_every_change_is_chained_and_verifies(audited: Audited, test_pki: Pki) -> None:
    """Traffic leaves an intact chain whose events are the ones recorded, in order."""
    await _traffic(audited.store)
    entries = await audited.store.audit_entries(1, 100)
    assert [e.event for e in entries] == ["accepted"] * 3 + [
        "resubmitted",
        "delivered",
        "routing_reloaded",
    ]
    assert [e.seq for e in entries] == list(range(1, 7))
    assert await _check(audited, test_pki) is None


@pytest.mark.parametrize(
    ("tamper", "named"),
    [
        ('UPDATE {t} SET detail = \'{{"sender":"XX-SW"}}\' WHERE seq = 4', "entry 4 was changed"),
        ("DELETE FROM {t} WHERE seq = 3", "entry 3 was removed"),
        (
            "UPDATE {t} SET seq = 100 WHERE seq = 2; UPDATE {t} SET seq = 2 WHERE seq = 3; "
            "UPDATE {t} SET seq = 3 WHERE seq = 100",
            "entry 2",
        ),
        ("DELETE FROM {t} WHERE seq = 1", "entry 1 was removed"),
    ],
    ids=["edit a row", "delete one", "swap two", "delete the first"],
)
async def test_tampering_is_detected_and_named(
    audited: Audited, test_pki: Pki, tamper: str, named: str
) -> None:
    """Each kind of tampering done directly in the database is found and named."""
    await _traffic(audited.store)
    await audited.sql(tamper.format(t=audited.table))
    problem = await _check(audited, test_pki)
    assert problem is not None
    assert problem.startswith(named), problem


async def test_forged_entry_appended_with_a_correct_hash_is_detected(
    audited: Audited, test_pki: Pki
) -> None:
    """An entry appended by someone who can compute hashes but lacks the gateway key."""
    await _traffic(audited.store)
    last = (await audited.store.audit_entries(6, 6))[0]
    digest = entry_hash(
        7, last.at, "delivered", "urn:uuid:m-1", "urn:uuid:t-1", "RU-SW", "{}", last.hash
    )
    forger = Auditor(
        GatewayIdentity(pki.new_key(), test_pki.gateway().certificate, b"", ())
    )  # another key
    forged_signature = forger._sign(digest)
    await audited.sql(
        f"INSERT INTO {audited.table} VALUES (7, '{last.at}', 'delivered', 'urn:uuid:m-1', "
        f"'urn:uuid:t-1', 'RU-SW', '{{}}', '{last.hash}', '{digest}', '{forged_signature}')"
    )
    problem = await _check(audited, test_pki)
    assert problem == "entry 7 is not signed by the gateway key: forged"


@pytest.mark.postgres
async def test_two_nodes_appending_at_once_keep_one_chain(test_pki: Pki) -> None:
    """Two stores (as two gateway processes) on one database append concurrently: one chain."""
    dsn = pg_dsn_or_skip()
    name, scoped = await new_schema(dsn)
    auditor = Auditor(test_pki.gateway())
    nodes = [open_store(scoped, auditor) for _ in range(2)]
    try:
        for node in nodes:
            await node.open()
        await asyncio.gather(
            *(
                nodes[n % 2].audit([AuditEvent("routing_reloaded", detail={"n": n})])
                for n in range(60)
            )
        )
        entries = await nodes[0].audit_entries(1, 1000)
        assert len(entries) == 60
        assert verify_chain(entries, test_pki.gateway().certificate.public_key()).problem is None
    finally:
        for node in nodes:
            await node.close()
        await drop_schema(dsn, name)


async def test_purge_runs_in_audited_batches_and_the_chain_still_verifies(
    audited: Audited, test_pki: Pki
) -> None:
    """Five finished messages purged two per transaction: three `purged` events, each naming
    its messages, and the chain verifies across them."""
    for n in range(5):
        await audited.store.accept(_message(n), _jobs(n), _receipt(n))
    for job in await audited.store.claim("w", 1e12, 60, 10):
        assert await audited.store.finish(job, "w", "delivered", 1, None, None, None)
    done = await audited.store.purge(PurgeCutoffs({}, {}, 1e12, None), batch=2)
    assert (done.bodies, done.records) == (5, 0)
    entries = await audited.store.audit_entries(1, 100)
    purged = [json.loads(e.detail) for e in entries if e.event == "purged"]
    assert [len(p["bodies"]) for p in purged] == [2, 2, 1]
    assert sorted(t for p in purged for t in p["bodies"]) == [f"urn:uuid:t-{n}" for n in range(5)]
    assert await _check(audited, test_pki) is None
