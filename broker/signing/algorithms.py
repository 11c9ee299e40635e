"""The one table of signature and digest algorithms (SPEC §2), and the one place that knows what
kind of key it holds.

A :class:`KeyFamily` says how to recognise its keys, what makes one acceptable, and how to verify
and sign with it, both as XML-DSig wants the SignatureValue and in the family's plain form (the
audit log's entry signatures). A :class:`SignatureAlgorithm` pairs a SignatureMethod URI with
its family and digest. Everything not listed — SHA-1, HMAC, DSA, inclusive C14N, XSLT or XPath
transforms — is refused as SIGNATURE_INVALID. Adding an algorithm is adding entries here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from broker.errors import SignatureInvalid
from broker.signing import gost

EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
MIN_RSA_BITS = 2048

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | gost.GostPublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | gost.GostPrivateKey
PRIVATE_KEY_TYPES = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, gost.GostPrivateKey)
StandardPrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
"""The keys ``cryptography`` itself can use (to issue certificates, for TLS)."""


@dataclass(frozen=True)
class Digest:
    uri: str
    name: str
    hash: Callable[[bytes], bytes]
    group: str = "sha2"
    """Digests of one group go together: a GOST SignatureMethod takes Streebog digests of its
    own size in every reference, an RSA/ECDSA one SHA-2 digests (SPEC §2)."""


def _streebog(name: bytes) -> Callable[[bytes], bytes]:
    def digest(data: bytes) -> bytes:
        try:
            return gost.digest(name, data)
        except gost.GostUnavailable as exc:
            raise SignatureInvalid(str(exc)) from exc

    return digest


def _hashing(algorithm: type[hashes.HashAlgorithm]) -> Callable[[bytes], bytes]:
    def digest(data: bytes) -> bytes:
        h = hashes.Hash(algorithm())
        h.update(data)
        return h.finalize()

    return digest


SHA256 = Digest("http://www.w3.org/2001/04/xmlenc#sha256", "sha256", _hashing(hashes.SHA256))
SHA384 = Digest("http://www.w3.org/2001/04/xmldsig-more#sha384", "sha384", _hashing(hashes.SHA384))
SHA512 = Digest("http://www.w3.org/2001/04/xmlenc#sha512", "sha512", _hashing(hashes.SHA512))
STREEBOG256 = Digest(
    "urn:ietf:params:xml:ns:cpxmlsec:algorithms:gostr34112012-256",
    "streebog256",
    _streebog(gost.STREEBOG_256),
    "gost256",
)
STREEBOG512 = Digest(
    "urn:ietf:params:xml:ns:cpxmlsec:algorithms:gostr34112012-512",
    "streebog512",
    _streebog(gost.STREEBOG_512),
    "gost512",
)
# Kazakhstan's signer names Streebog-512 ("GOST 34.11-2015") in its own namespace.
KZ_STREEBOG512 = Digest(
    "urn:ietf:params:xml:ns:pkigovkz:xmlsec:algorithms:gostr34112015-512",
    "streebog512 (pkigovkz)",
    _streebog(gost.STREEBOG_512),
    "gost512",
)
_CRYPTOGRAPHY_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


@dataclass(frozen=True)
class KeyFamily:
    """One kind of key and everything the gateway does with it."""

    name: str
    """As error messages say it: ``RSA``, ``EC``."""
    owns: Callable[[object], bool]
    """Is this key (public or private) of the family?"""
    problem: Callable[[PublicKey], str | None]
    """Why a public key of the family is not acceptable (too short), or None."""
    verify: Callable[[PublicKey, bytes, bytes, Digest], None]
    """Check an XML-DSig SignatureValue over ``data``; SignatureInvalid if it does not hold."""
    sign: Callable[[PrivateKey, bytes, Digest], bytes]
    """An XML-DSig SignatureValue over ``data``."""
    sign_plain: Callable[[PrivateKey, bytes], bytes]
    """The family's own signature encoding, SHA-256 (audit entries: PKCS#1 v1.5, DER ECDSA)."""
    verify_plain: Callable[[PublicKey, bytes, bytes], bool]
    method_for: Callable[[PrivateKey], str]
    """The SignatureMethod the gateway and `broker sign` use with this key."""


def _rsa_problem(key: PublicKey) -> str | None:
    assert isinstance(key, rsa.RSAPublicKey)
    if key.key_size < MIN_RSA_BITS:
        return f"RSA key of {key.key_size} bits; at least {MIN_RSA_BITS} are required"
    return None


def _rsa_verify(key: PublicKey, value: bytes, data: bytes, digest: Digest) -> None:
    assert isinstance(key, rsa.RSAPublicKey)
    try:
        key.verify(value, data, padding.PKCS1v15(), _CRYPTOGRAPHY_HASHES[digest.name]())
    except InvalidSignature as exc:
        raise SignatureInvalid("SignatureValue does not verify with the certificate's key") from exc


def _rsa_sign(key: PrivateKey, data: bytes, digest: Digest) -> bytes:
    assert isinstance(key, rsa.RSAPrivateKey)
    return key.sign(data, padding.PKCS1v15(), _CRYPTOGRAPHY_HASHES[digest.name]())


def _ec_size(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> int:
    return (key.curve.key_size + 7) // 8


def _ec_verify(key: PublicKey, value: bytes, data: bytes, digest: Digest) -> None:
    assert isinstance(key, ec.EllipticCurvePublicKey)
    size = _ec_size(key)
    if len(value) != 2 * size:
        raise SignatureInvalid("ECDSA SignatureValue has the wrong length")
    r, s = int.from_bytes(value[:size], "big"), int.from_bytes(value[size:], "big")
    try:
        key.verify(encode_dss_signature(r, s), data, ec.ECDSA(_CRYPTOGRAPHY_HASHES[digest.name]()))
    except InvalidSignature as exc:
        raise SignatureInvalid("SignatureValue does not verify with the certificate's key") from exc


def _ec_sign(key: PrivateKey, data: bytes, digest: Digest) -> bytes:
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    # XML-DSig wants r‖s, each the curve's size, not cryptography's DER.
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(_CRYPTOGRAPHY_HASHES[digest.name]())))
    size = _ec_size(key)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def _rsa_sign_plain(key: PrivateKey, data: bytes) -> bytes:
    assert isinstance(key, rsa.RSAPrivateKey)
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def _rsa_verify_plain(key: PublicKey, signature: bytes, data: bytes) -> bool:
    assert isinstance(key, rsa.RSAPublicKey)
    try:
        key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def _ec_sign_plain(key: PrivateKey, data: bytes) -> bytes:
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def _ec_verify_plain(key: PublicKey, signature: bytes, data: bytes) -> bool:
    assert isinstance(key, ec.EllipticCurvePublicKey)
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def _ec_method(key: PrivateKey) -> str:
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    if key.curve.key_size >= 384:
        return "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384"
    return "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"


RSA = KeyFamily(
    "RSA",
    owns=lambda key: isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey),
    problem=_rsa_problem,
    verify=_rsa_verify,
    sign=_rsa_sign,
    sign_plain=_rsa_sign_plain,
    verify_plain=_rsa_verify_plain,
    method_for=lambda key: "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
)
EC = KeyFamily(
    "EC",
    owns=lambda key: isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey),
    problem=lambda key: None,
    verify=_ec_verify,
    sign=_ec_sign,
    sign_plain=_ec_sign_plain,
    verify_plain=_ec_verify_plain,
    method_for=_ec_method,
)


def _gost_name(digest: Digest) -> bytes:
    return gost.STREEBOG_512 if digest.group == "gost512" else gost.STREEBOG_256


def _gost_verify(key: PublicKey, value: bytes, data: bytes, digest: Digest) -> None:
    assert isinstance(key, gost.GostPublicKey)
    if len(value) != 2 * key.bits // 8:
        raise SignatureInvalid("GOST SignatureValue has the wrong length")
    if not key.verify(value, data, _gost_name(digest)):
        raise SignatureInvalid("SignatureValue does not verify with the certificate's key")


def _gost_sign(key: PrivateKey, data: bytes, digest: Digest) -> bytes:
    assert isinstance(key, gost.GostPrivateKey)
    return key.sign(data, _gost_name(digest))


def _gost_sign_plain(key: PrivateKey, data: bytes) -> bytes:
    assert isinstance(key, gost.GostPrivateKey)
    return key.sign(data, key.digest_name)


def _gost_verify_plain(key: PublicKey, signature: bytes, data: bytes) -> bool:
    assert isinstance(key, gost.GostPublicKey)
    return key.verify(signature, data, key.digest_name)


def _gost_method(key: PrivateKey) -> str:
    assert isinstance(key, gost.GostPrivateKey)
    return GOST_512_METHOD if key.bits > 256 else GOST_256_METHOD


GOST_256_METHOD = "urn:ietf:params:xml:ns:cpxmlsec:algorithms:gostr34102012-gostr34112012-256"
GOST_512_METHOD = "urn:ietf:params:xml:ns:cpxmlsec:algorithms:gostr34102012-gostr34112012-512"
KZ_GOST_512_METHOD = (
    "urn:ietf:params:xml:ns:pkigovkz:xmlsec:algorithms:gostr34102015-gostr34112015-512"
)
GOST = KeyFamily(
    "GOST R 34.10-2012",
    owns=lambda key: isinstance(key, gost.GostPublicKey | gost.GostPrivateKey),
    problem=lambda key: None,
    verify=_gost_verify,
    sign=_gost_sign,
    sign_plain=_gost_sign_plain,
    verify_plain=_gost_verify_plain,
    method_for=_gost_method,
)
FAMILIES: tuple[KeyFamily, ...] = (RSA, EC, GOST)


@dataclass(frozen=True)
class SignatureAlgorithm:
    uri: str
    family: KeyFamily
    digest: Digest
    key_bits: int | None = None
    """The key size the method names (GOST 256 or 512), if it names one."""


SIGNATURE_METHODS: dict[str, SignatureAlgorithm] = {
    alg.uri: alg
    for alg in (
        SignatureAlgorithm("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", RSA, SHA256),
        SignatureAlgorithm("http://www.w3.org/2001/04/xmldsig-more#rsa-sha384", RSA, SHA384),
        SignatureAlgorithm("http://www.w3.org/2001/04/xmldsig-more#rsa-sha512", RSA, SHA512),
        SignatureAlgorithm("http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256", EC, SHA256),
        SignatureAlgorithm("http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384", EC, SHA384),
        SignatureAlgorithm("http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512", EC, SHA512),
        SignatureAlgorithm(GOST_256_METHOD, GOST, STREEBOG256, 256),
        SignatureAlgorithm(GOST_512_METHOD, GOST, STREEBOG512, 512),
        # Kazakhstan's "GOST 34.10-2015" is GOST R 34.10-2012-512 on a TC26-512 curve.
        SignatureAlgorithm(KZ_GOST_512_METHOD, GOST, KZ_STREEBOG512, 512),
    )
}
DIGEST_METHODS: dict[str, Digest] = {
    d.uri: d for d in (SHA256, SHA384, SHA512, STREEBOG256, STREEBOG512, KZ_STREEBOG512)
}
SHA256_DIGEST = SHA256.uri


def describe(uri: str) -> str:
    """A short readable name for an algorithm URI in error messages."""
    if "#" in uri:
        return uri.rsplit("#", 1)[-1]
    return uri.rsplit(":", 1)[-1] if uri.startswith("urn:") else uri


def family_of(key: object) -> KeyFamily | None:
    """The family of a public or private key; None for a kind the table does not know."""
    return next((family for family in FAMILIES if family.owns(key)), None)


def private_family(key: object) -> KeyFamily:
    """The family of a private key the gateway or a sender signs with; ValueError if none."""
    family = family_of(key)
    if family is None or not isinstance(key, PRIVATE_KEY_TYPES):
        raise ValueError(f"only {', '.join(f.name for f in FAMILIES)} private keys are supported")
    return family


def supported_private(key: object) -> PrivateKey:
    """``key`` as a private key of a family the table knows; ValueError otherwise."""
    private_family(key)
    assert isinstance(key, PRIVATE_KEY_TYPES)
    return key


def standard_private(key: object) -> StandardPrivateKey:
    """``key`` as an RSA or EC private key (what ``cryptography`` can issue certificates and
    run TLS with); ValueError for any other."""
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError("only RSA and EC keys are supported here")
    return key


def signed_by(
    signed: x509.Certificate | x509.CertificateRevocationList, issuer: x509.Certificate
) -> bool:
    """Is the certificate's or CRL's signature made by ``issuer``'s key, whatever the
    algorithms of either?"""
    key = public_key_of(issuer)
    if key is None:
        return False
    if isinstance(key, gost.GostPublicKey):
        der = signed.public_bytes(serialization.Encoding.DER)
        if isinstance(signed, x509.CertificateRevocationList):
            return gost.crl_signed_by(der, key)
        return gost.certificate_signed_by(der, key)
    if isinstance(signed, x509.CertificateRevocationList):
        return signed.is_signature_valid(key)
    try:
        signed.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def public_key_of(certificate: x509.Certificate) -> PublicKey | None:
    """The certificate's public key if the table knows its kind, else None. ``cryptography``
    reads RSA and EC keys; a GOST key (it cannot) comes from the GOST backend, if installed."""
    try:
        key = certificate.public_key()
    except UnsupportedAlgorithm:
        if not gost.available():
            return None
        return gost.public_key(certificate.public_bytes(serialization.Encoding.DER))
    except ValueError:
        return None
    return key if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey) else None


def is_gost_certificate(certificate: x509.Certificate) -> bool:
    """Does the certificate hold a GOST R 34.10-2012 key (by its algorithm OID)?"""
    return certificate.public_key_algorithm_oid.dotted_string in GOST_KEY_OIDS


GOST_KEY_OIDS = frozenset({"1.2.643.7.1.1.1.1", "1.2.643.7.1.1.1.2"})


def load_private_pem(data: bytes) -> PrivateKey:
    """A private key from PEM, of any family in the table; ValueError saying why not (for a
    GOST key without the backend: what to install)."""
    try:
        return supported_private(serialization.load_pem_private_key(data, password=None))
    except UnsupportedAlgorithm:
        if not gost.available():
            raise ValueError(gost.MISSING) from None
        return gost.GostPrivateKey.from_pem(data)


def verify_value(
    certificate: x509.Certificate, method: SignatureAlgorithm, value: bytes, data: bytes
) -> None:
    """Check ``value`` (a SignatureValue) over ``data`` with the certificate's key, by
    ``method``; SignatureInvalid naming what is wrong (the key's kind, size, or the value)."""
    if method.family is GOST and not gost.available():
        raise SignatureInvalid(f"{describe(method.uri)}: {gost.MISSING}")
    key = public_key_of(certificate)
    if key is None or not method.family.owns(key):
        raise SignatureInvalid(f"{describe(method.uri)} needs a {method.family.name} key")
    if method.key_bits is not None and key.key_size != method.key_bits:
        raise SignatureInvalid(
            f"{describe(method.uri)} needs a {method.key_bits}-bit key, not {key.key_size}"
        )
    problem = method.family.problem(key)
    if problem is not None:
        raise SignatureInvalid(problem)
    method.family.verify(key, value, data, method.digest)


def sign_value(key: PrivateKey, uri: str, data: bytes) -> bytes:
    method = SIGNATURE_METHODS[uri]
    return method.family.sign(key, data, method.digest)


def method_for(key: PrivateKey) -> str:
    """The SignatureMethod URI the gateway and `broker sign` use for a key."""
    return private_family(key).method_for(key)
