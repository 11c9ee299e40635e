"""GOST R 34.10-2012 / 34.11-2012 through the algorithm table: the published test vectors,
interop both ways with gostcrypto (an independent pure-Python implementation), XML-DSig
signing and verification with its attacks, and GOST chains judged as `openssl verify` does."""

from __future__ import annotations

import base64
import datetime as dt
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from broker.errors import CertificateUntrusted, SignatureInvalid
from broker.routing.table import GlobList, Participant
from broker.signing import algorithms, gost, xmldsig
from broker.signing.trust import TrustStore
from tests.gost_support import GostPki, require_gost
from tests.pki_support import Pki

M1 = b"012345678901234567890123456789012345678901234567890123456789012"  # RFC 6986 §10.1


@pytest.fixture(autouse=True)
def _backend() -> None:
    require_gost()


@pytest.fixture(scope="module")
def gost_pki(tmp_path_factory: pytest.TempPathFactory) -> GostPki:
    if not gost.available():
        pytest.skip("libengine-gost-openssl is not installed")
    pki = GostPki(tmp_path_factory.mktemp("gost"))
    pki.ca("ru-ca", "/C=RU/CN=RU GOST CA")
    pki.ca("other-ca", "/C=RU/CN=Another GOST CA")
    pki.leaf("ru-sw", "/C=RU/CN=RU-SW", "ru-ca")
    pki.leaf("ru-sw-512", "/C=RU/CN=RU-SW", "ru-ca", bits=512)
    return pki


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


# -- the published vectors ---------------------------------------------------------------------


def test_streebog_matches_rfc_6986() -> None:
    """RFC 6986 §10.1, message M1, both sizes, through the table's DigestMethods."""
    assert algorithms.STREEBOG256.hash(M1).hex() == (
        "9d151eefd8590b89daa6ba6cb74af9275dd051026bb149a452fd84e5e57b5500"
    )
    assert algorithms.STREEBOG512.hash(M1).hex() == (
        "1b54d01a4af5b9d5cc3d86d68d285462b19abc2475222f35c085122be4ba1ffa"
        "00ad30f8767b3a82384c6574f024c311e2a481332b08ef7f41797891c1646f48"
    )
    assert algorithms.KZ_STREEBOG512.hash(M1) == algorithms.STREEBOG512.hash(M1)


def _der(tag: int, body: bytes) -> bytes:
    size = len(body)
    length = bytes([size]) if size < 128 else bytes([0x81, size])
    return bytes([tag]) + length + body


def _oid(text: str) -> bytes:
    first, second, *rest = (int(p) for p in text.split("."))
    body = bytes([40 * first + second])
    for part in rest:
        chunk, left = [part & 0x7F], part >> 7
        while left:
            chunk.append(0x80 | (left & 0x7F))
            left >>= 7
        body += bytes(reversed(chunk))
    return _der(0x06, body)


def _spki(x: int, y: int, paramset: str, bits: int = 256) -> bytes:
    """A SubjectPublicKeyInfo for a GOST point (RFC 9215: coordinates little-endian)."""
    size = bits // 8
    algorithm = "1.2.643.7.1.1.1.1" if bits == 256 else "1.2.643.7.1.1.1.2"
    digest = "1.2.643.7.1.1.2.2" if bits == 256 else "1.2.643.7.1.1.2.3"
    params = _der(0x30, _oid(paramset) + (_oid(digest) if bits == 256 else b""))
    point = _der(0x04, x.to_bytes(size, "little") + y.to_bytes(size, "little"))
    return _der(0x30, _der(0x30, _oid(algorithm) + params) + _der(0x03, b"\x00" + point))


def test_the_rfc_7091_example_signature_verifies() -> None:
    """RFC 7091 appendix A.1 (the test parameter set): the published signature (r, s) over
    the published e verifies with the published key; any change to it does not."""
    key = gost.public_key_from_spki(
        _spki(
            0x7F2B49E270DB6D90D8595BEC458B50C58585BA1D4E9B788F6689DBD8E56FD80B,
            0x26F1B489D6701DD185C8413A977B3CBBAF64D1C593D26627DFFB101A87FF77DA,
            "1.2.643.2.2.35.0",
        )
    )
    assert key is not None
    assert key.bits == 256
    e = 0x2DFBC1B372D89A1188C09C52E0EEC61FCE52032AB1022E8E67ECE6672B043EE5
    r = 0x41AA28D2F1AB148280CD9ED56FEDA41974053554A42767B83AD043FD39DC0493
    s = 0x01456C64BA4642A1653C235A98A60249BCD6D3F746B631DF928014F6C5BF9C40
    signature = s.to_bytes(32, "big") + r.to_bytes(32, "big")  # s‖r (RFC 4491 §2.2.2)
    hashed = e.to_bytes(32, "little")  # the engine reads a hash as a little-endian number
    assert key.verify_digest(signature, hashed)
    assert not key.verify_digest(signature, (e + 1).to_bytes(32, "little"))
    assert not key.verify_digest(r.to_bytes(32, "big") + s.to_bytes(32, "big"), hashed)


# -- interop with gostcrypto ----------------------------------------------------------------------
# gostcrypto writes public keys big-endian (x‖y), signatures r‖s, and takes the digest as a
# big-endian number: the byte-order conventions are converted here, the mathematics is not.

CURVES = {
    256: ("id-tc26-gost-3410-2012-256-paramSetA", "1.2.643.7.1.2.1.1.1", "streebog256"),
    512: ("id-tc26-gost-3410-12-512-paramSetA", "1.2.643.7.1.2.1.2.1", "streebog512"),
}


@pytest.mark.parametrize("bits", [256, 512])
def test_gostcrypto_signatures_verify_here_and_ours_there(bits: int) -> None:
    from gostcrypto import gosthash, gostsignature

    name, paramset, hash_name = CURVES[bits]
    size = bits // 8
    mode = gostsignature.MODE_256 if bits == 256 else gostsignature.MODE_512
    signer = gostsignature.new(mode, gostsignature.CURVES_R_1323565_1_024_2019[name])
    private = os.urandom(size)
    public = bytes(signer.public_key_generate(private))
    x, y = int.from_bytes(public[:size], "big"), int.from_bytes(public[size:], "big")
    key = gost.public_key_from_spki(_spki(x, y, paramset, bits))
    assert key is not None
    message = b"<soap:Body>conformity declaration</soap:Body>"
    hashed = bytes(gosthash.new(hash_name, data=message).digest())
    theirs = bytes(signer.sign(private, hashed[::-1]))
    ours_form = theirs[size:] + theirs[:size]  # r‖s → s‖r
    assert key.verify(ours_form, message, key.digest_name)
    assert not key.verify(ours_form, message + b" ", key.digest_name)

    # Ours, checked by gostcrypto: sign with an engine key whose public point we read back.
    pki_key = gost.GostPrivateKey.from_pem(_engine_key_pem(bits))
    ours = pki_key.sign(message, pki_key.digest_name)
    public_point = _engine_public_point(bits)
    theirs_form = ours[size:] + ours[:size]
    assert signer.verify(public_point, hashed[::-1], theirs_form)
    assert not signer.verify(
        public_point, bytes(gosthash.new(hash_name, data=b"x").digest())[::-1], theirs_form
    )


_ENGINE_KEYS: dict[int, tuple[bytes, bytes]] = {}


def _engine_key(bits: int) -> tuple[bytes, bytes]:
    """(PEM private key, gostcrypto-form public point) of a fresh TC26-A key from openssl."""
    if bits not in _ENGINE_KEYS:
        import tempfile

        pki = GostPki(Path(tempfile.mkdtemp()))
        # The engine's TC26-256-A is "TCA" ("A" is CryptoPro-A); TC26-512-A is "A".
        key_path = pki.key("k", bits, "TCA" if bits == 256 else "A")
        text = pki.openssl(
            "pkey", "-in", str(key_path), "-pubout", "-outform", "DER", "-out", "pub.der"
        )
        del text
        spki = (pki.folder / "pub.der").read_bytes()
        size = bits // 8
        point = spki[-2 * size :]  # the OCTET STRING's content: x‖y, little-endian
        x, y = point[:size][::-1], point[size:][::-1]
        _ENGINE_KEYS[bits] = (key_path.read_bytes(), x + y)
    return _ENGINE_KEYS[bits]


def _engine_key_pem(bits: int) -> bytes:
    return _engine_key(bits)[0]


def _engine_public_point(bits: int) -> bytes:
    return _engine_key(bits)[1]


# -- XML-DSig -------------------------------------------------------------------------------------


def _document() -> etree._Element:
    return etree.fromstring(
        b'<doc><part Id="p1">conformance probe</part><part Id="p2">two</part></doc>'
    )


def _signed(key_path: Path, cert_path: Path) -> etree._Element:
    root = _document()
    key = algorithms.load_private_pem(key_path.read_bytes())
    der = _cert(cert_path).public_bytes(serialization.Encoding.DER)
    parts = root.findall("part")
    xmldsig.sign(root, [("#p1", parts[0]), ("#p2", parts[1])], key, der)
    return root


def _verify(root: etree._Element) -> xmldsig.VerifiedSignature:
    signature = root.find(f"{{{xmldsig.DS}}}Signature")
    assert signature is not None
    return xmldsig.verify(signature, xmldsig.id_index(root))


@pytest.mark.parametrize(
    ("leaf", "uri"),
    [
        ("ru-sw", algorithms.GOST_256_METHOD),
        ("ru-sw-512", algorithms.GOST_512_METHOD),
    ],
)
def test_gost_xml_signature_round_trip(gost_pki: GostPki, leaf: str, uri: str) -> None:
    """A GOST key signs with the v1.1 URIs and Streebog digests of its size; it verifies."""
    root = _signed(gost_pki.folder / f"{leaf}.key", gost_pki.folder / f"{leaf}.pem")
    verified = _verify(root)
    assert verified.method.uri == uri
    digests = root.findall(f".//{{{xmldsig.DS}}}DigestMethod")
    assert {d.get("Algorithm") for d in digests} == {verified.method.digest.uri}


def _edit(root: etree._Element, change: str) -> etree._Element:
    ds = xmldsig.DS
    if change == "tampered body":
        root.find("part").text = "changed"
    elif change == "sha256 digest under a GOST method":
        for method in root.iter(f"{{{ds}}}DigestMethod"):
            method.set("Algorithm", algorithms.SHA256.uri)
    elif change == "ECDSA URI on a GOST key":
        root.find(f".//{{{ds}}}SignatureMethod").set(
            "Algorithm", "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
        )
    elif change == "512 URI on a 256-bit key":
        root.find(f".//{{{ds}}}SignatureMethod").set("Algorithm", algorithms.GOST_512_METHOD)
    elif change == "signature value changed":
        value = root.find(f".//{{{ds}}}SignatureValue")
        assert value is not None
        assert value.text
        value.text = ("A" if value.text[0] != "A" else "B") + value.text[1:]
    elif change == "wrapped: a second element with the signed Id":
        copy = etree.SubElement(root, "part", Id="p1")
        copy.text = "forged"
    return root


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("tampered body", "does not match"),
        ("sha256 digest under a GOST method", "does not go with"),
        # Refused at the first rule they break: the digests no longer go with the method.
        ("ECDSA URI on a GOST key", "does not go with"),
        ("512 URI on a 256-bit key", "does not go with"),
        ("signature value changed", "does not verify"),
        ("wrapped: a second element with the signed Id", "Id"),
    ],
)
def test_attacks_on_a_gost_signature_are_refused(
    gost_pki: GostPki, change: str, reason: str
) -> None:
    root = _edit(_signed(gost_pki.folder / "ru-sw.key", gost_pki.folder / "ru-sw.pem"), change)
    with pytest.raises(SignatureInvalid, match=reason):
        _verify(root)


def test_a_gost_uri_on_an_ecdsa_key_is_refused(test_pki: Pki) -> None:
    """The reverse downgrade: an ECDSA key's document whose SignedInfo claims GOST (its
    references digested with Streebog, so that only the key can give it away)."""
    issued = test_pki.identities["KZ-SW"]
    root = _document()
    parts = root.findall("part")
    der = issued.certificate.public_bytes(serialization.Encoding.DER)
    xmldsig.sign(root, [("#p1", parts[0])], issued.key, der)
    ds = xmldsig.DS
    root.find(f".//{{{ds}}}SignatureMethod").set("Algorithm", algorithms.GOST_256_METHOD)
    for reference in root.iter(f"{{{ds}}}Reference"):
        reference.find(f"{{{ds}}}DigestMethod").set("Algorithm", algorithms.STREEBOG256.uri)
        target = xmldsig.id_index(root)[(reference.get("URI") or "")[1:]]
        digest = algorithms.STREEBOG256.hash(etree.tostring(target, method="c14n", exclusive=True))
        reference.find(f"{{{ds}}}DigestValue").text = base64.b64encode(digest).decode()
    with pytest.raises(SignatureInvalid, match=r"needs a GOST R 34\.10-2012 key"):
        _verify(root)


def test_without_the_backend_a_gost_signature_says_what_to_install(
    gost_pki: GostPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _signed(gost_pki.folder / "ru-sw.key", gost_pki.folder / "ru-sw.pem")
    monkeypatch.setattr(gost, "backend", lambda: None)
    with pytest.raises(SignatureInvalid, match="libengine-gost-openssl"):
        _verify(root)


# -- chains, judged as `openssl verify` judges them ------------------------------------------------


def _participant() -> Participant:
    return Participant("RU-SW", "RU", GlobList(()), "https://ru.example/in", None, frozenset())


def _ours(pki: GostPki, cert: Path, *, crl: Path | None = None, at: dt.datetime) -> bool:
    trust = TrustStore(
        {"RU": (_cert(pki.folder / "ru-ca.pem"),)},
        (x509.load_pem_x509_crl(crl.read_bytes()),) if crl else (),
    )
    try:
        trust.identify(_cert(cert), (), {"RU-SW": _participant()}, at)
    except CertificateUntrusted:
        return False
    return True


@pytest.mark.parametrize(
    "case", ["valid", "expired", "wrong CA", "revoked", "no digitalSignature", "valid 512"]
)
def test_gost_chains_are_judged_as_openssl_verify_judges_them(gost_pki: GostPki, case: str) -> None:
    now = dt.datetime.now(dt.UTC)
    ca = gost_pki.folder / "ru-ca.pem"
    crl = None
    at = now
    if case == "valid":
        cert = gost_pki.folder / "ru-sw.pem"
    elif case == "valid 512":
        cert = gost_pki.folder / "ru-sw-512.pem"
    elif case == "expired":
        cert = gost_pki.leaf("short", "/C=RU/CN=RU-SW", "ru-ca", days=1)
        at = now + dt.timedelta(days=3)
    elif case == "wrong CA":
        cert = gost_pki.leaf("foreign", "/C=RU/CN=RU-SW", "other-ca")
    elif case == "revoked":
        cert = gost_pki.leaf("revoked", "/C=RU/CN=RU-SW", "ru-ca")
        crl = gost_pki.crl("ru-ca", revoked=cert)
    else:
        cert = gost_pki.leaf("nosign", "/C=RU/CN=RU-SW", "ru-ca", extensions="no_signing")
    theirs = gost_pki.verify(cert, ca, crl=crl, at=at)
    if case == "no digitalSignature":
        # `openssl verify` checks no key usage for a chain as such; SPEC §2 asks for
        # digitalSignature, as `openssl verify -purpose smimesign` does.
        theirs = theirs and "Digital Signature" in gost_pki.openssl(
            "x509", "-in", str(cert), "-noout", "-text"
        )
    assert _ours(gost_pki, cert, crl=crl, at=at) == theirs, case
    assert theirs == case.startswith("valid")


def test_a_gost_certificate_of_another_participant_names_no_one(gost_pki: GostPki) -> None:
    """Wrong CN: the chain is fine, but the certificate does not speak for RU-SW."""
    cert = gost_pki.leaf("kz-named", "/C=RU/CN=KZ-SW", "ru-ca")
    with pytest.raises(CertificateUntrusted, match="names no participant"):
        TrustStore({"RU": (_cert(gost_pki.folder / "ru-ca.pem"),)}).identify(
            _cert(cert), (), {"RU-SW": _participant()}, dt.datetime.now(dt.UTC)
        )
