"""The one table of XML-DSig algorithms the gateway accepts (SPEC §2).

Everything not listed here — SHA-1, HMAC, DSA, inclusive C14N, XSLT or XPath transforms — is
refused as SIGNATURE_INVALID. National algorithms (GOST R 34.10-2012, STB 34.101.45) would be
added here, with their key types, and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives import hashes

EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"

KeyKind = Literal["rsa", "ec"]
MIN_RSA_BITS = 2048


@dataclass(frozen=True)
class SignatureAlgorithm:
    uri: str
    key: KeyKind
    hash: type[hashes.HashAlgorithm]


SIGNATURE_METHODS: dict[str, SignatureAlgorithm] = {
    alg.uri: alg
    for alg in (
        SignatureAlgorithm(
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", "rsa", hashes.SHA256
        ),
        SignatureAlgorithm(
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384", "rsa", hashes.SHA384
        ),
        SignatureAlgorithm(
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512", "rsa", hashes.SHA512
        ),
        SignatureAlgorithm(
            "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256", "ec", hashes.SHA256
        ),
        SignatureAlgorithm(
            "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384", "ec", hashes.SHA384
        ),
        SignatureAlgorithm(
            "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512", "ec", hashes.SHA512
        ),
    )
}

DIGEST_METHODS: dict[str, type[hashes.HashAlgorithm]] = {
    "http://www.w3.org/2001/04/xmlenc#sha256": hashes.SHA256,
    "http://www.w3.org/2001/04/xmldsig-more#sha384": hashes.SHA384,
    "http://www.w3.org/2001/04/xmlenc#sha512": hashes.SHA512,
}

SHA256_DIGEST = "http://www.w3.org/2001/04/xmlenc#sha256"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
ECDSA_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384"


def describe(uri: str) -> str:
    """A short readable name for an algorithm URI in error messages."""
    return uri.rsplit("#", 1)[-1] if "#" in uri else uri
