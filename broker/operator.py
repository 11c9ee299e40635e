"""Operator and auditor commands that work on the store and certs/ directly (SPEC §10, §11):
`broker audit verify|export`, `broker messages list|show|retry`, `broker store purge`,
`broker certs check`."""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import json
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from broker import clock, retention
from broker.audit import GENESIS, AuditEvent, Auditor, ChainCheck, Entry, verify_chain
from broker.errors import ConfigError
from broker.routing.table import RoutingTable
from broker.signing import algorithms, gost
from broker.signing.trust import GatewayIdentity, common_name, fingerprint
from broker.store import Store, open_store
from broker.store.base import JobState, MessageView
from broker.store.ledger import Purged

PAGE = 5000
EXPIRY_WARNING_DAYS = 30


def gateway_public_key(certs: Path, cert: Path | None = None) -> object | None:
    """The key audit entries are signed with: the certificate given, else the gateway's in
    ``certs``; None when no certificate was given and ``certs`` has none (the chain can still be
    checked alone). A given certificate that cannot be read is a ConfigError."""
    path = cert or certs / "gateway" / "cert.pem"
    if cert is None and not path.is_file():
        return None
    try:
        return x509.load_pem_x509_certificate(path.read_bytes()).public_key()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the gateway certificate: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"{path}: not a PEM certificate: {exc}") from exc


async def _entries(store: Store, first: int = 1, last: int | None = None) -> list[Entry]:
    out: list[Entry] = []
    while last is None or first <= last:
        page = await store.audit_entries(
            first, first + PAGE - 1 if last is None else min(last, first + PAGE - 1)
        )
        out.extend(page)
        if len(page) < PAGE:
            break
        first += PAGE
    return out


async def verify_store(
    store: Store,
    public_key: object,
    progress: Callable[[int], None] | None = None,
    cpu: Executor | None = None,
) -> ChainCheck:
    """Recompute the whole chain in ``store``, a page at a time (memory stays flat), each page
    checked in ``cpu`` (a thread, so a console keeps answering). ``progress`` is told the
    entries checked after each page. Pages go up to the head's seq, so a removed page of
    entries is found, not taken for the end."""
    head = await store.audit_head()
    last = head[0] if head else 0
    start, checked, first = (0, GENESIS), 0, 1
    loop = asyncio.get_running_loop()
    while first <= last:
        page = await store.audit_entries(first, first + PAGE - 1)
        result = await loop.run_in_executor(cpu, verify_chain, page, public_key, start)
        checked += result.entries
        if result.problem is not None:
            return ChainCheck(checked, result.head, result.problem)
        if page:
            start = (page[-1].seq, result.head)
        elif start[0] < last:
            return ChainCheck(checked, start[1], f"entry {start[0] + 1} was removed")
        first += PAGE
        if progress is not None:
            progress(checked)
    return ChainCheck(checked, start[1])


async def audit_verify(url: str, public_key: object) -> ChainCheck:
    """`broker audit verify`: the whole chain in the store at ``url``."""
    store = open_store(url)
    await store.open()
    try:
        return await verify_store(store, public_key)
    finally:
        await store.close()


def verify_export(path: Path, public_key: object) -> ChainCheck:
    """Check an exported range on its own: from its start (seq, hash) to its last entry."""
    data = json.loads(path.read_text(encoding="utf-8"))
    start = (int(data["start"]["seq"]), str(data["start"]["hash"]))
    return verify_chain((Entry(**e) for e in data["entries"]), public_key, start)


async def export_range(store: Store, first: int, last: int | None) -> dict[str, object]:
    """Entries ``first``..``last`` with the hash before the first, so the range can be checked
    elsewhere (``broker audit verify --file``)."""
    entries = await _entries(store, first, last)
    before = entries[0].prev_hash if entries else GENESIS
    return {"start": {"seq": first - 1, "hash": before}, "entries": [e.as_row() for e in entries]}


async def audit_export(url: str, first: int, last: int | None) -> dict[str, object]:
    store = open_store(url)
    await store.open()
    try:
        return await export_range(store, first, last)
    finally:
        await store.close()


def operator_name() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


async def list_messages(
    url: str, state: JobState | None, sender: str | None, since: str | None, limit: int
) -> list[MessageView]:
    store = open_store(url)
    await store.open()
    try:
        return await store.messages(state, sender, since, limit)
    finally:
        await store.close()


async def show_message(url: str, message_id: str) -> MessageView | None:
    store = open_store(url)
    await store.open()
    try:
        return await store.message(message_id, None)
    finally:
        await store.close()


RETRY_TTL = 86_400.0
"""A retried destination gets a day from the retry, whatever was left of its ttl."""


async def request_retry(store: Store, message_id: str, destination: str | None, by: str) -> int:
    """Put failed destinations of a message back to pending, audited with who asked (the CLI,
    the admin API and the console all retry through here). The number of jobs reset."""
    now = time.time()
    return await store.retry(
        message_id,
        destination,
        now,
        now + RETRY_TTL,
        [AuditEvent("retry_requested", message_id, destination=destination, detail={"by": by})],
    )


async def retry_message(url: str, certs: Path, message_id: str, destination: str | None) -> int:
    """`broker messages retry`: the audit log records who asked."""
    store = open_store(url, Auditor(GatewayIdentity.load(certs)))
    await store.open()
    try:
        return await request_retry(
            store, message_id, destination, f"{operator_name()} (broker messages retry)"
        )
    finally:
        await store.close()


async def purge(url: str, certs: Path, table: RoutingTable, *, dry_run: bool) -> Purged:
    """``broker store purge``: retention now, audited with the gateway's key."""
    store = open_store(url, None if dry_run else Auditor(GatewayIdentity.load(certs)))
    await store.open()
    try:
        return await retention.purge(store, table, dry_run=dry_run)
    finally:
        await store.close()


# -- certificate hygiene ---------------------------------------------------------------------


@dataclass(frozen=True)
class CertificateStatus:
    path: Path
    role: str
    certificate: x509.Certificate

    def days_left(self, now: dt.datetime) -> float:
        return (self.certificate.not_valid_after_utc - now).total_seconds() / 86_400

    def status(self, now: dt.datetime) -> str:
        if now < self.certificate.not_valid_before_utc:
            return "NOT YET VALID"
        days = self.days_left(now)
        if days < 0:
            return "EXPIRED"
        if days <= EXPIRY_WARNING_DAYS:
            return f"EXPIRES in {days:.0f} days"
        return "valid"


def certificates(certs: Path) -> Iterator[CertificateStatus]:
    """Every certificate in certs/ with its role."""
    roles = [
        ("trust/*/*.pem", "trusted CA {0}"),
        ("gateway/cert.pem", "gateway signing"),
        ("gateway/ca.pem", "gateway CA"),
        ("tls/cert.pem", "gateway TLS"),
        ("known/*.pem", "known signing certificate"),
        ("participants/*/cert.pem", "participant (development)"),
        ("participants/*/signing/cert.pem", "participant signing (development)"),
    ]
    for pattern, role in roles:
        for path in sorted(certs.glob(pattern)):
            for certificate in x509.load_pem_x509_certificates(path.read_bytes()):
                owner = path.parent.parent.name if path.parent.name == "signing" else ""
                yield CertificateStatus(path, role.format(owner or path.parent.name), certificate)


def describe_certificates(certs: Path) -> tuple[list[str], bool]:
    """(lines, all fine) for `broker certs check`: fine means nothing expired or expiring."""
    now = clock.now()
    lines, fine = [], True
    for item in certificates(certs):
        cert = item.certificate
        countries = cert.subject.get_attributes_for_oid(x509.NameOID.COUNTRY_NAME)
        country = str(countries[0].value) if countries else "-"
        status = item.status(now)
        fine = fine and status == "valid"
        lines.append(
            f"{status:<20} {item.role:<28} CN={common_name(cert)} "
            f"C={country}  issuer "
            f"{cert.issuer.rfc4514_string()}  {cert.not_valid_before_utc:%Y-%m-%d} → "
            f"{cert.not_valid_after_utc:%Y-%m-%d}  sha256 {fingerprint(cert)[:16]}…  "
            f"{item.path}" + ("  (GOST)" if algorithms.is_gost_certificate(cert) else "")
        )
    return lines, fine


def gost_status() -> str:
    """The GOST backend line of `broker certs check` and /readyz (SPEC v1.1 §2)."""
    if gost.available():
        return "GOST backend: available (GOST R 34.10-2012 signatures are verified)"
    return (
        "GOST backend: not installed, GOST signatures are refused "
        "(apt-get install libengine-gost-openssl)"
    )


def backup_sqlite(url: str, out: Path) -> int:
    """An online, consistent copy of a SQLite store (the SQLite backup API: the gateway may keep
    running and writing). Returns the pages copied. PostgreSQL stores are backed up with
    pg_dump (docs/deploy.md)."""
    import sqlite3

    if not url.startswith("sqlite:///"):
        raise ConfigError(
            f"{url.split('://', 1)[0]} store: back it up with pg_dump (docs/deploy.md)"
        )
    source_path = Path(url.removeprefix("sqlite:///"))
    if not source_path.is_file():
        raise ConfigError(f"no SQLite store at {source_path}: check --store / BROKER_STORE")
    if out.exists():
        raise ConfigError(f"{out} exists: a backup never overwrites a file")
    if not out.parent.is_dir():
        raise ConfigError(f"{out.parent}: no such folder for the backup")
    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True)
    target = sqlite3.connect(out)
    try:
        source.backup(target)
        pages = int(target.execute("PRAGMA page_count").fetchone()[0])
        (verdict,) = target.execute("PRAGMA integrity_check").fetchone()
        if verdict != "ok":
            raise ConfigError(f"{out}: the copy fails SQLite's integrity check: {verdict}")
        return pages
    finally:
        target.close()
        source.close()
