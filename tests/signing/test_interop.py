"""Interoperability with independent XML-DSig implementations: xmlsec1 and signxml.

What they sign that fits the profile, we accept; what we sign, they verify; what is tampered,
all of us refuse. Where the profile is stricter than XML-DSig itself (SHA-1), xmlsec1 accepts a
signature that we refuse — the test records that difference on purpose.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree
from signxml.verifier import SignatureConfiguration, XMLVerifier

from broker import clock, pki, xmlsafe
from broker.envelope import SOAP, WSSE, parse_envelope
from broker.errors import SignatureInvalid
from broker.receipts import Receipt, build_receipt, sha256_b64, verify_receipt
from broker.schemas import Catalog
from broker.signing.sign import countersign
from tests.conftest import DATA
from tests.pki_support import XMLSEC_ID_ATTRS, Pki, run_xmlsec, sign_as, verify_bytes

DS = "http://www.w3.org/2000/09/xmldsig#"
EXC = "http://www.w3.org/2001/10/xml-exc-c14n#"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"

pytestmark = pytest.mark.xmlsec


def _template(method: str, sample: str = "valid-conformity-kz-to-ru.xml") -> bytes:
    """A SPEC §2 signature template for xmlsec1 --sign: every part referenced by wsu:Id."""
    envelope = parse_envelope(xmlsafe.parse((DATA / sample).read_bytes()))
    parts = [envelope.body_id] + [h.ref_id for h in envelope.headers]
    header = envelope.root.find(f"{{{SOAP}}}Header")
    security = etree.SubElement(header, f"{{{WSSE}}}Security", nsmap={"wsse": WSSE})
    signature = etree.SubElement(security, f"{{{DS}}}Signature", Id="sig-xmlsec", nsmap={"ds": DS})
    info = etree.SubElement(signature, f"{{{DS}}}SignedInfo")
    etree.SubElement(info, f"{{{DS}}}CanonicalizationMethod", Algorithm=EXC)
    etree.SubElement(info, f"{{{DS}}}SignatureMethod", Algorithm=method)
    for ref_id in parts:
        ref = etree.SubElement(info, f"{{{DS}}}Reference", URI=f"#{ref_id}")
        transforms = etree.SubElement(ref, f"{{{DS}}}Transforms")
        etree.SubElement(transforms, f"{{{DS}}}Transform", Algorithm=EXC)
        etree.SubElement(ref, f"{{{DS}}}DigestMethod", Algorithm=SHA256)
        etree.SubElement(ref, f"{{{DS}}}DigestValue")
    etree.SubElement(signature, f"{{{DS}}}SignatureValue")
    key_info = etree.SubElement(signature, f"{{{DS}}}KeyInfo")
    etree.SubElement(key_info, f"{{{DS}}}X509Data")
    data: bytes = etree.tostring(
        envelope.root.getroottree(), xml_declaration=True, encoding="UTF-8"
    )
    return data


def _xmlsec_sign(xmlsec1: str, tmp_path: Path, test_pki: Pki, name: str, method: str) -> bytes:
    key, cert = test_pki.key_and_cert_files(name, tmp_path)
    template = tmp_path / "template.xml"
    template.write_bytes(_template(method))
    out = tmp_path / "signed.xml"
    result = run_xmlsec(
        xmlsec1,
        "--sign",
        "--privkey-pem",
        f"{key},{cert}",
        *XMLSEC_ID_ATTRS,
        "--output",
        str(out),
        str(template),
    )
    assert result.returncode == 0, result.stderr
    return out.read_bytes()


@pytest.fixture(scope="module")
def rsa_pki(test_pki: Pki) -> Pki:
    """The session PKI plus an RSA-2048 identity for KZ-SW."""
    from tests.pki_support import country_ca as _ca

    kz = _ca(test_pki.folder, "KZ")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    test_pki.identities["KZ-SW-rsa"] = pki.make_leaf(kz, "KZ-SW", "KZ", key=key)
    return test_pki


@pytest.mark.parametrize(("name", "method"), [("KZ-SW", ECDSA_SHA256), ("KZ-SW-rsa", RSA_SHA256)])
def test_envelope_signed_by_xmlsec1_is_accepted(
    xmlsec1: str, tmp_path: Path, rsa_pki: Pki, catalog: Catalog, name: str, method: str
) -> None:
    """xmlsec1 --sign from a SPEC-conformant template gives a message we accept."""
    signed = _xmlsec_sign(xmlsec1, tmp_path, rsa_pki, name, method)
    verified = verify_bytes(rsa_pki, catalog, signed)
    assert verified.sender.id == "KZ-SW"
    assert verified.signature.method.uri == method


def test_rsa_sha1_signed_by_xmlsec1_is_refused_though_xmlsec1_accepts_it(
    xmlsec1: str, tmp_path: Path, rsa_pki: Pki, catalog: Catalog
) -> None:
    """A real RSA-SHA1 signature: valid XML-DSig, refused by the profile (downgrade attack)."""
    signed = _xmlsec_sign(xmlsec1, tmp_path, rsa_pki, "KZ-SW-rsa", RSA_SHA1)
    path = tmp_path / "sha1.xml"
    path.write_bytes(signed)
    ca = rsa_pki.folder / "trust" / "KZ" / "ca.pem"
    accepted = run_xmlsec(
        xmlsec1, "--verify", "--trusted-pem", str(ca), *XMLSEC_ID_ATTRS, str(path)
    )
    assert accepted.returncode == 0, accepted.stderr
    with pytest.raises(SignatureInvalid, match="rsa-sha1"):
        verify_bytes(rsa_pki, catalog, signed)


def _xmlsec_verify(
    xmlsec1: str, tmp_path: Path, data: bytes, ca: Path, node_id: str | None = None
) -> bool:
    path = tmp_path / "to-verify.xml"
    path.write_bytes(data)
    args = ["--verify", "--trusted-pem", str(ca), *XMLSEC_ID_ATTRS]
    if node_id:
        args += ["--node-id", node_id]
    return run_xmlsec(xmlsec1, *args, str(path)).returncode == 0


def _signxml_verifies(data: bytes, ca: Path, references: int) -> bool:
    try:
        XMLVerifier().verify(
            data,
            ca_pem_file=str(ca),
            expect_config=SignatureConfiguration(expect_references=references),
        )
    except Exception:  # signxml raises several types for a bad signature
        return False
    return True


def test_our_sender_signature_verifies_in_xmlsec1_and_signxml(
    xmlsec1: str, tmp_path: Path, test_pki: Pki
) -> None:
    """What `broker sign` produces verifies with both independent implementations."""
    signed = sign_as(test_pki, "KZ-SW")
    ca = test_pki.folder / "trust" / "KZ" / "ca.pem"
    assert _xmlsec_verify(xmlsec1, tmp_path, signed, ca)
    assert _signxml_verifies(signed, ca, 7)
    tampered = signed.replace(b"9405210000", b"9405210001")
    assert not _xmlsec_verify(xmlsec1, tmp_path, tampered, ca)
    assert not _signxml_verifies(tampered, ca, 7)


def test_forwarded_envelope_verifies_in_xmlsec1_both_signatures(
    xmlsec1: str, tmp_path: Path, test_pki: Pki, catalog: Catalog
) -> None:
    """At a destination, the sender's signature verifies with the sender's CA and the gateway's
    with certs/gateway/ca.pem; signxml agrees on the sender's."""
    verified = verify_bytes(test_pki, catalog, sign_as(test_pki, "KZ-SW"))
    track = "urn:uuid:0b6f1a9e-0000-4000-8000-5b1f8c0e8a7e"
    forwarded = countersign(verified, test_pki.gateway(), track, clock.format_time(clock.now()))
    sender_id = verified.signature.element.get("Id")
    assert sender_id is not None
    kz_ca = test_pki.folder / "trust" / "KZ" / "ca.pem"
    gw_ca = test_pki.folder / "gateway" / "ca.pem"
    assert _xmlsec_verify(xmlsec1, tmp_path, forwarded, kz_ca, sender_id)
    assert _xmlsec_verify(xmlsec1, tmp_path, forwarded, gw_ca, "gw-sig-" + track[9:])
    assert not _xmlsec_verify(xmlsec1, tmp_path, forwarded, kz_ca, "gw-sig-" + track[9:])
    assert _signxml_verifies(forwarded, kz_ca, 7)
    # Our own verifier agrees, and the gateway's signature covers the sender's.
    root = xmlsafe.parse(forwarded)
    from broker.signing import xmldsig

    ids = xmldsig.id_index(root)
    gateway_sig = ids["gw-sig-" + track[9:]]
    covered = {
        etree.QName(r.element).localname for r in xmldsig.verify(gateway_sig, ids).references
    }
    assert covered == {
        "Body",
        "MessageID",
        "To",
        "ReplyTo",
        "Action",
        "ProcedureID",
        "ConversationID",
        "Integration",
        "Signature",
    }


def test_forwarded_envelope_keeps_what_the_sender_signed(test_pki: Pki, catalog: Catalog) -> None:
    """The forwarded envelope is the sender's plus Integration and a second signature only."""
    signed = sign_as(test_pki, "KZ-SW")
    verified = verify_bytes(test_pki, catalog, signed)
    forwarded = countersign(
        verified,
        test_pki.gateway(),
        "urn:uuid:1a2b3c4d-0000-4000-8000-000000000001",
        "2026-11-29T10:00:00.123Z",
    )
    original = xmlsafe.parse(signed)
    after = xmlsafe.parse(forwarded)
    strip = {"{urn:EEC:Interaction:v1.0}Integration"}
    before_headers = [
        etree.tostring(h, method="c14n")
        for h in original.find(f"{{{SOAP}}}Header")
        if h.tag != f"{{{WSSE}}}Security"
    ]
    after_headers = [
        etree.tostring(h, method="c14n")
        for h in after.find(f"{{{SOAP}}}Header")
        if h.tag != f"{{{WSSE}}}Security" and h.tag not in strip
    ]
    assert before_headers == after_headers
    assert etree.tostring(original.find(f"{{{SOAP}}}Body"), method="c14n") == etree.tostring(
        after.find(f"{{{SOAP}}}Body"), method="c14n"
    )
    integration = after.find(".//{urn:EEC:Interaction:v1.0}Integration")
    assert (
        integration.findtext("{urn:EEC:Interaction:v1.0}AcceptTime") == "2026-11-29T10:00:00.123Z"
    )
    assert len(after.findall(f".//{{{WSSE}}}Security/{{{DS}}}Signature")) == 2


def test_receipt_verifies_in_xmlsec1_signxml_and_broker(
    xmlsec1: str, tmp_path: Path, test_pki: Pki
) -> None:
    """A receipt checks out with `xmlsec1 --verify --trusted-pem certs/gateway/ca.pem`, with
    signxml and with our verifier; one changed character fails all three."""
    gateway = test_pki.gateway()
    receipt = build_receipt(
        Receipt(
            kind="Accepted",
            gateway="EEC-GW",
            message_digest=sha256_b64(b"m"),
            message_id="urn:uuid:1",
            track_id="urn:uuid:2",
            sender="KZ-SW",
            route="r",
            table_digest="0" * 64,
            destinations=("RU-SW",),
        ),
        gateway,
    )
    ca = test_pki.folder / "gateway" / "ca.pem"
    assert _xmlsec_verify(xmlsec1, tmp_path, receipt, ca)
    assert _signxml_verifies(receipt, ca, 1)
    assert verify_receipt(receipt, gateway.ca).receipt.destinations == ("RU-SW",)
    tampered = receipt.replace(b"RU-SW", b"BY-SW")
    assert not _xmlsec_verify(xmlsec1, tmp_path, tampered, ca)
    assert not _signxml_verifies(tampered, ca, 1)
    with pytest.raises(SignatureInvalid):
        verify_receipt(tampered, gateway.ca)


def test_rsa_gateway_receipt_verifies_in_xmlsec1(
    xmlsec1: str, tmp_path: Path, test_pki: Pki
) -> None:
    """With an RSA-2048 gateway key (certs demo --gateway-key rsa) receipts verify as well."""
    from broker.signing.trust import GatewayIdentity

    folder = tmp_path / "certs"
    pki.create_demo_pki(folder, {"KZ-SW": "KZ"}, gateway_key="rsa")
    gateway = GatewayIdentity.load(folder)
    receipt = build_receipt(
        Receipt(
            kind="Rejected",
            gateway="EEC-GW",
            message_digest=sha256_b64(b"m"),
            errors=(("SCHEMA_INVALID", "line 3: bad"),),
        ),
        gateway,
    )
    assert _xmlsec_verify(xmlsec1, tmp_path, receipt, folder / "gateway" / "ca.pem")
