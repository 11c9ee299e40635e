"""`broker certs demo` and `broker sign` as an integrator runs them."""

from __future__ import annotations

from pathlib import Path

from broker import clock
from broker.schemas import Catalog
from broker.signing.trust import TrustStore
from broker.signing.verify import verify_sender
from broker.validation import check_document
from tests.conftest import DATA, ROOT
from tests.pki_support import Pki
from tests.test_cli_validate import broker


def test_certs_demo_creates_the_spec_layout_and_keeps_existing_keys(tmp_path: Path) -> None:
    """One CA per country of routing.yaml, gateway and TLS identities, participants; rerun
    keeps what exists."""
    out = tmp_path / "certs"
    result = broker("certs", "demo", "--out", str(out))
    assert result.returncode == 0, result.stderr
    for path in (
        "trust/KZ/ca.pem",
        "trust/EEC/ca.pem",
        "gateway/key.pem",
        "gateway/cert.pem",
        "gateway/ca.pem",
        "tls/key.pem",
        "tls/cert.pem",
        "participants/KZ-SW/key.pem",
        "participants/RU-SW/cert.pem",
    ):
        assert (out / path).is_file(), path
    assert sorted(p.name for p in (out / "trust").iterdir()) == [
        "AM",
        "BY",
        "EEC",
        "KG",
        "KZ",
        "RU",
    ]
    assert (out / "gateway" / "key.pem").stat().st_mode & 0o077 == 0
    before = (out / "gateway" / "key.pem").read_bytes()
    again = broker("certs", "demo", "--out", str(out))
    assert "nothing new" in again.stdout
    assert (out / "gateway" / "key.pem").read_bytes() == before
    TrustStore.load(out)  # every trust/ file is a CA certificate


def test_broker_sign_output_is_accepted_by_the_gateway(
    test_pki: Pki, tmp_path: Path, catalog: Catalog
) -> None:
    """`broker sign --key --cert` produces a message the sender stage accepts."""
    key, cert = test_pki.key_and_cert_files("BY-SW", tmp_path)
    out = tmp_path / "signed.xml"
    result = broker(
        "sign",
        "--key",
        str(key),
        "--cert",
        str(cert),
        "-o",
        str(out),
        str(DATA / "valid-dangerous-product-alert-by-to-kz.xml"),
    )
    assert result.returncode == 0, result.stderr
    verified = verify_sender(
        check_document(out.read_bytes(), catalog),
        test_pki.trust(),
        test_pki.table.participants,
        at=clock.now(),
    )
    assert verified.sender.id == "BY-SW"


def test_broker_sign_refuses_an_already_signed_or_broken_envelope(
    test_pki: Pki, tmp_path: Path
) -> None:
    """Signing twice or signing a non-envelope exits 1 with the reason."""
    key, cert = test_pki.key_and_cert_files("KZ-SW", tmp_path)
    signed = tmp_path / "signed.xml"
    assert (
        broker(
            "sign",
            "--key",
            str(key),
            "--cert",
            str(cert),
            "-o",
            str(signed),
            str(DATA / "valid-conformity-kz-to-ru.xml"),
        ).returncode
        == 0
    )
    again = broker("sign", "--key", str(key), "--cert", str(cert), str(signed))
    assert again.returncode == 1
    assert "already has a wsse:Security" in again.stderr
    broken = broker(
        "sign", "--key", str(key), "--cert", str(cert), str(DATA / "invalid-MALFORMED_XML-xxe.xml")
    )
    assert broken.returncode == 1
    assert "MALFORMED_XML" in broken.stderr


def test_repository_files_stay_key_free() -> None:
    """Generated keys are git-ignored: nothing under certs/ but the README is committed."""
    ignore = (ROOT / ".gitignore").read_text()
    assert "certs/**/*.pem" in ignore
