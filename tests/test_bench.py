"""`broker bench` as an operator runs it: a small run completes, prints the KeyInfo-form
verify costs and honours --no-audit (which it once parsed and ignored)."""

from __future__ import annotations

from tests.test_cli_validate import broker


def test_small_bench_without_audit() -> None:
    """Every message accepted, the audit log said to be off, each KeyInfo form costed."""
    result = broker("bench", "--messages", "20", "--concurrency", "4", "--no-audit")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "audit log OFF" in result.stdout
    assert "accepted      20 in" in result.stdout
    for form in ("BinarySecurityToken", "KeyIdentifier X509v3", "IssuerSerial (certs/known)"):
        assert f"verify + trust, {form}" in result.stdout
