"""KeyInfo forms, wsu:Timestamp and body-only senders at the signature stage (SPEC v1.1 §2).

Every form of the SPEC §2 table is signed by a real signer (zeep, or the libxmlsec1 binding for
the WSS4J forms) and must verify; every bad form is refused with its code and a reason; the
signature-wrapping corpus is run again against the new forms and against body-only senders.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable, Mapping

import pytest
from lxml import etree

from broker import clock, xmlsafe
from broker.envelope import SOAP, WSSE, WSU, WSU_ID
from broker.errors import (
    EnvelopeInvalid,
    GatewayError,
    NotAnEnvelope,
    SignatureInvalid,
)
from broker.routing.table import Participant
from broker.schemas import Catalog
from broker.signing.keyinfo import X509V3, KnownCertificates
from broker.signing.trust import TrustStore
from broker.signing.verify import Verified, verify_sender
from broker.validation import check_document
from tests import wss_signers
from tests.conftest import DATA
from tests.pki_support import Pki, sign_as
from tests.signing.test_verify import ATTACKS

SAMPLE = "valid-conformity-kz-to-ru.xml"
UPSTREAM = "valid-upstream-integration-kz-to-ru.xml"


def _pem(test_pki: Pki, name: str) -> tuple[bytes, bytes]:
    from broker import pki

    issued = test_pki.identities[name]
    return pki.key_pem(issued.key), pki.cert_pem(issued.certificate)


def _verify(
    test_pki: Pki,
    catalog: Catalog,
    data: bytes,
    *,
    known: tuple[str, ...] = (),
    body_only: tuple[str, ...] = (),
    at: dt.datetime | None = None,
) -> Verified:
    trust: TrustStore = dataclasses.replace(
        test_pki.trust(),
        known=KnownCertificates(tuple(test_pki.identities[n].certificate for n in known)),
    )
    participants: Mapping[str, Participant] = {
        pid: dataclasses.replace(p, signature="body") if pid in body_only else p
        for pid, p in test_pki.table.participants.items()
    }
    return verify_sender(
        check_document(data, catalog),
        trust,
        participants,
        at=at or clock.now(),
        tls_participant="KZ-SW",
    )


def _sample(name: str = SAMPLE) -> bytes:
    return (DATA / name).read_bytes()


# -- every form, from a real signer ------------------------------------------------------------

FORMS: dict[str, tuple[Callable[[bytes, bytes, bytes], bytes], str, tuple[str, ...]]] = {
    "zeep BinarySignature": (
        lambda d, k, c: wss_signers.zeep_sign(d, k, c, binary=True),
        "BinarySecurityToken",
        (),
    ),
    "zeep Signature": (
        lambda d, k, c: wss_signers.zeep_sign(d, k, c, binary=False),
        "SecurityTokenReference/X509Data",
        (),
    ),
    "WSS4J KeyIdentifier X509v3": (
        lambda d, k, c: wss_signers.xmlsec_sign(d, k, c, wss_signers.key_identifier_x509),
        "KeyIdentifier X509v3",
        (),
    ),
    "WSS4J IssuerSerial (certs/known)": (
        lambda d, k, c: wss_signers.xmlsec_sign(d, k, c, wss_signers.issuer_serial),
        "X509IssuerSerial",
        ("KZ-SW",),
    ),
    "SubjectKeyIdentifier (certs/known)": (
        lambda d, k, c: wss_signers.xmlsec_sign(d, k, c, wss_signers.subject_key_identifier),
        "X509SubjectKeyIdentifier",
        ("KZ-SW",),
    ),
    "ThumbprintSHA1 (certs/known)": (
        lambda d, k, c: wss_signers.xmlsec_sign(d, k, c, wss_signers.thumbprint_sha1),
        "ThumbprintSHA1",
        ("KZ-SW",),
    ),
}


@pytest.mark.parametrize("form", list(FORMS))
def test_each_keyinfo_form_verifies(form: str, test_pki: Pki, catalog: Catalog) -> None:
    """A message signed by a real stack in each KeyInfo form verifies and names its sender."""
    signer, expected, known = FORMS[form]
    data = signer(_sample(), *_pem(test_pki, "KZ-SW"))
    verified = _verify(test_pki, catalog, data, known=known)
    assert verified.sender.id == "KZ-SW"
    assert verified.signature.signer.form == expected
    assert verified.signature.signer.from_known == bool(known)
    assert verified.coverage == "full"
    assert verified.timestamp is not None


def test_issuer_serial_without_known_certificate_says_what_to_do(
    test_pki: Pki, catalog: Catalog
) -> None:
    """A certificate named but not carried, and not in certs/known: SIGNATURE_INVALID with the
    two ways out."""
    data = wss_signers.xmlsec_sign(_sample(), *_pem(test_pki, "KZ-SW"), wss_signers.issuer_serial)
    with pytest.raises(SignatureInvalid, match=r"embed the certificate.*certs/known/"):
        _verify(test_pki, catalog, data)


def test_known_match_prefers_the_valid_latest_certificate(test_pki: Pki) -> None:
    """Several certs/known matches: the one valid at receipt time with the latest notBefore."""
    expired = test_pki.identities["expired"].certificate
    current = test_pki.identities["KZ-SW"].certificate
    known = KnownCertificates((current, expired))
    found = known.find(lambda c: True, clock.now())
    assert found is current


# -- bad forms ---------------------------------------------------------------------------------


def _binary(test_pki: Pki) -> bytes:
    return wss_signers.zeep_sign(_sample(), *_pem(test_pki, "KZ-SW"), binary=True)


def _edit(data: bytes, pattern: str, replacement: str) -> bytes:
    text, count = re.subn(pattern, replacement, data.decode(), count=1)
    assert count == 1, pattern
    return text.encode()


def _second_token(test_pki: Pki) -> bytes:
    data = _binary(test_pki)
    token = re.search(
        r"<wsse:BinarySecurityToken[^>]*>[^<]+</wsse:BinarySecurityToken>", data.decode()
    )
    assert token is not None
    extra = re.sub(r'wsu:Id="[^"]+"', 'wsu:Id="id-extra-token"', token.group(0))
    return _edit(data, r"</wsse:Security>", extra + "</wsse:Security>")


BAD_FORMS: dict[str, tuple[Callable[[Pki], bytes], str]] = {
    "reference to a missing Id": (
        lambda p: _edit(_binary(p), r'(<wsse:Reference[^>]*URI=")#[^"]+"', r'\1#id-nowhere"'),
        "resolves to no element",
    ),
    "reference to a non-token": (
        lambda p: _edit(_binary(p), r'(<wsse:Reference[^>]*URI=")#[^"]+"', r'\1#id-body"'),
        "not a BinarySecurityToken",
    ),
    "two tokens": (_second_token, "not referenced by the signature's KeyInfo"),
    "unreferenced token beside X509Data": (
        lambda p: _edit(
            sign_as(p, "KZ-SW"),
            r"</wsse:Security>",
            f'<wsse:BinarySecurityToken ValueType="{X509V3}">'
            + re.search(r"<ds:X509Certificate>([^<]+)<", sign_as(p, "KZ-SW").decode()).group(1)  # type: ignore[union-attr]
            + "</wsse:BinarySecurityToken></wsse:Security>",
        ),
        "not referenced",
    ),
    "wrong token ValueType": (
        lambda p: _edit(
            _binary(p), r'(<wsse:BinarySecurityToken[^>]*ValueType=")[^"]+"', r'\1#PKIPath"'
        ),
        "ValueType",
    ),
    "wrong token EncodingType": (
        lambda p: _edit(
            _binary(p), r'(<wsse:BinarySecurityToken[^>]*EncodingType=")[^"]+"', r'\1#HexBinary"'
        ),
        "EncodingType",
    ),
    "IssuerSerial naming another certificate": (
        lambda p: _edit(
            wss_signers.zeep_sign(_sample(), *_pem(p, "KZ-SW"), binary=False),
            r"(<(?:ds:)?X509SerialNumber>)\d+",
            r"\g<1>12345",
        ),
        "does not name the X509Certificate",
    ),
    "KeyIdentifier of an unknown ValueType": (
        lambda p: _edit(
            wss_signers.xmlsec_sign(_sample(), *_pem(p, "KZ-SW"), wss_signers.key_identifier_x509),
            r'ValueType="[^"]+#X509v3"',
            'ValueType="urn:x:kerberos"',
        ),
        "KeyIdentifier ValueType",
    ),
    "uncovered Timestamp": (
        lambda p: _edit(
            sign_as(p, "KZ-SW"),
            r"</wsse:Security>",
            f'<wsu:Timestamp xmlns:wsu="{WSU}" wsu:Id="ts"><wsu:Created>'
            f"{dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ}</wsu:Created></wsu:Timestamp>"
            "</wsse:Security>",
        ),
        "not covered by the signature: wsu:Timestamp",
    ),
}


@pytest.mark.parametrize("name", list(BAD_FORMS))
def test_bad_form_is_refused(name: str, test_pki: Pki, catalog: Catalog) -> None:
    """Each malformed KeyInfo or token arrangement is SIGNATURE_INVALID with its reason."""
    make, reason = BAD_FORMS[name]
    with pytest.raises(SignatureInvalid, match=reason):
        _verify(test_pki, catalog, make(test_pki))


def _stamped(test_pki: Pki, created: dt.datetime, ttl: float | None) -> bytes:
    root = xmlsafe.parse(_sample())
    security = wss_signers.security_header(root)
    wss_signers.add_timestamp(security, created, ttl)
    data = etree.tostring(root)
    # zeep signs the Timestamp that is there.
    key, cert = _pem(test_pki, "KZ-SW")
    return wss_signers.zeep_sign(data, key, cert, binary=True, timestamp=False)


@pytest.mark.parametrize(
    ("offset", "ttl", "reason"),
    [
        (dt.timedelta(minutes=10), 300, "in the future"),
        (dt.timedelta(minutes=-30), 300, "expired"),
        (dt.timedelta(0), 0, "not after wsu:Created"),
    ],
    ids=["created in the future", "expired", "expires at creation"],
)
def test_timestamp_rules(
    offset: dt.timedelta, ttl: float, reason: str, test_pki: Pki, catalog: Catalog
) -> None:
    """Created after now + 5 min, Expires before now − 5 min, Expires ≤ Created are refused."""
    data = _stamped(test_pki, dt.datetime.now(dt.UTC) + offset, ttl)
    with pytest.raises(SignatureInvalid, match=reason):
        _verify(test_pki, catalog, data)


def test_timestamp_within_skew_and_without_expiry_is_accepted(
    test_pki: Pki, catalog: Catalog
) -> None:
    """A Created 4 minutes ahead (clock skew) and no Expires at all are fine."""
    data = _stamped(test_pki, dt.datetime.now(dt.UTC) + dt.timedelta(minutes=4), None)
    assert _verify(test_pki, catalog, data).timestamp is not None


def test_two_timestamps_are_refused(test_pki: Pki, catalog: Catalog) -> None:
    """At most one wsu:Timestamp."""
    data = _binary(test_pki)
    stamp = re.search(r"<wsu:Timestamp.*?</wsu:Timestamp>", data.decode(), re.DOTALL)
    assert stamp is not None
    second = stamp.group(0).replace('wsu:Id="id-timestamp"', 'wsu:Id="id-timestamp-2"')
    with pytest.raises(SignatureInvalid, match="at most one"):
        _verify(test_pki, catalog, _edit(data, r"</wsse:Security>", second + "</wsse:Security>"))


# -- what real signers write around the signature ---------------------------------------------


def test_must_understand_and_role_on_headers_are_accepted(test_pki: Pki, catalog: Catalog) -> None:
    """soap:mustUnderstand and soap:role on header blocks (the gateway understands them)."""
    data = _sample().decode()
    data = data.replace('<wsa:To wsu:Id="id-to"', '<wsa:To soap:mustUnderstand="1" wsu:Id="id-to"')
    data = data.replace(
        '<wsa:Action wsu:Id="id-action"',
        '<wsa:Action soap:mustUnderstand="true" soap:role="http://www.w3.org/2003/05/soap-envelope'
        '/role/next" wsu:Id="id-action"',
    )
    signed = wss_signers.zeep_sign(data.encode(), *_pem(test_pki, "KZ-SW"), binary=True)
    assert _verify(test_pki, catalog, signed).sender.id == "KZ-SW"


def test_node_soap_style_enveloped_transform_and_plain_ids(test_pki: Pki, catalog: Catalog) -> None:
    """Unqualified Id on the parts, enveloped-signature before exc-c14n and a PrefixList, as
    node-soap writes them, verify; so does a signature without an Id."""
    data = wss_signers.xmlsec_sign(
        _sample(), *_pem(test_pki, "KZ-SW"), wss_signers.key_identifier_x509, node_soap=True
    )
    assert b' Id="id-body"' in data
    assert b"enveloped-signature" in data
    verified = _verify(test_pki, catalog, data)
    assert verified.signature.element.get("Id") is None
    assert verified.coverage == "full"


# -- body-only senders ------------------------------------------------------------------------


def test_body_only_signature_of_a_body_participant_is_accepted(
    test_pki: Pki, catalog: Catalog
) -> None:
    """zeep as it signs out of the box (Body + Timestamp) for a `signature: body` participant:
    accepted with coverage body; routing reads the headers as sent."""
    data = wss_signers.zeep_sign(_sample(), *_pem(test_pki, "KZ-SW"), binary=True, headers=False)
    verified = _verify(test_pki, catalog, data, body_only=("KZ-SW",))
    assert verified.coverage == "body"
    assert verified.facts.to == "EAEU://RU/CP/P.TS.01/P.TS.01.ACT.002"


def test_body_only_signature_of_a_full_participant_is_refused(
    test_pki: Pki, catalog: Catalog
) -> None:
    """A `full` participant's body-only signature stays SIGNATURE_INVALID."""
    data = wss_signers.zeep_sign(_sample(), *_pem(test_pki, "KZ-SW"), binary=True, headers=False)
    with pytest.raises(SignatureInvalid, match="not covered by the signature: wsa:MessageID"):
        _verify(test_pki, catalog, data)


def test_body_participant_must_still_cover_body_and_timestamp(
    test_pki: Pki, catalog: Catalog
) -> None:
    """A body-only sender cannot leave the Body unsigned."""
    data = wss_signers.xmlsec_sign(
        _sample(),
        *_pem(test_pki, "KZ-SW"),
        wss_signers.key_identifier_x509,
        headers=False,
        body=False,
    )
    with pytest.raises(SignatureInvalid, match="not covered by the signature: soap:Body"):
        _verify(test_pki, catalog, data, body_only=("KZ-SW",))


def _body_only(test_pki: Pki, data: bytes | None = None) -> bytes:
    return wss_signers.zeep_sign(
        data or _sample(), *_pem(test_pki, "KZ-SW"), binary=True, headers=False
    )


WRAPPING_BODY_ONLY: dict[str, tuple[Callable[[Pki], bytes], type[GatewayError]]] = {
    "second Body after the signed one": (
        lambda p: _edit(
            _body_only(p), r"</soap:Envelope>", "<soap:Body><x/></soap:Body></soap:Envelope>"
        ),
        NotAnEnvelope,
    ),
    "document in a header block": (
        lambda p: _edit(
            _body_only(p),
            r"</soap:Header>",
            "<evil:Document xmlns:evil='urn:EEC:R:TR:TS:01:ConformityDocsRegistryDetails:v1.0.1'/>"
            "</soap:Header>",
        ),
        EnvelopeInvalid,
    ),
    "signed Body moved into wsse:Security, a forged one in its place": (
        lambda p: _move_signed_body_into_security(_body_only(p)),
        SignatureInvalid,
    ),
    "body changed after signing": (
        lambda p: _edit(_body_only(p), "9405210000", "9405210001"),
        SignatureInvalid,
    ),
}


def _move_signed_body_into_security(data: bytes) -> bytes:
    root = xmlsafe.parse(data)
    body = root.find(f"{{{SOAP}}}Body")
    security = root.find(f"{{{SOAP}}}Header/{{{WSSE}}}Security")
    assert body is not None
    assert security is not None
    forged = etree.Element(f"{{{SOAP}}}Body")
    forged.set(WSU_ID, "id-forged")
    forged.append(etree.fromstring(etree.tostring(body[0]).replace(b"9405210000", b"8405210000")))
    body.addprevious(forged)
    security.append(body)
    return etree.tostring(root)  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", list(WRAPPING_BODY_ONLY))
def test_body_only_participant_cannot_wrap(name: str, test_pki: Pki, catalog: Catalog) -> None:
    """A body-only sender cannot slip a second Body or a header-borne document past the
    verifier."""
    make, error = WRAPPING_BODY_ONLY[name]
    with pytest.raises(error):
        _verify(test_pki, catalog, make(test_pki), body_only=("KZ-SW",))


def _as_binary_token(data: bytes) -> bytes:
    """The same signature with its KeyInfo rewritten as an STR Reference to a token (KeyInfo is
    outside SignedInfo, so the signature value still holds)."""
    text = data.decode()
    match = re.search(
        r"<ds:KeyInfo><ds:X509Data><ds:X509Certificate>([^<]+)</ds:X509Certificate>"
        r"</ds:X509Data></ds:KeyInfo>",
        text,
    )
    if match is None:
        return data
    token = (
        f'<wsse:BinarySecurityToken xmlns:wsse="{WSSE}" xmlns:wsu="{WSU}" wsu:Id="id-token" '
        f'ValueType="{X509V3}">{match.group(1)}</wsse:BinarySecurityToken>'
    )
    reference = (
        f'<ds:KeyInfo><wsse:SecurityTokenReference xmlns:wsse="{WSSE}">'
        '<wsse:Reference URI="#id-token"/>'
        "</wsse:SecurityTokenReference></ds:KeyInfo>"
    )
    text = text.replace(match.group(0), reference, 1)
    return re.sub(
        r"(<ds:Signature[ >])", token.replace("\\", "\\\\") + r"\1", text, count=1
    ).encode()


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_corpus_with_a_binary_token(name: str, test_pki: Pki, catalog: Catalog) -> None:
    """Every attack of the corpus, its KeyInfo rewritten as a BinarySecurityToken reference,
    is still refused with the same code."""
    attack, error, _ = ATTACKS[name]
    data = _as_binary_token(attack(test_pki))
    with pytest.raises(error):
        _verify(test_pki, catalog, data)


def test_binary_token_rewrite_keeps_a_good_signature_good(test_pki: Pki, catalog: Catalog) -> None:
    """The rewrite used above is sound: applied to a good message, it verifies."""
    verified = _verify(test_pki, catalog, _as_binary_token(sign_as(test_pki, "KZ-SW")))
    assert verified.signature.signer.form == "BinarySecurityToken"


# -- upstream int:Integration -----------------------------------------------------------------


def test_unsigned_upstream_integration_is_kept(test_pki: Pki, catalog: Catalog) -> None:
    """An upstream platform's stamp, not covered by the signature, is accepted and kept."""
    verified = _verify(test_pki, catalog, sign_as(test_pki, "KZ-SW", UPSTREAM))
    assert verified.envelope.upstream_track_id == "NSW-KZ:2020-000123"


def test_signed_upstream_integration_is_envelope_invalid(test_pki: Pki, catalog: Catalog) -> None:
    """An upstream stamp the signature covers would be broken by the gateway's: refused."""
    data = wss_signers.xmlsec_sign(
        _sample(UPSTREAM).replace(b"<int:Integration>", b'<int:Integration wsu:Id="id-up">'),
        *_pem(test_pki, "KZ-SW"),
        wss_signers.key_identifier_x509,
    )
    root = xmlsafe.parse(data)
    from broker.signing import xmldsig

    info = root.find(f".//{{{xmldsig.DS}}}SignedInfo")
    assert info is not None
    etree.SubElement(info, f"{{{xmldsig.DS}}}Reference", URI="#id-up")
    with pytest.raises(EnvelopeInvalid, match="covered by the sender's signature"):
        _verify(test_pki, catalog, etree.tostring(root))
