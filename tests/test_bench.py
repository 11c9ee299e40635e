"""`broker bench` as an operator runs it: a small run completes, prints the KeyInfo-form
verify costs and honours --no-audit (which it once parsed and ignored)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from broker import benchmark, pki, xmlsafe
from broker.envelope import parse_envelope
from broker.schemas import Catalog
from tests.conftest import ROOT
from tests.gost_support import require_gost
from tests.test_cli_validate import broker


def test_small_bench_without_audit() -> None:
    """Every message accepted, the audit log said to be off, each KeyInfo form costed."""
    result = broker("bench", "--messages", "20", "--concurrency", "4", "--no-audit")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "audit log OFF" in result.stdout
    assert "accepted      20 in" in result.stdout
    for form in ("BinarySecurityToken", "KeyIdentifier X509v3", "IssuerSerial (certs/known)"):
        assert f"verify + trust, {form}" in result.stdout
    lines = result.stdout.splitlines()
    ceiling = [line for line in lines if line.startswith("ceiling (necessary work) ")]
    assert len(ceiling) == 1
    assert re.fullmatch(r"ceiling \(necessary work\) \d+ msg/s", ceiling[0]), ceiling
    assert any(re.match(r"delivered\s+\d+ msg/s, sustained", line) for line in lines)
    assert any(re.match(r"store\s+[\d.]+ KiB per message", line) for line in lines)
    assert any(line.startswith("ceiling (gateway stages) ") for line in lines)


def test_the_necessary_work_refuses_a_tampered_message(tmp_path: Path) -> None:
    """The direct measure checks what it does: a changed body fails its digest, so the ceiling
    cannot come from skipped work."""
    pki.create_demo_pki(tmp_path, {"KZ-SW": "KZ", "RU-SW": "RU"})
    sender, _, (signed,) = benchmark._signed_messages(tmp_path, 1)
    catalog = Catalog.load(ROOT / "xsd")
    envelope = parse_envelope(xmlsafe.parse(signed))
    schema = catalog.compiled(catalog.identify(envelope.document))
    key = benchmark.direct_verify(sender.certificate)
    benchmark.necessary_work(signed, schema, key)()
    tampered = signed.replace(b"2026-11-20<", b"2026-11-21<", 1)
    assert tampered != signed
    with pytest.raises(RuntimeError, match="digest"):
        benchmark.necessary_work(tampered, schema, key)


def test_gost_bench_costs_gost_beside_ecdsa() -> None:
    """`bench --gost`: GOST-signed traffic is all accepted; GOST verify and Streebog are
    costed beside ECDSA verify and SHA-256."""
    require_gost()
    result = broker("bench", "--messages", "10", "--concurrency", "2", "--gost")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "accepted      10 in" in result.stdout
    for line in (
        "raw: GOST R 34.10-2012-256 verify",
        "raw: Streebog-256 of the message",
        "raw: ECDSA P-256 verify",
        "raw: SHA-256 of the message",
    ):
        assert line in result.stdout
