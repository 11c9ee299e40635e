"""Real WS-Security signers for the KeyInfo-form tests (SPEC §2 table).

- zeep's ``BinarySignature`` (STR Reference → BinarySecurityToken) and ``Signature``
  (STR wrapping X509Data with IssuerSerial and the certificate), run as zeep runs them. zeep
  signs soap:Body and wsu:Timestamp only; ``headers=True`` also references the SPEC §1 headers
  through zeep's own reference code, so that a ``full`` participant can use the same shapes.
- The forms no installed client writes (WSS4J's KeyIdentifier X509v3 and IssuerSerial, SKI,
  ThumbprintSHA1) are signed by the libxmlsec1 binding (``xmlsec`` from PyPI); the KeyInfo is
  then written as WSS4J writes it (it is outside SignedInfo, so it is not signed).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import importlib
from collections.abc import Callable
from typing import Any
from unittest import mock

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from broker import xmlsafe
from broker.envelope import DS, SOAP, WSSE, WSU, WSU_ID, parse_envelope
from broker.signing.keyinfo import BASE64, SKI, STR, THUMBPRINT_SHA1, X509V3

# Typed as Any: xmlsec's bundled stubs do not declare its transform constants, zeep has none.
xmlsec: Any = importlib.import_module("xmlsec")
zeep_signature: Any = importlib.import_module("zeep.wsse.signature")
_zeep_utils: Any = importlib.import_module("zeep.wsse.utils")

KeyInfoWriter = Callable[[etree._Element, x509.Certificate], None]


def security_header(root: etree._Element) -> etree._Element:
    """zeep's own wsse:Security lookup (creating it, in zeep's namespace, if missing)."""
    security: etree._Element = _zeep_utils.get_security_header(root)
    return security


def add_timestamp(
    security: etree._Element, created: dt.datetime | None = None, ttl: float | None = 300
) -> etree._Element:
    created = created or dt.datetime.now(dt.UTC)
    timestamp = etree.SubElement(security, f"{{{WSU}}}Timestamp", nsmap={"wsu": WSU})
    timestamp.set(WSU_ID, "id-timestamp")
    etree.SubElement(timestamp, f"{{{WSU}}}Created").text = f"{created:%Y-%m-%dT%H:%M:%SZ}"
    if ttl is not None:
        expires = created + dt.timedelta(seconds=ttl)
        etree.SubElement(timestamp, f"{{{WSU}}}Expires").text = f"{expires:%Y-%m-%dT%H:%M:%SZ}"
    return timestamp


def _headers(root: etree._Element) -> list[etree._Element]:
    return [h.element for h in parse_envelope(root).headers]


def zeep_sign(
    data: bytes,
    key_pem: bytes,
    cert_pem: bytes,
    *,
    binary: bool,
    headers: bool = True,
    timestamp: bool = True,
) -> bytes:
    """Sign with zeep: ``binary`` → BinarySignature, else Signature."""
    root = xmlsafe.parse(data)
    extra = _headers(root) if headers else []
    if timestamp:
        add_timestamp(security_header(root))
    key = zeep_signature._make_sign_key(key_pem, cert_pem, None)
    sign_node = zeep_signature._sign_node

    def with_headers(
        ctx: object, signature: object, target: etree._Element, digest: object
    ) -> None:
        sign_node(ctx, signature, target, digest)
        if target.tag == f"{{{SOAP}}}Body":
            for header in extra:
                sign_node(ctx, signature, header, digest)

    apply = (
        zeep_signature._sign_envelope_with_key_binary
        if binary
        else zeep_signature._sign_envelope_with_key
    )
    with mock.patch.object(zeep_signature, "_sign_node", with_headers):
        apply(root, key, xmlsec.Transform.ECDSA_SHA256, xmlsec.Transform.SHA256)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")  # type: ignore[no-any-return]


def xmlsec_sign(
    data: bytes,
    key_pem: bytes,
    cert_pem: bytes,
    write_key_info: KeyInfoWriter,
    *,
    headers: bool = True,
    timestamp: bool = True,
    node_soap: bool = False,
    body: bool = True,
) -> bytes:
    """Sign Body (+ headers, Timestamp) with libxmlsec1, then write KeyInfo as WSS4J does.

    ``node_soap``: the parts carry an unqualified ``Id`` (instead of wsu:Id) and each
    reference has enveloped-signature before exc-c14n, with an InclusiveNamespaces PrefixList,
    as node-soap and WSS4J write them."""
    if node_soap:
        data = data.replace(b" wsu:Id=", b" Id=")
    root = xmlsafe.parse(data)
    parts = ([root.find(f"{{{SOAP}}}Body")] if body else []) + (_headers(root) if headers else [])
    header = root.find(f"{{{SOAP}}}Header")
    assert header is not None
    security = etree.SubElement(header, f"{{{WSSE}}}Security", nsmap={"wsse": WSSE})
    if timestamp:
        parts.append(add_timestamp(security))
    signature = xmlsec.template.create(
        root, xmlsec.Transform.EXCL_C14N, xmlsec.Transform.ECDSA_SHA256, ns="ds"
    )
    security.insert(0, signature)
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_memory(key_pem, xmlsec.KeyFormat.PEM)
    for part in parts:
        assert part is not None
        plain = node_soap and part.get("Id") is not None
        ctx.register_id(part, "Id", None if plain else WSU)
        reference = xmlsec.template.add_reference(
            signature, xmlsec.Transform.SHA256, uri=f"#{part.get('Id' if plain else WSU_ID)}"
        )
        if node_soap:
            xmlsec.template.add_transform(reference, xmlsec.Transform.ENVELOPED)
        c14n = xmlsec.template.add_transform(reference, xmlsec.Transform.EXCL_C14N)
        if node_soap:
            xmlsec.template.transform_add_c14n_inclusive_namespaces(c14n, ["soap", "wsa"])
    ctx.sign(signature)
    key_info = etree.SubElement(signature, f"{{{DS}}}KeyInfo")
    write_key_info(key_info, x509.load_pem_x509_certificate(cert_pem))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")  # type: ignore[no-any-return]


def _der_b64(certificate: x509.Certificate) -> str:
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()


def _str(key_info: etree._Element) -> etree._Element:
    return etree.SubElement(key_info, STR, nsmap={"wsse": WSSE})


def key_identifier_x509(key_info: etree._Element, certificate: x509.Certificate) -> None:
    """WSS4J X509_KEY_IDENTIFIER, as Kazakhstan's signer writes it."""
    identifier = etree.SubElement(_str(key_info), f"{{{WSSE}}}KeyIdentifier")
    identifier.set("ValueType", X509V3)
    identifier.set("EncodingType", BASE64)
    identifier.text = _der_b64(certificate)


def issuer_serial(key_info: etree._Element, certificate: x509.Certificate) -> None:
    """WSS4J's default: the certificate named by issuer and serial, not carried."""
    data = etree.SubElement(_str(key_info), f"{{{DS}}}X509Data")
    pair = etree.SubElement(data, f"{{{DS}}}X509IssuerSerial")
    etree.SubElement(pair, f"{{{DS}}}X509IssuerName").text = certificate.issuer.rfc4514_string()
    etree.SubElement(pair, f"{{{DS}}}X509SerialNumber").text = str(certificate.serial_number)


def subject_key_identifier(key_info: etree._Element, certificate: x509.Certificate) -> None:
    ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    identifier = etree.SubElement(_str(key_info), f"{{{WSSE}}}KeyIdentifier")
    identifier.set("ValueType", SKI)
    identifier.set("EncodingType", BASE64)
    identifier.text = base64.b64encode(ski.digest).decode()


def thumbprint_sha1(key_info: etree._Element, certificate: x509.Certificate) -> None:
    der = certificate.public_bytes(serialization.Encoding.DER)
    identifier = etree.SubElement(_str(key_info), f"{{{WSSE}}}KeyIdentifier")
    identifier.set("ValueType", THUMBPRINT_SHA1)
    identifier.text = base64.b64encode(hashlib.sha1(der).digest()).decode()
