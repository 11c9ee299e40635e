"""KeyInfo forms → the signer's certificate (SPEC §2 table).

Real WS-Security stacks give the signing certificate in five ways:

=================================================  ===========================================
KeyInfo content                                    written by
=================================================  ===========================================
``ds:X509Data/ds:X509Certificate``                 xmlsec1 templates, xml-crypto, Santuario
STR ``wsse:Reference`` → ``BinarySecurityToken``   node-soap, zeep ``BinarySignature``, WSS4J
                                                   ``BST_DIRECT_REFERENCE``, .NET
STR ``wsse:KeyIdentifier`` ``#X509v3``             WSS4J ``X509_KEY_IDENTIFIER`` (Kazakhstan)
STR ``ds:X509Data`` with ``ds:X509Certificate``    zeep ``Signature``
STR naming a certificate it does not carry         WSS4J's default (IssuerSerial); also
(IssuerSerial, SubjectKeyIdentifier, Thumbprint)   SKI and ThumbprintSHA1 key identifiers
=================================================  ===========================================

The last form is resolved only against ``certs/known/*.pem`` at intake (never the network),
and against the envelope's own tokens at a destination, where the gateway has embedded the
certificate it resolved (SPEC §3). Whatever the form, the certificate found is only a
candidate: the signature is verified with its key and :mod:`broker.signing.trust` decides
whether it speaks for the sender.

Every ``wsse:BinarySecurityToken`` in ``wsse:Security`` must be the one the KeyInfo resolved
to: an unreferenced token is refused, so that no certificate travels in a message without
taking part in its verification.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from lxml import etree

from broker.envelope import DS, WSSE, element_id
from broker.errors import ConfigError, SignatureInvalid

X509V3 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
SKI = (
    "http://docs.oasis-open.org/wss/2004/01/"
    "oasis-200401-wss-x509-token-profile-1.0#X509SubjectKeyIdentifier"
)
THUMBPRINT_SHA1 = (
    "http://docs.oasis-open.org/wss/oasis-wss-soap-message-security-1.1#ThumbprintSHA1"
)
BASE64 = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
)
BST = f"{{{WSSE}}}BinarySecurityToken"
STR = f"{{{WSSE}}}SecurityTokenReference"

CertificateFromDer = Callable[[bytes], x509.Certificate]


@dataclass(frozen=True)
class SignerKey:
    """The certificate a KeyInfo resolved to, and how."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()
    """Further certificates the KeyInfo carried (untrusted intermediates)."""
    form: str = "X509Data"
    """The KeyInfo form, as the SPEC §2 table names it (reported by bench and conformance)."""
    token: etree._Element | None = None
    """The BinarySecurityToken the KeyInfo referenced, if any."""
    from_known: bool = False
    """Resolved in certs/known: the forwarded envelope must carry it as a token (SPEC §3)."""


@dataclass(frozen=True)
class KnownCertificates:
    """``certs/known/*.pem``: participants' signing certificates, looked up by name only."""

    certificates: tuple[x509.Certificate, ...] = ()

    @classmethod
    def load(cls, folder: Path) -> KnownCertificates:
        if not folder.is_dir():
            return cls()
        found: list[x509.Certificate] = []
        for path in sorted(folder.glob("*.pem")):
            try:
                found.extend(x509.load_pem_x509_certificates(path.read_bytes()))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{path}: not a PEM certificate file: {exc}") from exc
        return cls(tuple(found))

    def find(
        self, matches: Callable[[x509.Certificate], bool], at: dt.datetime
    ) -> x509.Certificate | None:
        """The matching certificate valid at ``at`` with the latest notBefore (SPEC §2)."""
        return _best([c for c in self.certificates if matches(c)], at)


def _best(candidates: list[x509.Certificate], at: dt.datetime) -> x509.Certificate | None:
    valid = [c for c in candidates if c.not_valid_before_utc <= at <= c.not_valid_after_utc]
    pool = valid or candidates  # an expired match still gets its clear CERTIFICATE_UNTRUSTED
    return max(pool, key=lambda c: c.not_valid_before_utc) if pool else None


def _children(element: etree._Element) -> list[etree._Element]:
    return [c for c in element if isinstance(c.tag, str)]


def _local(element: etree._Element) -> str:
    return str(etree.QName(element).localname)


def base64_text(element: etree._Element, what: str) -> bytes:
    """The base64 content of an element (whitespace ignored); SIGNATURE_INVALID naming
    ``what`` otherwise."""
    text = "".join((element.text or "").split())
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureInvalid(f"{what} is not valid base64") from exc


def _der(element: etree._Element, what: str, parse: CertificateFromDer) -> x509.Certificate:
    try:
        return parse(base64_text(element, what))
    except ValueError as exc:
        raise SignatureInvalid(f"{what} is not a DER certificate: {exc}") from exc


def direct_x509(key_info: etree._Element, parse: CertificateFromDer) -> SignerKey:
    """Only ``ds:X509Data`` of ``ds:X509Certificate`` elements (first the signer's, then
    intermediates): the form of the gateway's own receipts, reports and countersignatures."""
    items = _children(key_info)
    if len(items) != 1 or items[0].tag != f"{{{DS}}}X509Data":
        found = [_local(i) for i in items]
        raise SignatureInvalid(
            f"KeyInfo must hold exactly one X509Data (found {found}); RetrievalMethod, "
            "KeyValue and KeyName are not accepted"
        )
    certs = _children(items[0])
    if not certs or any(c.tag != f"{{{DS}}}X509Certificate" for c in certs):
        raise SignatureInvalid("X509Data must hold X509Certificate elements only")
    parsed = [_der(c, "X509Certificate", parse) for c in certs]
    return SignerKey(parsed[0], tuple(parsed[1:]))


def check_tokens(security: etree._Element | None) -> list[etree._Element]:
    """The BinarySecurityTokens of wsse:Security, each an X.509 v3 certificate in base64."""
    if security is None:
        return []
    tokens = [c for c in _children(security) if c.tag == BST]
    for token in tokens:
        value_type = token.get("ValueType")
        if value_type != X509V3:
            raise SignatureInvalid(
                f"BinarySecurityToken (line {token.sourceline}) ValueType {value_type!r} is not "
                "X509v3 of the X.509 token profile"
            )
        encoding = token.get("EncodingType")
        if encoding not in (None, BASE64):
            raise SignatureInvalid(
                f"BinarySecurityToken (line {token.sourceline}) EncodingType {encoding!r} is not "
                "Base64Binary"
            )
    return tokens


def _issuer_serial(element: etree._Element) -> Callable[[x509.Certificate], bool]:
    parts = {_local(c): c for c in _children(element) if c.tag.startswith(f"{{{DS}}}")}
    if set(parts) != {"X509IssuerName", "X509SerialNumber"} or len(_children(element)) != 2:
        raise SignatureInvalid("X509IssuerSerial must hold X509IssuerName and X509SerialNumber")
    try:
        issuer = x509.Name.from_rfc4514_string((parts["X509IssuerName"].text or "").strip())
        serial = int((parts["X509SerialNumber"].text or "").strip())
    except ValueError as exc:
        raise SignatureInvalid(f"X509IssuerSerial is malformed: {exc}") from exc
    # Names compare attribute by attribute, whatever string type each was encoded with.
    return lambda c: c.serial_number == serial and c.issuer == issuer


def _ski(value: bytes) -> Callable[[x509.Certificate], bool]:
    def matches(certificate: x509.Certificate) -> bool:
        try:
            ext = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        except x509.ExtensionNotFound:
            return False
        return ext.value.digest == value

    return matches


def _thumbprint(value: bytes) -> Callable[[x509.Certificate], bool]:
    from cryptography.hazmat.primitives import serialization

    return lambda c: (
        hashlib.sha1(  # noqa: S324 - a name for a certificate, not a security hash
            c.public_bytes(serialization.Encoding.DER)
        ).digest()
        == value
    )


class _Resolver:
    def __init__(
        self,
        security: etree._Element | None,
        ids: dict[str, etree._Element],
        known: KnownCertificates | None,
        at: dt.datetime,
        parse: CertificateFromDer,
    ) -> None:
        self.tokens = check_tokens(security)
        self.ids = ids
        self.known = known
        self.at = at
        self.parse = parse

    def by_name(self, matches: Callable[[x509.Certificate], bool], form: str) -> SignerKey:
        """A certificate named, not carried: certs/known at intake, tokens at a destination."""
        if self.known is None:  # a destination: the gateway embedded what it resolved
            pairs = [(t, _der(t, "BinarySecurityToken", self.parse)) for t in self.tokens]
            found = [(t, c) for t, c in pairs if matches(c)]
            best = _best([c for _, c in found], self.at)
            if best is not None:
                token = next(t for t, c in found if c is best)
                return SignerKey(best, form=form, token=token)
            raise SignatureInvalid(
                f"KeyInfo names its certificate by {form}, and no BinarySecurityToken of the "
                "envelope holds it"
            )
        certificate = self.known.find(matches, self.at)
        if certificate is None:
            raise SignatureInvalid(
                f"KeyInfo names the signing certificate by {form} without carrying it, and "
                "certs/known/ holds no such certificate: embed the certificate in the message "
                "(X509Data or a BinarySecurityToken), or ask the gateway operator to add it to "
                "certs/known/"
            )
        return SignerKey(certificate, form=form, from_known=True)

    def x509_data(self, data: etree._Element, form: str) -> SignerKey:
        items = _children(data)
        certs = [i for i in items if i.tag == f"{{{DS}}}X509Certificate"]
        serials = [i for i in items if i.tag == f"{{{DS}}}X509IssuerSerial"]
        if len(certs) + len(serials) != len(items) or len(serials) > 1:
            shown = [_local(i) for i in items]
            raise SignatureInvalid(
                f"{form} may hold X509Certificate elements and one X509IssuerSerial, not {shown}"
            )
        if not certs:
            if not serials:
                raise SignatureInvalid(f"{form} is empty")
            return self.by_name(_issuer_serial(serials[0]), "X509IssuerSerial")
        parsed = [_der(c, "X509Certificate", self.parse) for c in certs]
        if serials and not _issuer_serial(serials[0])(parsed[0]):
            raise SignatureInvalid(
                f"{form}: X509IssuerSerial does not name the X509Certificate beside it"
            )
        return SignerKey(parsed[0], tuple(parsed[1:]), form=form)

    def reference(self, reference: etree._Element) -> SignerKey:
        uri = reference.get("URI") or ""
        value_type = reference.get("ValueType")
        if value_type not in (None, X509V3):
            raise SignatureInvalid(f"STR Reference ValueType {value_type!r} is not X509v3")
        if not uri.startswith("#") or len(uri) < 2:
            raise SignatureInvalid(
                f"STR Reference URI {uri!r} is not a same-document #Id of a BinarySecurityToken"
            )
        token = self.ids.get(uri[1:])
        if token is None:
            raise SignatureInvalid(f"STR Reference {uri!r} resolves to no element")
        if not any(token is t for t in self.tokens):
            raise SignatureInvalid(
                f"STR Reference {uri!r} names {_local(token)} (line {token.sourceline}), not a "
                "BinarySecurityToken of this wsse:Security"
            )
        return SignerKey(
            _der(token, "BinarySecurityToken", self.parse), form="BinarySecurityToken", token=token
        )

    def key_identifier(self, identifier: etree._Element) -> SignerKey:
        value_type = identifier.get("ValueType")
        encoding = identifier.get("EncodingType")
        if encoding not in (None, BASE64):
            raise SignatureInvalid(f"KeyIdentifier EncodingType {encoding!r} is not Base64Binary")
        if value_type == X509V3:
            return SignerKey(
                _der(identifier, "KeyIdentifier", self.parse), form="KeyIdentifier X509v3"
            )
        value = base64_text(identifier, "KeyIdentifier")
        if value_type == SKI:
            return self.by_name(_ski(value), "X509SubjectKeyIdentifier")
        if value_type == THUMBPRINT_SHA1:
            return self.by_name(_thumbprint(value), "ThumbprintSHA1")
        raise SignatureInvalid(
            f"KeyIdentifier ValueType {value_type!r} is not X509v3, X509SubjectKeyIdentifier "
            "or ThumbprintSHA1"
        )

    def security_token_reference(self, str_element: etree._Element) -> SignerKey:
        items = _children(str_element)
        if len(items) != 1:
            raise SignatureInvalid(
                "SecurityTokenReference must hold one reference, found "
                f"{[_local(i) for i in items]}"
            )
        item = items[0]
        if item.tag == f"{{{WSSE}}}Reference":
            return self.reference(item)
        if item.tag == f"{{{WSSE}}}KeyIdentifier":
            return self.key_identifier(item)
        if item.tag == f"{{{DS}}}X509Data":
            return self.x509_data(item, "SecurityTokenReference/X509Data")
        raise SignatureInvalid(f"SecurityTokenReference holds {item.tag}, which is not accepted")


def resolve(
    key_info: etree._Element,
    *,
    security: etree._Element | None,
    ids: dict[str, etree._Element],
    known: KnownCertificates | None,
    at: dt.datetime,
    parse: CertificateFromDer,
) -> SignerKey:
    """The certificate ``key_info`` gives, by any SPEC §2 form; see the module docstring.

    ``known`` None means "at a destination": a certificate named without being carried is
    looked up among the envelope's tokens instead of certs/known."""
    resolver = _Resolver(security, ids, known, at, parse)
    items = _children(key_info)
    if len(items) != 1 or items[0].tag not in (f"{{{DS}}}X509Data", STR):
        found = [_local(i) for i in items]
        raise SignatureInvalid(
            f"KeyInfo must hold one X509Data or one wsse:SecurityTokenReference (found {found}); "
            "RetrievalMethod, KeyValue and KeyName are not accepted"
        )
    if items[0].tag == STR:
        signer = resolver.security_token_reference(items[0])
    else:
        signer = resolver.x509_data(items[0], "X509Data")
    _refuse_unreferenced(resolver.tokens, signer.token)
    return signer


def _refuse_unreferenced(tokens: Iterable[etree._Element], used: etree._Element | None) -> None:
    for token in tokens:
        if token is not used:
            raise SignatureInvalid(
                f"BinarySecurityToken {element_id(token) or ''!r} (line {token.sourceline}) is "
                "not referenced by the signature's KeyInfo"
            )
