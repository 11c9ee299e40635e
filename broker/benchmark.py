"""Per-message cost of the work intake must do, measured on this machine (`broker bench`).

Each stage is timed on its own on a ~10 KB signed message, next to the raw ``cryptography`` cost
of the same operation, so the gap (canonicalisation, tree work, Python) is visible. The sum of the
necessary stages is the ceiling a gateway process can reach; the load benchmark compares the
throughput it achieves with that ceiling.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from broker import clock, pki, xmlsafe
from broker.compose import Addressing, compose_envelope
from broker.envelope import parse_envelope
from broker.receipts import Receipt, build_receipt, sha256_b64
from broker.routing.table import RoutingTable
from broker.schemas import Catalog
from broker.signing.sign import countersign, sign_envelope
from broker.signing.trust import GatewayIdentity, TrustStore
from broker.signing.verify import Verified, verify_sender
from broker.validation import check_document

PRODUCT = "trts:ProductDetails"


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


def measure_costs(
    catalog: Catalog,
    table: RoutingTable,
    trust: TrustStore,
    gateway: GatewayIdentity,
    sender: pki.Issued,
    document: bytes,
) -> tuple[int, list[Cost]]:
    """(message size, costs) for one signed conformity message from ``sender``."""
    from cryptography.hazmat.primitives import serialization

    der = sender.certificate.public_bytes(serialization.Encoding.DER)
    signed = sign_envelope(
        parse_envelope(xmlsafe.parse(conformity_message(document))), sender.key, der
    )
    now = clock.now()

    def verify() -> Verified:
        return verify_sender(check_document(signed, catalog), trust, table.participants, at=now)

    verified = verify()
    track = "urn:uuid:00000000-0000-4000-8000-000000000000"

    def forward() -> bytes:
        return countersign(verify(), gateway, track, clock.format_time(now))

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

    parse_us = _time(lambda: xmlsafe.parse(signed))
    envelope_us = _time(lambda: parse_envelope(xmlsafe.parse(signed))) - parse_us
    validate_us = _time(lambda: check_document(signed, catalog)) - parse_us - envelope_us
    verify_us = _time(verify) - parse_us - envelope_us - validate_us
    countersign_us = _time(forward) - _time(verify)
    costs = [
        Cost("parse (hardened door)", parse_us),
        Cost("envelope rules", envelope_us),
        Cost("schema validation (lxml)", validate_us),
        Cost("sender signature verify + trust", verify_us),
        Cost("countersign + serialise", countersign_us),
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
    try:
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
    return len(signed), costs
