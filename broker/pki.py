"""A development PKI laid out as SPEC §11 says (``broker certs demo``). Never for production.

Creates one CA per country of routing.yaml's participants (``certs/trust/<CC>/ca.pem``), a
separate gateway CA (``certs/gateway/ca.pem``) with the gateway's signing identity
(``certs/gateway/{key,cert}.pem``, ECDSA P-256 by default, RSA-2048 on request) and TLS identity
(``certs/tls/{key,cert}.pem``), and a key and certificate per participant
(``certs/participants/<ID>/{key,cert}.pem``: subject CN = participant id, C = country,
digitalSignature, client and server auth, SAN localhost and 127.0.0.1) for the demo, the tests
and integrators trying the gateway. Existing files are kept unless ``force`` is given.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from broker.signing import algorithms
from broker.signing.algorithms import StandardPrivateKey

KeyType = Literal["ec", "rsa"]
COUNTRY_NAMES = {
    "AM": "Armenia",
    "BY": "Belarus",
    "KZ": "Kazakhstan",
    "KG": "Kyrgyzstan",
    "RU": "Russia",
    "EEC": "Eurasian Economic Commission",
}


@dataclass(frozen=True)
class Issued:
    key: StandardPrivateKey
    certificate: x509.Certificate


def new_key(kind: KeyType = "ec") -> StandardPrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, country: str | None, organisation: str | None = None) -> x509.Name:
    attributes = []
    if country and len(country) == 2:
        attributes.append(x509.NameAttribute(NameOID.COUNTRY_NAME, country))
    if organisation:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _key_usage(*, signer: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signer,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(
    common_name: str,
    country: str | None,
    *,
    days: int = 3650,
    now: dt.datetime | None = None,
    issuer: Issued | None = None,
) -> Issued:
    """A CA certificate (self-signed root, or an intermediate when ``issuer`` is given)."""
    now = now or dt.datetime.now(dt.UTC)
    key = new_key("ec")
    signer_key = issuer.key if issuer else key
    subject = _name(common_name, country, "EAEU gateway development PKI")
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(signer=False, ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()),
            critical=False,
        )
    )
    return Issued(key, builder.sign(signer_key, hashes.SHA256()))


def make_leaf(
    issuer: Issued,
    common_name: str,
    country: str | None,
    *,
    key_type: KeyType = "ec",
    days: int = 730,
    now: dt.datetime | None = None,
    digital_signature: bool = True,
    not_before: dt.datetime | None = None,
    key: StandardPrivateKey | None = None,
) -> Issued:
    """An end-entity certificate for signing and TLS (client and server) on loopback."""
    now = now or dt.datetime.now(dt.UTC)
    key = key or new_key(key_type)
    start = not_before or now - dt.timedelta(hours=1)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, country))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signer=digital_signature, ca=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    return Issued(key, builder.sign(issuer.key, hashes.SHA256()))


def make_crl(
    issuer: Issued, revoked: Iterable[x509.Certificate], *, now: dt.datetime | None = None
) -> x509.CertificateRevocationList:
    now = now or dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=7))
    )
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(now - dt.timedelta(minutes=1))
            .build()
        )
    return builder.sign(issuer.key, hashes.SHA256())


def key_pem(key: StandardPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def write_private(path: Path, data: bytes) -> None:
    """Write a key readable by its owner only, from the first byte: created 0600 (never
    written world-readable under umask 022 and chmod-ed afterwards)."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def write_identity(folder: Path, issued: Issued) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_private(folder / "key.pem", key_pem(issued.key))
    (folder / "cert.pem").write_bytes(cert_pem(issued.certificate))


def load_identity(folder: Path) -> Issued:
    loaded = serialization.load_pem_private_key((folder / "key.pem").read_bytes(), password=None)
    try:
        key = algorithms.standard_private(loaded)
    except ValueError as exc:
        raise ValueError(f"{folder / 'key.pem'}: {exc}") from None
    return Issued(key, x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes()))


def _load_ca(cert_path: Path, key_path: Path) -> Issued | None:
    """A CA created by an earlier run, if both its certificate and its key are still there."""
    if cert_path.exists() and key_path.exists():
        key = algorithms.standard_private(
            serialization.load_pem_private_key(key_path.read_bytes(), None)
        )
        return Issued(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))
    return None


def _write_ca(cert_path: Path, key_path: Path, issued: Issued) -> None:
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.write_bytes(cert_pem(issued.certificate))
    write_private(key_path, key_pem(issued.key))


def create_demo_pki(
    out: Path,
    participants: dict[str, str],
    *,
    gateway_key: KeyType = "ec",
    force: bool = False,
) -> list[str]:
    """Create what is missing under ``out`` for ``participants`` (id → country); return lines.

    The development CAs' keys are kept in ``dev-ca-keys/`` so a later run can add
    participants; a real deployment has no such folder (its CAs' keys stay with the CAs).
    """
    made: list[str] = []
    cas: dict[str, Issued] = {}
    keys = out / "dev-ca-keys"
    for country in sorted(set(participants.values())):
        cert_path, key_path = out / "trust" / country / "ca.pem", keys / f"{country}.pem"
        existing = None if force else _load_ca(cert_path, key_path)
        if existing is None:
            existing = make_ca(f"{COUNTRY_NAMES.get(country, country)} development CA", country)
            _write_ca(cert_path, key_path, existing)
            made.append(f"trust/{country}/ca.pem")
        cas[country] = existing
    (out / "crl").mkdir(parents=True, exist_ok=True)

    cert_path, key_path = out / "gateway" / "ca.pem", keys / "gateway.pem"
    gateway_ca = None if force else _load_ca(cert_path, key_path)
    if gateway_ca is None:
        gateway_ca = make_ca("EEC gateway development CA", None)
        _write_ca(cert_path, key_path, gateway_ca)
        made.append("gateway/ca.pem")
    if force or not (out / "gateway" / "key.pem").exists():
        write_identity(
            out / "gateway", make_leaf(gateway_ca, "EEC-GW signing", None, key_type=gateway_key)
        )
        made.append(f"gateway/key.pem, gateway/cert.pem ({gateway_key})")
    if force or not (out / "tls" / "key.pem").exists():
        write_identity(out / "tls", make_leaf(gateway_ca, "localhost", None))
        made.append("tls/key.pem, tls/cert.pem")
    if force or not (out / "conformance" / "key.pem").exists():
        # Countersigns `broker conformance` probes: issued by the gateway CA, never the
        # gateway's signing key, its CN saying what it is (SPEC §10).
        write_identity(out / "conformance", make_leaf(gateway_ca, "EEC-GW-CONFORMANCE", None))
        made.append("conformance/key.pem, conformance/cert.pem")
    for pid, country in sorted(participants.items()):
        folder = out / "participants" / pid
        if force or not (folder / "key.pem").exists():
            write_identity(folder, make_leaf(cas[country], pid, country))
            made.append(f"participants/{pid}/key.pem, cert.pem")
    return made
