"""Per-message cost of the work intake must do, measured on this machine (`broker bench`).

Each stage is timed on its own on a ~10 KB signed message, next to the raw ``cryptography`` cost
of the same operation, so the gap (canonicalisation, tree work, Python) is visible. The sum of the
necessary stages is the ceiling a gateway process can reach; the load benchmark compares the
throughput it achieves with that ceiling.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import io
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from lxml import etree

from broker import clock, pki, xmlsafe
from broker.compose import Addressing, compose_envelope
from broker.envelope import DS, SOAP, WSSE, WSU, WSU_ID, parse_envelope
from broker.gost_pki import create_gost_identities, signing_identity
from broker.receipts import Receipt, build_receipt, sha256_b64
from broker.routing.load import parse_routing
from broker.routing.table import RoutingTable
from broker.schemas import Catalog
from broker.signing import algorithms, gost, keyinfo
from broker.signing.keyinfo import KnownCertificates
from broker.signing.sign import countersign, sign_envelope
from broker.signing.trust import GatewayIdentity, TrustStore
from broker.signing.verify import Verified, verify_sender
from broker.store.postgres import create_schema, drop_schema
from broker.validation import check_document

PRODUCT = "trcdo:ProductDetails"


def conformity_message(document: bytes, size: int = 10_240) -> bytes:
    """An unsigned P.TS.01 conformity-register envelope padded to about ``size`` bytes by
    repeating its product entries (realistic content rather than filler)."""
    text = document.decode("utf-8")
    start = text.index(f"<{PRODUCT}>")
    end = text.index(f"</{PRODUCT}>") + len(f"</{PRODUCT}>")
    product = text[start:end]
    while len(text.encode()) < size - 3500:  # envelope, indentation and signature add ~3.5 KB
        text = text[:end] + "\n" + product + text[end:]
        end += len(product) + 1
    return compose_envelope(
        text.encode(),
        Addressing(
            to="EAEU://RU/CP/P.TS.01/P.TS.01.ACT.002",
            reply_to="EAEU://KZ/CP/P.TS.01/P.TS.01.ACT.001",
            action="int://CP/P.TS.01/1.0.1/P.TS.01.PRC.001/P.TS.01.TRN.001/P.TS.01.MSG.001",
        ),
    )


@dataclass(frozen=True)
class Cost:
    name: str
    micros: float
    necessary: bool = True
    """Counted in the ceiling (every accepted message pays it)."""


def _time(fn: Callable[[], object], budget: float = 0.4) -> float:
    """Median µs per call over batches filling ``budget`` seconds."""
    fn()
    start = time.perf_counter()
    calls = 0
    while time.perf_counter() - start < budget / 4:
        fn()
        calls += 1
    batch = max(1, calls)
    samples = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter() - t) / batch * 1e6)
    return sorted(samples)[2]


@dataclass(frozen=True)
class Sender:
    """Who signs the bench's messages: KZ-SW's ECDSA identity, or with ``--gost`` its GOST
    signing identity."""

    key: algorithms.PrivateKey
    certificate: x509.Certificate

    @property
    def gost(self) -> bool:
        return isinstance(self.key, gost.GostPrivateKey)


def measure_costs(
    catalog: Catalog,
    table: RoutingTable,
    trust: TrustStore,
    gateway: GatewayIdentity,
    sender: Sender,
    document: bytes,
) -> tuple[int, list[Cost], float]:
    """(message size, the gateway's stage costs, µs of the necessary work done directly) for
    one signed conformity message from ``sender``."""
    der = sender.certificate.public_bytes(serialization.Encoding.DER)
    signed = sign_envelope(
        parse_envelope(xmlsafe.parse(conformity_message(document))), sender.key, der
    )
    now = clock.now()
    # Each stage is timed alone on input prepared for it, so no figure is a difference of
    # two noisy ones. countersign mutates its tree, so it gets a fresh verified message each call.
    root = xmlsafe.parse(signed)
    envelope = parse_envelope(root)
    validated = check_document(signed, catalog)
    verified = verify_sender(validated, trust, table.participants, at=now)
    track = "urn:uuid:00000000-0000-4000-8000-000000000000"
    fresh: list[Verified] = []

    def countersign_us() -> float:
        # Time only the countersign calls, never the refills of fresh messages.
        total, calls = 0.0, 0
        while total < 0.3:
            fresh.extend(
                verify_sender(check_document(signed, catalog), trust, table.participants, at=now)
                for _ in range(32 - len(fresh))
            )
            began = time.perf_counter()
            while fresh:
                countersign(fresh.pop(), gateway, track, clock.format_time(now))
                calls += 1
            total += time.perf_counter() - began
        return total / calls * 1e6

    receipt = Receipt(
        kind="Accepted",
        gateway=table.gateway_id,
        message_digest=sha256_b64(signed),
        message_id="urn:uuid:m",
        track_id=track,
        sender="KZ-SW",
        route="r",
        table_digest="0" * 64,
        destinations=("RU-SW",),
    )
    signed_info = xmlsafe.c14n(verified.signature.element[0])
    ecdsa = ec.generate_private_key(ec.SECP256R1())
    ecdsa_sig = ecdsa.sign(signed_info, ec.ECDSA(hashes.SHA256()))
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    costs = [
        Cost("parse (hardened door)", _time(lambda: xmlsafe.parse(signed))),
        Cost("envelope rules", _time(lambda: parse_envelope(root))),
        Cost("schema validation (lxml)", _time(lambda: catalog.validate(envelope.document))),
        Cost(
            "sender signature verify + trust",
            _time(lambda: verify_sender(validated, trust, table.participants, at=now)),
        ),
        Cost("countersign + serialise", countersign_us()),
        Cost("receipt sign ×2", 2 * _time(lambda: build_receipt(receipt, gateway))),
        Cost(
            "raw: ECDSA P-256 verify",
            _time(
                lambda: ecdsa.public_key().verify(ecdsa_sig, signed_info, ec.ECDSA(hashes.SHA256()))
            ),
            necessary=False,
        ),
        Cost(
            "raw: ECDSA P-256 sign",
            _time(lambda: ecdsa.sign(signed_info, ec.ECDSA(hashes.SHA256()))),
            necessary=False,
        ),
        Cost(
            "raw: RSA-2048 sign",
            _time(lambda: rsa_key.sign(signed_info, padding.PKCS1v15(), hashes.SHA256())),
            necessary=False,
        ),
        Cost("raw: SHA-256 of the message", _time(lambda: sha256_b64(signed)), necessary=False),
    ]
    if isinstance(sender.key, gost.GostPrivateKey):
        gost_key = algorithms.public_key_of(sender.certificate)
        assert isinstance(gost_key, gost.GostPublicKey)
        gost_value = sender.key.sign(signed_info, gost.STREEBOG_256)
        costs += [
            Cost(
                "raw: GOST R 34.10-2012-256 verify",
                _time(lambda: gost_key.verify(gost_value, signed_info, gost.STREEBOG_256)),
                necessary=False,
            ),
            Cost(
                "raw: Streebog-256 of the message",
                _time(lambda: gost.digest(gost.STREEBOG_256, signed)),
                necessary=False,
            ),
        ]
    # The KeyInfo forms of SPEC §2 on the same signature (KeyInfo is outside SignedInfo): the
    # new forms must not make the common path, direct X509Data, slower.
    known_trust = dataclasses.replace(trust, known=KnownCertificates((sender.certificate,)))
    for form, data in keyinfo_variants(signed, der).items():
        variant = check_document(data, catalog)
        chosen = known_trust if form == "IssuerSerial (certs/known)" else trust
        costs.append(
            Cost(
                f"verify + trust, {form}",
                _time(
                    lambda v=variant, t=chosen: verify_sender(v, t, table.participants, at=now)  # type: ignore[misc]
                ),
                necessary=False,
            )
        )
    try:
        if sender.gost:
            raise ImportError("signxml has no GOST")
        from signxml.verifier import SignatureConfiguration, XMLVerifier

        cert_pem = pki.cert_pem(sender.certificate).decode()
        config = SignatureConfiguration(expect_references=len(verified.signature.references))
        costs.append(
            Cost(
                "reference: signxml verify",
                _time(
                    lambda: XMLVerifier().verify(signed, x509_cert=cert_pem, expect_config=config)
                ),
                necessary=False,
            )
        )
    except ImportError:  # pragma: no cover - signxml is a dependency, but keep bench robust
        pass
    schema = catalog.compiled(catalog.identify(envelope.document))
    direct = _time(necessary_work(signed, schema, direct_verify(sender.certificate)))
    return len(signed), costs, direct


def direct_verify(certificate: x509.Certificate) -> Callable[[bytes, bytes], bool]:
    """Check a SignatureValue over canonical SignedInfo with the library directly:
    cryptography's ECDSA, or the GOST engine."""
    key = algorithms.public_key_of(certificate)
    if isinstance(key, gost.GostPublicKey):
        return lambda value, data: key.verify(value, data, key.digest_name)
    assert isinstance(key, ec.EllipticCurvePublicKey)

    def ecdsa(value: bytes, data: bytes) -> bool:
        half = len(value) // 2
        der = utils.encode_dss_signature(
            int.from_bytes(value[:half], "big"), int.from_bytes(value[half:], "big")
        )
        key.verify(der, data, ec.ECDSA(hashes.SHA256()))
        return True

    return ecdsa


def necessary_work(
    signed: bytes, schema: etree.XMLSchema, verify: Callable[[bytes, bytes], bool]
) -> Callable[[], None]:
    """One message's necessary work done directly with lxml and cryptography, none of the
    gateway's own code: parse (no network, no entities), validate the body document, check
    each reference's digest, verify the sender's signature, and make the three ECDSA
    signatures the gateway owes (the countersignature and two receipts), over the serialised
    forwarded envelope and two receipt-sized texts. Each check must pass, so the figure cannot
    come from work skipped."""
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    gateway_key = ec.generate_private_key(ec.SECP256R1())
    ecdsa = ec.ECDSA(hashes.SHA256())

    def work() -> None:
        root = etree.fromstring(signed, parser)
        body = root.find(f"{{{SOAP}}}Body")
        if body is None or not schema.validate(body[0]):
            raise RuntimeError("bench message: body missing or invalid")
        signature = root.find(f"{{{SOAP}}}Header/{{{WSSE}}}Security/{{{DS}}}Signature")
        if signature is None:
            raise RuntimeError("bench message: no signature")
        signed_info = signature[0]
        by_id = {e.get(WSU_ID): e for e in root.iter() if e.get(WSU_ID) is not None}
        for reference in signed_info.iter(f"{{{DS}}}Reference"):
            target = by_id[(reference.get("URI") or "")[1:]]
            method = reference.find(f"{{{DS}}}DigestMethod")
            uri = method.get("Algorithm") if method is not None else None
            canonical = etree.tostring(target, method="c14n", exclusive=True)
            digest = (
                hashlib.sha256(canonical).digest()
                if uri == algorithms.SHA256.uri
                else gost.digest(gost.STREEBOG_256, canonical)
            )
            expected = reference.findtext(f"{{{DS}}}DigestValue") or ""
            if base64.b64encode(digest).decode() != expected:
                raise RuntimeError(f"bench message: digest of {reference.get('URI')} differs")
        value = base64.b64decode(signature.findtext(f"{{{DS}}}SignatureValue") or "")
        if not verify(value, etree.tostring(signed_info, method="c14n", exclusive=True)):
            raise RuntimeError("bench message: the signature does not verify")
        forwarded = etree.tostring(root)
        for text in (forwarded, forwarded[:1500], forwarded[-1500:]):
            gateway_key.sign(text, ecdsa)

    work()  # fails here, loudly, if any check does not hold
    return work


def direct_commit_us(store_url: str, folder: Path, samples: int = 50) -> float:
    """µs per durable commit of one message done directly with the database driver (sqlite3
    in WAL with synchronous=FULL, or asyncpg), one at a time: the message's two envelopes,
    one job row and one receipt, in one transaction."""
    payload = b"x" * 10_240
    if not store_url.startswith(("postgresql://", "postgres://")):
        import sqlite3

        conn = sqlite3.connect(folder / "direct-commit.sqlite3", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE m (id TEXT PRIMARY KEY, raw BLOB, forwarded BLOB)")
        conn.execute("CREATE TABLE j (id INTEGER PRIMARY KEY, m TEXT, state TEXT)")
        conn.execute("CREATE TABLE r (id TEXT PRIMARY KEY, body BLOB)")
        began = time.perf_counter()
        for i in range(samples):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO m VALUES (?, ?, ?)", (str(i), payload, payload))
            conn.execute("INSERT INTO j (m, state) VALUES (?, 'pending')", (str(i),))
            conn.execute("INSERT INTO r VALUES (?, ?)", (str(i), payload[:2000]))
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - began
        conn.close()
        return elapsed / samples * 1e6

    async def postgres() -> float:
        import asyncpg

        conn = await asyncpg.connect(store_url)
        try:
            await conn.execute(
                "CREATE TEMP TABLE m (id TEXT PRIMARY KEY, raw BYTEA, forwarded BYTEA);"
                "CREATE TEMP TABLE j (id BIGSERIAL PRIMARY KEY, m TEXT, state TEXT);"
                "CREATE TEMP TABLE r (id TEXT PRIMARY KEY, body BYTEA)"
            )
            began = time.perf_counter()
            for i in range(samples):
                async with conn.transaction():
                    await conn.execute("INSERT INTO m VALUES ($1, $2, $2)", str(i), payload)
                    await conn.execute("INSERT INTO j (m, state) VALUES ($1, 'pending')", str(i))
                    await conn.execute("INSERT INTO r VALUES ($1, $2)", str(i), payload[:2000])
            return (time.perf_counter() - began) / samples * 1e6
        finally:
            await conn.close()

    return asyncio.run(postgres())


def keyinfo_variants(signed: bytes, der: bytes) -> dict[str, bytes]:
    """The same signed message with its KeyInfo rewritten in each SPEC §2 form. KeyInfo is
    not covered by SignedInfo, so every variant verifies with the same signature value."""
    variants: dict[str, bytes] = {}
    cert = x509.load_der_x509_certificate(der)
    b64 = base64.b64encode(der).decode("ascii")

    def rewrite(form: str, build: Callable[[etree._Element, etree._Element], None]) -> None:
        root = xmlsafe.parse(signed)
        security = root.find(f"{{{SOAP}}}Header/{{{WSSE}}}Security")
        assert security is not None
        key_info = security.find(f"{{{DS}}}Signature/{{{DS}}}KeyInfo")
        assert key_info is not None
        for child in list(key_info):
            key_info.remove(child)
        build(security, etree.SubElement(key_info, keyinfo.STR, nsmap={"wsse": WSSE}))
        variants[form] = etree.tostring(root, xml_declaration=True, encoding="UTF-8")

    def token(security: etree._Element, ref: etree._Element) -> None:
        bst = etree.Element(keyinfo.BST, nsmap={"wsu": WSU})
        bst.set(WSU_ID, "bench-token")
        bst.set("ValueType", keyinfo.X509V3)
        bst.text = b64
        security.insert(0, bst)
        etree.SubElement(ref, f"{{{WSSE}}}Reference", URI="#bench-token")

    def key_identifier(security: etree._Element, ref: etree._Element) -> None:
        identifier = etree.SubElement(ref, f"{{{WSSE}}}KeyIdentifier", ValueType=keyinfo.X509V3)
        identifier.text = b64

    def str_x509(security: etree._Element, ref: etree._Element) -> None:
        etree.SubElement(
            etree.SubElement(ref, f"{{{DS}}}X509Data"), f"{{{DS}}}X509Certificate"
        ).text = b64

    def issuer_serial(security: etree._Element, ref: etree._Element) -> None:
        pair = etree.SubElement(
            etree.SubElement(ref, f"{{{DS}}}X509Data"), f"{{{DS}}}X509IssuerSerial"
        )
        etree.SubElement(pair, f"{{{DS}}}X509IssuerName").text = cert.issuer.rfc4514_string()
        etree.SubElement(pair, f"{{{DS}}}X509SerialNumber").text = str(cert.serial_number)

    rewrite("BinarySecurityToken", token)
    rewrite("KeyIdentifier X509v3", key_identifier)
    rewrite("STR X509Data", str_x509)
    rewrite("IssuerSerial (certs/known)", issuer_serial)
    return variants


# --- the load benchmark -----------------------------------------------------------------------

BENCH_ROUTING = """\
version: 1
gateway: {{id: EEC-GW}}
participants:
  KZ-SW: {{country: KZ, addresses: ["EAEU://KZ/*"], endpoint: "https://127.0.0.1:1/unused"}}
  RU-SW: {{country: RU, addresses: ["EAEU://RU/*"], endpoint: "{endpoint}"}}
routes:
  - name: bench-to-addressee
    match: {{action: "int://CP/P.TS.01/*"}}
    deliver: addressee
    retry: {{attempts: 20, initial: 100ms, max: 2s, ttl: 1h}}
"""


@dataclass
class BenchReport:
    messages: int
    concurrency: int
    processes: int
    store: str
    size: int
    accepted: int
    intake_seconds: float
    p50_ms: float
    p99_ms: float
    delivered_seconds: float
    peak_rss_mb: float
    costs: list[Cost]
    commit_us: float
    direct_us: float
    """µs of the necessary work done directly with lxml and cryptography (necessary_work)."""
    direct_commit_us: float
    store_bytes: int
    stored_messages: int
    audit: bool
    cpu_seconds: dict[str, float]
    """CPU time (user + system) each process spent during the run: gateway(s), load, stub."""

    @property
    def rate(self) -> float:
        return self.accepted / self.intake_seconds if self.intake_seconds else 0.0

    @property
    def delivered_rate(self) -> float:
        """Sustained delivery: every accepted message delivered, over the whole run."""
        return self.accepted / self.delivered_seconds if self.delivered_seconds else 0.0

    @property
    def cores(self) -> int:
        return min(self.processes, os.cpu_count() or 1)

    @property
    def ceiling(self) -> float:
        """Messages/s of the necessary work done directly (no gateway code), on the cores the
        gateway processes can use."""
        return 1e6 / (self.direct_us + self.direct_commit_us) * self.cores

    @property
    def stage_ceiling(self) -> float:
        """Messages/s of the gateway's own necessary stages, run alone one after another."""
        per_message = sum(c.micros for c in self.costs if c.necessary) + self.commit_us
        return 1e6 / per_message * self.cores

    @property
    def bytes_per_message(self) -> float:
        return self.store_bytes / self.stored_messages if self.stored_messages else 0.0

    def lines(self) -> list[str]:
        out = [
            f"messages      {self.messages} of {self.size} bytes, concurrency {self.concurrency}, "
            f"{self.processes} gateway process(es), store {self.store}, audit log "
            f"{'on' if self.audit else 'OFF'}",
            f"accepted      {self.accepted} in {self.intake_seconds:.2f} s = {self.rate:.0f} msg/s",
            f"latency       p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms (intake, "
            "request to Accepted receipt)",
            f"delivered     {self.delivered_rate:.0f} msg/s, sustained (all {self.accepted} "
            f"delivered {self.delivered_seconds:.2f} s after the first was sent)",
            f"peak RSS      {self.peak_rss_mb:.0f} MiB per gateway process (largest)",
            "CPU used      "
            + ", ".join(
                f"{name} {seconds:.1f} s ({seconds / max(self.accepted, 1) * 1e6:.0f} µs/msg)"
                for name, seconds in self.cpu_seconds.items()
            ),
            "necessary work per message, measured now on this machine:",
        ]
        out += [f"  {c.name:<38} {c.micros:8.0f} µs" for c in self.costs if c.necessary]
        kind = "PostgreSQL" if self.store.startswith("postgres") else "SQLite"
        out.append(f"  {f'durable commit ({kind}, one at a time)':<38} {self.commit_us:8.0f} µs")
        out.append("for comparison:")
        out += [f"  {c.name:<38} {c.micros:8.0f} µs" for c in self.costs if not c.necessary]
        daily = self.bytes_per_message * 1e6
        out += [
            f"ceiling (necessary work) {self.ceiling:.0f} msg/s",
            f"  {'parse, validate, digests, verify, 3 ECDSA signs':<38} {self.direct_us:8.0f} µs"
            " (lxml + cryptography directly)",
            f"  {f'durable commit ({kind} driver directly)':<38} {self.direct_commit_us:8.0f} µs",
            f"ceiling (gateway stages) {self.stage_ceiling:.0f} msg/s",
            f"achieved      {self.rate / self.ceiling:.2f} of the necessary-work ceiling, "
            f"{self.rate / self.stage_ceiling:.2f} of the stage ceiling",
            f"store         {self.bytes_per_message / 1024:.1f} KiB per message "
            f"({self.stored_messages} messages, {self.store_bytes / 2**20:.1f} MiB); at 1 M "
            f"messages a day {daily / 1e9:.1f} GB a day, {daily * 90 / 1e12:.2f} TB after 90 "
            "days without retention",
        ]
        return out


def _commit_cost(store_url: str, samples: int = 50) -> float:
    """µs per durable commit of one message on the bench's store, one at a time (no batching:
    the worst case, what a lone message pays)."""
    from broker.store import open_store
    from broker.store.base import NewJob, NewMessage, StoredReceipt

    async def run() -> float:
        store = open_store(store_url, create=True)
        await store.open()
        payload = b"x" * 10_240
        start = time.perf_counter()
        for i in range(samples):
            track = f"commit-cost-{uuid.uuid4()}"
            await store.accept(
                NewMessage(
                    track, "KZ-SW", track, "d", "t", "r", "x", "a", "d", "to", payload, payload
                ),
                [NewJob(track, "message", "RU-SW", "https://x", 1, 1, 1, 1e12, 1e12)],
                StoredReceipt(f"r-{track}-{i}", "Accepted", "t", payload[:2000]),
            )
        elapsed = time.perf_counter() - start
        await store.close()
        return elapsed / samples * 1e6

    return asyncio.run(run())


def _store_size(store_url: str) -> tuple[int, int]:
    """(messages, bytes) of the store after the run: everything a message costs on disk,
    indexes, receipts and audit log included."""
    from broker.store import open_store

    async def run() -> tuple[int, int]:
        store = open_store(store_url)
        await store.open()
        try:
            return await store.size()
        finally:
            await store.close()

    return asyncio.run(run())


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _signed_messages(
    certs: Path, count: int, *, use_gost: bool = False
) -> tuple[Sender, bytes, list[bytes]]:
    """(sender, conformity document, ``count`` signed ~10 KB messages with their own IDs)."""
    key_path, cert_path = (
        signing_identity(certs / "participants" / "KZ-SW")
        if use_gost
        else (
            certs / "participants" / "KZ-SW" / "key.pem",
            certs / "participants" / "KZ-SW" / "cert.pem",
        )
    )
    sender = Sender(
        algorithms.load_private_pem(key_path.read_bytes()),
        x509.load_pem_x509_certificate(cert_path.read_bytes()),
    )
    document = (
        Path(__file__).resolve().parent.parent / "tests" / "documents" / "conformity.xml"
    ).read_bytes()
    der = sender.certificate.public_bytes(serialization.Encoding.DER)
    template = conformity_message(document).decode()
    first_id = template.index("urn:uuid:")  # the MessageID: each message gets its own
    end = first_id + len("urn:uuid:") + 36
    bodies = [
        sign_envelope(
            parse_envelope(
                xmlsafe.parse(
                    (template[:first_id] + f"urn:uuid:{uuid.uuid4()}" + template[end:]).encode()
                )
            ),
            sender.key,
            der,
        )
        for _ in range(count)
    ]
    return sender, document, bodies


async def _drive(
    bodies: list[bytes],
    *,
    port: int,
    admins: list[int],
    stub_port: int,
    certs: Path,
    concurrency: int,
) -> tuple[int, float, float, list[float]]:
    """Send every message; return (accepted, intake seconds, seconds until all delivered,
    latencies)."""
    context = ssl.create_default_context(cafile=str(certs / "gateway" / "ca.pem"))
    identity = certs / "participants" / "KZ-SW"
    context.load_cert_chain(identity / "cert.pem", identity / "key.pem")
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        for admin in admins:  # wait until every gateway is ready
            for _ in range(600):
                try:
                    async with session.get(f"http://127.0.0.1:{admin}/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        semaphore = asyncio.Semaphore(concurrency)
        accepted = 0

        async def one(body: bytes) -> None:
            nonlocal accepted
            async with semaphore:
                began = time.perf_counter()
                async with session.post(
                    f"https://127.0.0.1:{port}/v1/messages",
                    data=io.BytesIO(body),
                    ssl=context,
                    headers={"Content-Type": "application/soap+xml"},
                ) as response:
                    await response.read()
                    accepted += response.status == 202
                latencies.append(time.perf_counter() - began)

        started = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        intake = time.perf_counter() - started
        stub = _stub_context(certs)
        while time.perf_counter() - started < 600:
            async with session.get(f"https://127.0.0.1:{stub_port}/count", ssl=stub) as r:
                if (await r.json())["inbox"] >= accepted:
                    break
            await asyncio.sleep(0.05)
        return accepted, intake, time.perf_counter() - started, sorted(latencies)


def run_bench(
    *,
    messages: int,
    concurrency: int,
    processes: int,
    store: str | None,
    xsd: Path,
    folder: Path,
    audit: bool = True,
    use_gost: bool = False,
) -> BenchReport:
    """Start the destination and gateway processes, drive the load, measure, stop them.
    ``use_gost``: KZ-SW signs with GOST R 34.10-2012 (its TLS identity stays ECDSA)."""
    certs = folder / "certs"
    pki.create_demo_pki(certs, {"KZ-SW": "KZ", "RU-SW": "RU"})
    if use_gost:
        create_gost_identities(certs, {"KZ-SW": "KZ"}, {"KZ"})
    sender, document, bodies = _signed_messages(certs, messages, use_gost=use_gost)
    # A PostgreSQL bench runs in a fresh schema of its own, dropped at the end.
    schema = None
    if store and store.startswith(("postgresql://", "postgres://")):
        schema, store_url = asyncio.run(create_schema(store, prefix="bench"))
    else:
        store_url = store or f"sqlite:///{folder / 'bench.sqlite3'}"
    port, admins = _free_port(), [_free_port() for _ in range(processes)]
    started: list[subprocess.Popen[bytes]] = []
    try:
        stub = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "broker.simulator",
                "--certs",
                str(certs),
                "--participant",
                "RU-SW",
                "--no-verify",
            ],
            stdout=subprocess.PIPE,
        )
        started.append(stub)
        assert stub.stdout is not None
        stub_port = int(json.loads(stub.stdout.readline())["port"])
        routing = folder / "routing.yaml"
        routing.write_text(
            BENCH_ROUTING.format(endpoint=f"https://127.0.0.1:{stub_port}/eaeu/inbox")
        )
        for i, admin in enumerate(admins):
            with open(folder / f"serve-{i}.log", "wb") as log:
                started.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "broker.cli",
                            "serve",
                            "--routing",
                            str(routing),
                            "--certs",
                            str(certs),
                            "--xsd",
                            str(xsd),
                            "--store",
                            store_url,
                            "--listen",
                            f"127.0.0.1:{port}",
                            "--admin",
                            f"127.0.0.1:{admin}",
                            "--max-in-flight",
                            "100000",
                            *([] if audit else ["--no-audit"]),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=log,
                    )
                )
        before = {p.pid: _cpu_seconds(p.pid) for p in started}
        load_before = time.process_time()
        accepted, intake, delivered, latencies = asyncio.run(
            _drive(
                bodies,
                port=port,
                admins=admins,
                stub_port=stub_port,
                certs=certs,
                concurrency=concurrency,
            )
        )
        cpu = {
            "gateway": sum(_cpu_seconds(p.pid) - before[p.pid] for p in started[1:]),
            "load generator": time.process_time() - load_before,
            "destination stub": _cpu_seconds(stub.pid) - before[stub.pid],
        }
        rss = max(_rss_mb(p.pid) for p in started[1:])
    finally:
        for process in started:
            process.send_signal(signal.SIGTERM)
        for process in started:
            process.wait(timeout=60)
    try:
        stored_messages, store_bytes = _store_size(store_url)
        commit_us = _commit_cost(store_url)
        direct_commit = direct_commit_us(store_url, folder)
    finally:
        if schema is not None and store is not None:
            asyncio.run(drop_schema(store, schema))
    table = parse_routing(routing.read_bytes()).table
    assert table is not None
    size, costs, direct = measure_costs(
        Catalog.load(xsd),
        table,
        TrustStore.load(certs),
        GatewayIdentity.load(certs),
        sender,
        document,
    )
    return BenchReport(
        messages=messages,
        concurrency=concurrency,
        processes=processes,
        store=store_url,
        size=size,
        accepted=accepted,
        intake_seconds=intake,
        p50_ms=latencies[len(latencies) // 2] * 1000,
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        delivered_seconds=delivered,
        peak_rss_mb=rss,
        costs=costs,
        commit_us=commit_us,
        direct_us=direct,
        direct_commit_us=direct_commit,
        store_bytes=store_bytes,
        stored_messages=stored_messages,
        audit=audit,
        cpu_seconds=cpu,
    )


def _stub_context(certs: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs / "trust" / "RU" / "ca.pem"))
    tls = certs / "tls"
    context.load_cert_chain(tls / "cert.pem", tls / "key.pem")
    return context
