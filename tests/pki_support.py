"""Test support for signatures: a development PKI with bad certificates for the attack tests,
helpers to sign envelopes as a participant, and the xmlsec1 command line."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker import clock, pki, xmlsafe
from broker.envelope import parse_envelope
from broker.routing.load import load_routing
from broker.routing.table import RoutingTable
from broker.schemas import Catalog
from broker.signing.sign import sign_envelope
from broker.signing.trust import GatewayIdentity, TrustStore
from broker.signing.verify import Verified, verify_sender
from broker.validation import check_document

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


@dataclass(frozen=True)
class Pki:
    folder: Path
    table: RoutingTable
    identities: dict[str, pki.Issued]
    """Participant identities plus the bad ones: expired, revoked, no-ds, foreign, ru-by-kz,
    rsa1024."""

    def der(self, name: str) -> bytes:
        return self.identities[name].certificate.public_bytes(serialization.Encoding.DER)

    def trust(self) -> TrustStore:
        return TrustStore.load(self.folder)

    def gateway(self) -> GatewayIdentity:
        return GatewayIdentity.load(self.folder)

    def key_and_cert_files(self, name: str, tmp: Path) -> tuple[Path, Path]:
        issued = self.identities[name]
        key, cert = tmp / f"{name}-key.pem", tmp / f"{name}-cert.pem"
        key.write_bytes(pki.key_pem(issued.key))
        cert.write_bytes(pki.cert_pem(issued.certificate))
        return key, cert


def country_ca(folder: Path, country: str) -> pki.Issued:
    """The development CA of ``country`` with its key, to issue extra test certificates."""
    key = serialization.load_pem_private_key(
        (folder / "dev-ca-keys" / f"{country}.pem").read_bytes(), None
    )
    assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    cert = x509.load_pem_x509_certificate((folder / "trust" / country / "ca.pem").read_bytes())
    return pki.Issued(key, cert)


def build_test_pki(folder: Path) -> Pki:
    """The repository's participants plus the bad identities, under ``folder``."""
    table = load_routing(ROOT / "routing.yaml").table
    assert table is not None
    pki.create_demo_pki(folder, {p.id: p.country for p in table.participants.values()})
    identities = {
        pid: pki.load_identity(folder / "participants" / pid) for pid in table.participants
    }
    kz = country_ca(folder, "KZ")
    now = clock.now()
    identities["expired"] = pki.make_leaf(
        kz, "KZ-SW", "KZ", not_before=now - dt.timedelta(days=40), days=30
    )
    identities["revoked"] = pki.make_leaf(kz, "KZ-SW", "KZ")
    identities["no-ds"] = pki.make_leaf(kz, "KZ-SW", "KZ", digital_signature=False)
    identities["ru-by-kz"] = pki.make_leaf(kz, "RU-SW", "KZ")
    identities["rsa1024"] = pki.make_leaf(
        kz, "KZ-SW", "KZ", key=rsa.generate_private_key(public_exponent=65537, key_size=1024)
    )
    foreign = pki.make_ca("Unknown CA", "KZ")
    identities["foreign"] = pki.make_leaf(foreign, "KZ-SW", "KZ")
    crl = pki.make_crl(kz, [identities["revoked"].certificate])
    (folder / "crl" / "kz.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return Pki(folder, table, identities)


def sign_as(
    test_pki: Pki,
    name: str,
    sample: str = "valid-conformity-kz-to-ru.xml",
    edit: Callable[[str], str] | None = None,
) -> bytes:
    """A sample envelope (optionally edited first) signed with identity ``name``."""
    text = (DATA / sample).read_text(encoding="utf-8")
    if edit is not None:
        text = edit(text)
    envelope = parse_envelope(xmlsafe.parse(text.encode()))
    return sign_envelope(envelope, test_pki.identities[name].key, test_pki.der(name))


def verify_bytes(
    test_pki: Pki, catalog: Catalog, data: bytes, tls: str | None = "KZ-SW"
) -> Verified:
    return verify_sender(
        check_document(data, catalog),
        test_pki.trust(),
        test_pki.table.participants,
        at=clock.now(),
        tls_participant=tls,
    )


# xmlsec1 must be told which attributes are IDs: wsu:Id on each signed part, Id on signatures.
XMLSEC_ID_ATTRS = [
    arg
    for element in (
        "http://www.w3.org/2003/05/soap-envelope:Body",
        "http://www.w3.org/2005/08/addressing:MessageID",
        "http://www.w3.org/2005/08/addressing:To",
        "http://www.w3.org/2005/08/addressing:ReplyTo",
        "http://www.w3.org/2005/08/addressing:Action",
        "http://www.w3.org/2005/08/addressing:RelatesTo",
        "urn:EEC:Interaction:v1.0:ProcedureID",
        "urn:EEC:Interaction:v1.0:ConversationID",
        "urn:EEC:Interaction:v1.0:Integration",
        "http://www.w3.org/2000/09/xmldsig#:Signature",
        "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
        ":Timestamp",
        "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
        ":BinarySecurityToken",
    )
    for arg in ("--id-attr:Id", element)
]


def run_xmlsec(xmlsec1: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([xmlsec1, *args], capture_output=True, text=True, timeout=60, check=False)
