"""The sender-signature stage against the attack corpus: each case gives its SPEC §8 code."""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections.abc import Callable

import pytest
from cryptography import x509
from lxml import etree

from broker import pki, xmlsafe
from broker.envelope import SOAP, WSSE, parse_envelope
from broker.errors import (
    CertificateUntrusted,
    EnvelopeInvalid,
    GatewayError,
    NotAnEnvelope,
    SenderMismatch,
    SignatureInvalid,
    SignatureMissing,
)
from broker.gost_pki import create_gost_identities, signing_identity
from broker.schemas import Catalog
from broker.signing import algorithms, xmldsig
from tests.conftest import DATA
from tests.gost_support import require_gost
from tests.pki_support import Pki, sign_as, verify_bytes

DS = "http://www.w3.org/2000/09/xmldsig#"
TO = "EAEU://RU/CP/P.TS.01/P.TS.01.ACT.002"


def test_signed_message_verifies_and_routes_on_signed_values(
    test_pki: Pki, catalog: Catalog
) -> None:
    """A correctly signed message gives the signer and the route facts from signed elements."""
    verified = verify_bytes(test_pki, catalog, sign_as(test_pki, "KZ-SW"))
    assert verified.sender.id == "KZ-SW"
    assert verified.facts.to == TO
    assert verified.facts.document == "R.TR.TS.01.001"
    assert len(verified.signature.references) == 7


def test_unsigned_message_is_signature_missing(test_pki: Pki, catalog: Catalog) -> None:
    """No wsse:Security at all is SIGNATURE_MISSING."""
    with pytest.raises(SignatureMissing):
        verify_bytes(test_pki, catalog, (DATA / "valid-conformity-kz-to-ru.xml").read_bytes())


def _edit(data: bytes, old: str, new: str, count: int = 1) -> bytes:
    text = data.decode()
    assert old in text, old
    return text.replace(old, new, count).encode()


def _sign_parts(test_pki: Pki, skip: tuple[str, ...] = (), name: str = "KZ-SW") -> bytes:
    """A valid signature that covers every part except those named in ``skip``."""
    raw = (DATA / "valid-conformity-kz-to-ru.xml").read_bytes()
    envelope = parse_envelope(xmlsafe.parse(raw))
    parts = [("soap:Body", envelope.body, envelope.body_id)] + [
        (h.name, h.element, h.ref_id) for h in envelope.headers
    ]
    header = envelope.root.find(f"{{{SOAP}}}Header")
    security = etree.SubElement(header, f"{{{WSSE}}}Security")
    xmldsig.sign(
        security,
        [(f"#{i}", e) for n, e, i in parts if n not in skip],
        test_pki.identities[name].key,
        test_pki.der(name),
        signature_id="sig-1",
    )
    return etree.tostring(envelope.root.getroottree())  # type: ignore[no-any-return]


Attack = Callable[[Pki], bytes]


def _body_changed(p: Pki) -> bytes:
    return _edit(sign_as(p, "KZ-SW"), "9405210000", "9405210001")


def _header_changed(p: Pki) -> bytes:
    return _edit(sign_as(p, "KZ-SW"), TO, TO.replace("RU", "BY"))


def _wrapped_body_in_security(p: Pki) -> bytes:
    """Signed body moved into wsse:Security; a forged body with another Id put in its place."""
    root = xmlsafe.parse(sign_as(p, "KZ-SW"))
    body = root.find(f"{{{SOAP}}}Body")
    security = root.find(f".//{{{WSSE}}}Security")
    forged = etree.fromstring(etree.tostring(body))
    forged.set(body.keys()[0], "id-forged")
    forged.find(".//{*}CommodityCode").text = "9999999999"
    root.replace(body, forged)
    security.append(body)
    return etree.tostring(root)  # type: ignore[no-any-return]


def _wrapped_body_in_header(p: Pki) -> bytes:
    """The classic wrapper: the signed body inside a new header block."""
    root = xmlsafe.parse(sign_as(p, "KZ-SW"))
    body = root.find(f"{{{SOAP}}}Body")
    forged = etree.fromstring(etree.tostring(body))
    forged.find(".//{*}CommodityCode").text = "9999999999"
    for key in list(forged.attrib):
        del forged.attrib[key]
    wrapper = etree.SubElement(root.find(f"{{{SOAP}}}Header"), "{urn:x}Wrapper")
    root.replace(body, forged)
    wrapper.append(body)
    return etree.tostring(root)  # type: ignore[no-any-return]


def _forged_header_first(p: Pki) -> bytes:
    """A forged wsa:To without Id first; the signed one hidden in wsse:Security."""
    root = xmlsafe.parse(sign_as(p, "KZ-SW"))
    to = root.find(".//{http://www.w3.org/2005/08/addressing}To")
    forged = etree.fromstring(etree.tostring(to))
    del forged.attrib[forged.keys()[0]]
    forged.text = TO.replace("RU", "BY")
    to.addprevious(forged)
    root.find(f".//{{{WSSE}}}Security").append(to)
    return etree.tostring(root)  # type: ignore[no-any-return]


def _id_and_ID(p: Pki) -> bytes:
    """Another element carrying ID="id-body" beside the signed body's wsu:Id="id-body"."""
    return _edit(
        sign_as(p, "KZ-SW"),
        '<wsa:Action wsu:Id="id-action"',
        '<wsa:Action wsu:Id="id-action" ID="id-body"',
    )


def _id_on_address(p: Pki) -> bytes:
    """An element without an Id given ID="id-body", the signed body's wsu:Id."""
    return _edit(sign_as(p, "KZ-SW"), "<wsa:Address>", '<wsa:Address ID="id-body">')


def _duplicate_ids(p: Pki) -> bytes:
    return _edit(sign_as(p, "KZ-SW"), 'wsu:Id="id-action"', 'wsu:Id="id-to"')


def _to_not_referenced(p: Pki) -> bytes:
    return _sign_parts(p, skip=("wsa:To",))


def _body_not_referenced(p: Pki) -> bytes:
    return _sign_parts(p, skip=("soap:Body",))


def _optional_header_not_referenced(p: Pki) -> bytes:
    return _sign_parts(p, skip=("int:ConversationID",))


def _algorithm(uri: str) -> Attack:
    def attack(p: Pki) -> bytes:
        return re.sub(
            rb'(SignatureMethod Algorithm=")[^"]+', rb"\g<1>" + uri.encode(), sign_as(p, "KZ-SW")
        )

    return attack


def _digest_algorithm(p: Pki) -> bytes:
    """The first reference's DigestMethod, whatever it was (SHA-256 or Streebog), made SHA-1."""
    return re.sub(
        rb'(DigestMethod Algorithm=")[^"]+"',
        rb'\1http://www.w3.org/2000/09/xmldsig#sha1"',
        sign_as(p, "KZ-SW"),
        count=1,
    )


def _transform(uri: str, extra: str = "") -> Attack:
    def attack(p: Pki) -> bytes:
        return _edit(
            sign_as(p, "KZ-SW"),
            '<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>',
            f'<ds:Transform Algorithm="{uri}">{extra}</ds:Transform>',
        )

    return attack


def _c14n_inclusive(p: Pki) -> bytes:
    return _edit(
        sign_as(p, "KZ-SW"),
        '<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>',
        '<ds:CanonicalizationMethod Algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315"/>',
    )


def _retrieval_method(p: Pki) -> bytes:
    return re.sub(
        rb"<ds:KeyInfo>.*</ds:KeyInfo>",
        b'<ds:KeyInfo><ds:RetrievalMethod URI="http://127.0.0.1:9/cert.der" '
        b'Type="http://www.w3.org/2000/09/xmldsig#rawX509Certificate"/></ds:KeyInfo>',
        sign_as(p, "KZ-SW"),
        flags=re.DOTALL,
    )


def _key_value_only(p: Pki) -> bytes:
    return re.sub(
        rb"<ds:KeyInfo>.*</ds:KeyInfo>",
        b"<ds:KeyInfo><ds:KeyValue/></ds:KeyInfo>",
        sign_as(p, "KZ-SW"),
        flags=re.DOTALL,
    )


def _external_uri(uri: str) -> Attack:
    def attack(p: Pki) -> bytes:
        return _edit(sign_as(p, "KZ-SW"), 'URI="#id-to"', f'URI="{uri}"')

    return attack


def _two_signatures(p: Pki) -> bytes:
    signed = sign_as(p, "KZ-SW").decode()
    signature = re.search(r"<ds:Signature .*</ds:Signature>", signed, re.DOTALL)
    assert signature is not None
    second = signature.group(0).replace('Id="sig-', 'Id="sig2-')
    return signed.replace("</wsse:Security>", second + "</wsse:Security>").encode()


def _signature_without_id(p: Pki) -> bytes:
    return re.sub(
        rb'<ds:Signature( xmlns:ds="[^"]+")? Id="[^"]+"', rb"<ds:Signature\1", sign_as(p, "KZ-SW")
    )


def _signature_value_changed(p: Pki) -> bytes:
    signed = sign_as(p, "KZ-SW").decode()
    value = re.search(r"<ds:SignatureValue>([^<]+)<", signed)
    assert value is not None
    flipped = ("B" if value.group(1)[0] != "B" else "C") + value.group(1)[1:]
    return signed.replace(value.group(1), flipped).encode()


def _object_element(p: Pki) -> bytes:
    return _edit(sign_as(p, "KZ-SW"), "</ds:KeyInfo>", "</ds:KeyInfo><ds:Object/>")


def _reply_to_segment_ru(p: Pki) -> bytes:
    return sign_as(
        p,
        "KZ-SW",
        edit=lambda t: t.replace(
            "EAEU://KZ/CP/P.TS.01/P.TS.01.ACT.001", "EAEU://RU/CP/P.TS.01/P.TS.01.ACT.009"
        ),
    )


ATTACKS: dict[str, tuple[Attack, type[GatewayError], str]] = {
    "body changed after signing": (_body_changed, SignatureInvalid, "digest of #id-body"),
    "header changed after signing": (_header_changed, SignatureInvalid, "digest of #id-to"),
    "signed body wrapped in wsse:Security": (
        _wrapped_body_in_security,
        SignatureInvalid,
        "unexpected",
    ),
    "signed body wrapped in a header": (
        _wrapped_body_in_header,
        EnvelopeInvalid,
        "unknown header block",
    ),
    "forged header first": (_forged_header_first, SignatureInvalid, "unexpected"),
    "Id versus ID on one element": (_id_and_ID, SignatureInvalid, "carries two Id"),
    "Id versus ID on another element": (
        _id_on_address,
        SignatureInvalid,
        "carried by two elements",
    ),
    "duplicate wsu:Id": (_duplicate_ids, SignatureInvalid, "carried by two elements"),
    "wsa:To not referenced": (_to_not_referenced, SignatureInvalid, "not covered.*wsa:To"),
    "soap:Body not referenced": (_body_not_referenced, SignatureInvalid, "not covered.*soap:Body"),
    "optional header not referenced": (
        _optional_header_not_referenced,
        SignatureInvalid,
        "not covered.*int:ConversationID",
    ),
    "RSA-SHA1": (
        _algorithm("http://www.w3.org/2000/09/xmldsig#rsa-sha1"),
        SignatureInvalid,
        "SignatureMethod .*rsa-sha1.* not allowed",
    ),
    "HMAC": (
        _algorithm("http://www.w3.org/2000/09/xmldsig#hmac-sha1"),
        SignatureInvalid,
        "hmac-sha1.* not allowed",
    ),
    "ECDSA-SHA1": (
        _algorithm("http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1"),
        SignatureInvalid,
        "not allowed",
    ),
    "SHA-1 digest": (_digest_algorithm, SignatureInvalid, "DigestMethod .*sha1.* not allowed"),
    "XSLT transform": (
        _transform(
            "http://www.w3.org/TR/1999/REC-xslt-19991116",
            "<xsl:stylesheet xmlns:xsl='http://www.w3.org/1999/XSL/Transform' version='1.0'/>",
        ),
        SignatureInvalid,
        "REC-xslt.* not allowed",
    ),
    "XPath transform": (
        _transform("http://www.w3.org/TR/1999/REC-xpath-19991116", "<ds:XPath>1</ds:XPath>"),
        SignatureInvalid,
        "not allowed",
    ),
    "inclusive C14N": (_c14n_inclusive, SignatureInvalid, "CanonicalizationMethod"),
    "RetrievalMethod": (_retrieval_method, SignatureInvalid, "RetrievalMethod"),
    "KeyValue only": (_key_value_only, SignatureInvalid, "X509Data"),
    "external reference URI": (
        _external_uri("http://127.0.0.1:9/x.xml"),
        SignatureInvalid,
        "not a same-document",
    ),
    "file reference URI": (
        _external_uri("file:///etc/passwd"),
        SignatureInvalid,
        "not a same-document",
    ),
    "XPointer reference": (_external_uri("#xpointer(/)"), SignatureInvalid, "not a same-document"),
    "two sender signatures": (_two_signatures, SignatureInvalid, "2 ds:Signature"),
    "signature value changed": (_signature_value_changed, SignatureInvalid, "does not verify"),
    "ds:Object": (_object_element, SignatureInvalid, "must hold SignedInfo"),
    "unknown CA": (
        lambda p: sign_as(p, "foreign"),
        CertificateUntrusted,
        "does not chain to a CA of KZ",
    ),
    "expired certificate": (lambda p: sign_as(p, "expired"), CertificateUntrusted, "not valid at"),
    "revoked by CRL": (lambda p: sign_as(p, "revoked"), CertificateUntrusted, "revoked"),
    "no digitalSignature": (
        lambda p: sign_as(p, "no-ds"),
        CertificateUntrusted,
        "digitalSignature",
    ),
    "KZ CA with a RU participant's CN": (
        lambda p: sign_as(p, "ru-by-kz"),
        CertificateUntrusted,
        "does not chain to a CA of RU",
    ),
    "RSA key under 2048 bits": (lambda p: sign_as(p, "rsa1024"), SignatureInvalid, "1024 bits"),
    "KZ signature, ReplyTo segment RU": (
        _reply_to_segment_ru,
        SenderMismatch,
        "segment RU is not the signer KZ-SW's country KZ",
    ),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_is_refused_with_its_code(name: str, test_pki: Pki, catalog: Catalog) -> None:
    """Each attack in the corpus is refused with the expected SPEC §8 code and reason."""
    attack, error, reason = ATTACKS[name]
    with pytest.raises(error, match=reason):
        verify_bytes(test_pki, catalog, attack(test_pki))


def test_signature_without_id_is_accepted(test_pki: Pki, catalog: Catalog) -> None:
    """zeep and node-soap write a ds:Signature without an Id; SPEC v1.1 §2 accepts it."""
    verified = verify_bytes(test_pki, catalog, _signature_without_id(test_pki))
    assert verified.signature.element.get("Id") is None
    assert verified.sender.id == "KZ-SW"


def test_repeated_signed_header_is_not_an_envelope(test_pki: Pki, catalog: Catalog) -> None:
    """A forged second wsa:To beside the signed one never reaches the verifier."""
    signed = sign_as(test_pki, "KZ-SW")
    forged = _edit(signed, "<wsa:ReplyTo", f"<wsa:To>{TO.replace('RU', 'BY')}</wsa:To><wsa:ReplyTo")
    with pytest.raises(NotAnEnvelope):
        verify_bytes(test_pki, catalog, forged)


def test_comment_inside_signed_text_does_not_change_the_routed_value(
    test_pki: Pki, catalog: Catalog
) -> None:
    """A comment injected into a signed address leaves the signature valid and the value whole."""
    signed = sign_as(test_pki, "KZ-SW")
    injected = _edit(signed, f">{TO}<", ">EAEU://RU/<!-- BY -->CP/P.TS.01/P.TS.01.ACT.002<")
    verified = verify_bytes(test_pki, catalog, injected)
    assert verified.facts.to == TO
    assert test_pki.table.route(verified.facts).destinations[0].id != "KZ-SW"


def test_tls_identity_of_another_participant_is_sender_mismatch(
    test_pki: Pki, catalog: Catalog
) -> None:
    """A valid KZ signature arriving over RU's TLS connection is SENDER_MISMATCH."""
    with pytest.raises(SenderMismatch, match="TLS client certificate is RU-SW"):
        verify_bytes(test_pki, catalog, sign_as(test_pki, "KZ-SW"), tls="RU-SW")


def test_pinned_participant_accepts_only_its_pinned_certificate(
    test_pki: Pki, catalog: Catalog
) -> None:
    """With pins, the CN alone no longer identifies the participant."""
    import dataclasses

    from broker.signing.trust import fingerprint

    kz = test_pki.table.participants["KZ-SW"]
    other = fingerprint(test_pki.identities["RU-SW"].certificate)
    pinned = dataclasses.replace(kz, pins=frozenset({other}))
    participants = {**test_pki.table.participants, "KZ-SW": pinned}
    from broker import clock
    from broker.signing.verify import verify_sender
    from broker.validation import check_document

    with pytest.raises(CertificateUntrusted, match="pins other certificates"):
        verify_sender(
            check_document(sign_as(test_pki, "KZ-SW"), catalog),
            test_pki.trust(),
            participants,
            at=clock.now(),
        )
    mine = fingerprint(test_pki.identities["KZ-SW"].certificate)
    participants["KZ-SW"] = dataclasses.replace(kz, pins=frozenset({mine}))
    verified = verify_sender(
        check_document(sign_as(test_pki, "KZ-SW"), catalog),
        test_pki.trust(),
        participants,
        at=clock.now(),
    )
    assert verified.sender.id == "KZ-SW"


@pytest.fixture(scope="module")
def gost_kz(test_pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The test PKI with KZ-SW signing with GOST R 34.10-2012 (a GOST CA beside KZ's ECDSA
    one), as `broker certs demo --gost KZ` makes it."""
    require_gost()
    folder = tmp_path_factory.mktemp("gost-kz") / "certs"
    shutil.copytree(test_pki.folder, folder)
    create_gost_identities(folder, {"KZ-SW": "KZ"}, {"KZ"})
    key_path, cert_path = signing_identity(folder / "participants" / "KZ-SW")
    signer = pki.Issued(
        algorithms.load_private_pem(key_path.read_bytes()),  # type: ignore[arg-type]
        x509.load_pem_x509_certificate(cert_path.read_bytes()),
    )
    return dataclasses.replace(
        test_pki, folder=folder, identities={**test_pki.identities, "KZ-SW": signer}
    )


def test_a_gost_signed_message_verifies(gost_kz: Pki, catalog: Catalog) -> None:
    verified = verify_bytes(gost_kz, catalog, sign_as(gost_kz, "KZ-SW"))
    assert verified.sender.id == "KZ-SW"
    assert verified.signature.method.family is algorithms.GOST


@pytest.mark.parametrize("name", list(ATTACKS))
def test_each_attack_is_refused_on_a_gost_signed_message_too(
    name: str, gost_kz: Pki, catalog: Catalog
) -> None:
    """The whole corpus again, KZ-SW's signature being GOST: same code, same reason."""
    attack, error, reason = ATTACKS[name]
    with pytest.raises(error, match=reason):
        verify_bytes(gost_kz, catalog, attack(gost_kz))
