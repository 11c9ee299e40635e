"""Trust (SPEC §2, §6, §11): which certificates speak for which participant.

``certs/trust/<CC>/*.pem`` holds the CAs (roots and intermediates) of member state CC;
``certs/crl/*.pem`` the CRLs; routing.yaml's participants give each one's country and optional
pins. A certificate speaks for participant P when, in this order:

1. it names P: its SHA-256 is one of P's pins, or P has no pins and its subject CN is P's id;
2. it chains, by ``cryptography.x509.verification``, to a CA of P's country, every certificate
   of the chain being valid at the time of receipt, and it carries digitalSignature;
3. no certificate of the chain is revoked by a CRL (whose signature is checked) in certs/crl/.

Any failure is CERTIFICATE_UNTRUSTED naming the reason. Certificates, keys and CRLs are parsed
once at load; a verified chain is remembered (by fingerprints) for the window in which all its
certificates are valid, since path building is the costly part and the same few certificates
arrive on every message.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import verification
from cryptography.x509.oid import NameOID

from broker.envelope import MEMBER_SEGMENTS
from broker.errors import CertificateUntrusted, ConfigError
from broker.routing.table import Participant
from broker.signing import algorithms, gost
from broker.signing.keyinfo import KnownCertificates
from broker.signing.xmldsig import PrivateKey

MAX_CHAIN_DEPTH = 6


@functools.lru_cache(maxsize=4096)
def fingerprint(certificate: x509.Certificate) -> str:
    """Lower-case hex SHA-256 of the DER certificate (the form pins use).

    Cached: the parsed certificates come from the DER cache of xmldsig, so the same few objects
    recur on every message, and hashing them each time cost ~20 µs per call."""
    return certificate.fingerprint(hashes.SHA256()).hex()


def common_name(certificate: x509.Certificate) -> str | None:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else None
    return value if isinstance(value, str) else None


def describe(certificate: x509.Certificate) -> str:
    return f"CN={common_name(certificate)} (sha256 {fingerprint(certificate)[:16]}…)"


def _require_digital_signature(
    policy: verification.Policy, cert: x509.Certificate, usage: x509.KeyUsage | None
) -> None:
    if usage is None or not usage.digital_signature:
        raise ValueError("certificate lacks the digitalSignature key usage")


# End-entity policy: digitalSignature required; EKU and SAN are not (signing certificates of
# national PKIs need not look like web server certificates). CAs follow the WebPKI CA profile.
_EE_POLICY = verification.ExtensionPolicy.permit_all().require_present(
    x509.KeyUsage, verification.Criticality.AGNOSTIC, _require_digital_signature
)
_CA_POLICY = verification.ExtensionPolicy.webpki_defaults_ca()


def verified_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    store: verification.Store,
    at: dt.datetime,
) -> list[x509.Certificate]:
    """The chain from ``leaf`` to a CA of ``store``, valid at ``at``, under the gateway's one
    policy (WebPKI CA profile; digitalSignature on the end entity). Raises VerificationError.

    Participants' certificates, the receipt signer and destinations' checks all go through
    here, so there is one certificate policy to read and change."""
    builder = (
        verification.PolicyBuilder()
        .store(store)
        .time(at)
        .max_chain_depth(MAX_CHAIN_DEPTH)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
    )
    return builder.build_client_verifier().verify(leaf, list(intermediates)).chain


class ChainError(Exception):
    """Why plain_chain found no acceptable chain."""


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> object | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def plain_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    at: dt.datetime,
) -> list[x509.Certificate]:
    """The chain from ``leaf`` to one of ``anchors``, checked by hand for what cryptography's
    verifier cannot take (GOST keys or signatures anywhere in it), under the same policy:
    every certificate valid at ``at``; the end entity with digitalSignature and not a CA;
    each issuer a CA (basicConstraints) allowed to sign certificates (keyCertSign, when
    keyUsage is given); each certificate's signature verified with its issuer's key,
    whatever the algorithms of either; at most MAX_CHAIN_DEPTH certificates."""
    if not gost.available() and any(
        algorithms.is_gost_certificate(c) for c in (leaf, *intermediates)
    ):
        raise ChainError(gost.MISSING)
    usage = _extension(leaf, x509.KeyUsage)
    if not isinstance(usage, x509.KeyUsage) or not usage.digital_signature:
        raise ChainError("the end-entity certificate lacks the digitalSignature key usage")
    constraints = _extension(leaf, x509.BasicConstraints)
    if isinstance(constraints, x509.BasicConstraints) and constraints.ca:
        raise ChainError("the end-entity certificate is a CA certificate")
    anchored = {fingerprint(a) for a in anchors}
    candidates = [*intermediates, *anchors]
    chain = [leaf]
    while fingerprint(chain[-1]) not in anchored:
        current = chain[-1]
        if len(chain) >= MAX_CHAIN_DEPTH:
            raise ChainError(f"no trusted CA within {MAX_CHAIN_DEPTH} certificates")
        issuers = [
            c
            for c in candidates
            if c.subject == current.issuer and c not in chain and algorithms.signed_by(current, c)
        ]
        if not issuers:
            raise ChainError(
                f"no configured CA or given intermediate named {current.issuer.rfc4514_string()} "
                f"signed {describe(current)}"
            )
        issuer = next((c for c in issuers if fingerprint(c) in anchored), issuers[0])
        if not issuer.not_valid_before_utc <= at <= issuer.not_valid_after_utc:
            raise ChainError(f"{describe(issuer)} is not valid at {at:%Y-%m-%dT%H:%M:%SZ}")
        constraints = _extension(issuer, x509.BasicConstraints)
        if not isinstance(constraints, x509.BasicConstraints) or not constraints.ca:
            raise ChainError(f"{describe(issuer)} is not a CA (basicConstraints)")
        usage = _extension(issuer, x509.KeyUsage)
        if isinstance(usage, x509.KeyUsage) and not usage.key_cert_sign:
            raise ChainError(f"{describe(issuer)} may not sign certificates (keyCertSign)")
        chain.append(issuer)
    return chain


def chain_to(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    cas: Sequence[x509.Certificate],
    at: dt.datetime,
    store: verification.Store | None = None,
) -> list[x509.Certificate]:
    """The chain from ``leaf`` to one of ``cas``, or ChainError. RSA/EC all the way goes
    through cryptography's verifier (``store``: its Store of the RSA/EC ``cas``, if built
    already); a GOST certificate anywhere — the leaf, an intermediate, or only among ``cas`` —
    through plain_chain, under the same policy."""
    if store is None:
        standard = [c for c in cas if not algorithms.is_gost_certificate(c)]
        store = verification.Store(standard) if standard else None
    if store is not None and not any(
        algorithms.is_gost_certificate(c) for c in (leaf, *intermediates)
    ):
        try:
            return verified_chain(leaf, intermediates, store, at)
        except verification.VerificationError as exc:
            if not any(algorithms.is_gost_certificate(c) for c in cas):
                raise ChainError(str(exc)) from exc
    return plain_chain(leaf, intermediates, cas, at)


def _read_pems(path: Path) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a PEM certificate file: {exc}") from exc


@dataclass(frozen=True)
class _Window:
    start: dt.datetime
    end: dt.datetime


@dataclass
class TrustStore:
    """The configured CAs per country and the CRLs; answers "does this cert speak for P?"."""

    cas: Mapping[str, tuple[x509.Certificate, ...]]
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    known: KnownCertificates = field(default_factory=KnownCertificates)
    """certs/known/: signing certificates a KeyInfo may name without carrying (SPEC §2)."""
    _stores: dict[str, verification.Store] = field(default_factory=dict, repr=False)
    _chains: dict[tuple[str, str, tuple[str, ...]], _Window] = field(
        default_factory=dict, repr=False
    )

    def __post_init__(self) -> None:
        # cryptography's verifier takes the RSA/EC CAs; GOST ones are for plain_chain.
        self._stores = {
            cc: verification.Store(standard)
            for cc, certs in self.cas.items()
            if (standard := [c for c in certs if not algorithms.is_gost_certificate(c)])
        }

    @classmethod
    def load(cls, certs: Path) -> TrustStore:
        """Read certs/trust/<CC>/*.pem, certs/crl/*.pem and certs/known/*.pem."""
        trust = certs / "trust"
        if not trust.is_dir():
            raise ConfigError(f"{trust} is missing (run `broker certs demo` for a development PKI)")
        cas: dict[str, tuple[x509.Certificate, ...]] = {}
        for folder in sorted(p for p in trust.iterdir() if p.is_dir()):
            if folder.name not in MEMBER_SEGMENTS:
                raise ConfigError(f"{folder}: not a member state code or EEC")
            cas[folder.name] = tuple(
                c for pem in sorted(folder.glob("*.pem")) for c in _read_pems(pem)
            )
        crls: list[x509.CertificateRevocationList] = []
        for path in sorted((certs / "crl").glob("*.pem")) if (certs / "crl").is_dir() else ():
            try:
                crls.append(x509.load_pem_x509_crl(path.read_bytes()))
            except ValueError as exc:
                raise ConfigError(f"{path}: not a PEM CRL: {exc}") from exc
        return cls(cas, tuple(crls), KnownCertificates.load(certs / "known"))

    def certificates(self) -> list[tuple[str, x509.Certificate]]:
        """Every trusted CA certificate with its country (for `broker certs check`)."""
        return [(cc, cert) for cc, certs in self.cas.items() for cert in certs]

    # -- chains -----------------------------------------------------------------------------
    def _verify_chain(
        self,
        leaf: x509.Certificate,
        intermediates: tuple[x509.Certificate, ...],
        country: str,
        at: dt.datetime,
    ) -> None:
        key = (country, fingerprint(leaf), tuple(fingerprint(c) for c in intermediates))
        window = self._chains.get(key)
        if window is not None and window.start <= at <= window.end:
            return
        cas = self.cas.get(country, ())
        if not cas:
            raise CertificateUntrusted(
                f"{describe(leaf)}: no CA is configured for {country} (certs/trust/{country}/)"
            )
        # Our own clear messages for the common cases before the verifier's generic ones.
        if not leaf.not_valid_before_utc <= at <= leaf.not_valid_after_utc:
            raise CertificateUntrusted(
                f"{describe(leaf)} is not valid at {at:%Y-%m-%dT%H:%M:%SZ} (valid "
                f"{leaf.not_valid_before_utc:%Y-%m-%d} to {leaf.not_valid_after_utc:%Y-%m-%d})"
            )
        chain = self._chain(leaf, intermediates, country, cas, at)
        self._check_revocation(chain)
        self._chains[key] = _Window(
            max(c.not_valid_before_utc for c in chain), min(c.not_valid_after_utc for c in chain)
        )

    def _chain(
        self,
        leaf: x509.Certificate,
        intermediates: tuple[x509.Certificate, ...],
        country: str,
        cas: tuple[x509.Certificate, ...],
        at: dt.datetime,
    ) -> list[x509.Certificate]:
        try:
            return chain_to(leaf, intermediates, cas, at, self._stores.get(country))
        except ChainError as exc:
            raise CertificateUntrusted(
                f"{describe(leaf)} does not chain to a CA of {country}: {exc}"
            ) from exc

    def _check_revocation(self, chain: list[x509.Certificate]) -> None:
        for cert, issuer in itertools.pairwise(chain):
            for crl in self.crls:
                if crl.issuer != issuer.subject:
                    continue
                if not algorithms.signed_by(crl, issuer):
                    continue  # a CRL that its issuer did not sign says nothing
                revoked = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
                if revoked is not None:
                    raise CertificateUntrusted(
                        f"{describe(cert)} was revoked on "
                        f"{revoked.revocation_date_utc:%Y-%m-%d} (CRL of "
                        f"{issuer.subject.rfc4514_string()})"
                    )

    # -- participants -------------------------------------------------------------------------
    @staticmethod
    def named(leaf: x509.Certificate, participants: Mapping[str, Participant]) -> list[Participant]:
        """The participants a certificate names, by pin or else by CN (no chain checked)."""
        fp = fingerprint(leaf)
        cn = common_name(leaf)
        return [p for p in participants.values() if ((fp in p.pins) if p.pins else (cn == p.id))]

    def identify(
        self,
        leaf: x509.Certificate,
        intermediates: tuple[x509.Certificate, ...],
        participants: Mapping[str, Participant],
        at: dt.datetime,
    ) -> Participant:
        """The participant this certificate speaks for, or CERTIFICATE_UNTRUSTED saying why."""
        named = self.named(leaf, participants)
        cn = common_name(leaf)
        if not named:
            pinned = [p.id for p in participants.values() if p.pins and cn == p.id]
            why = f" (participant {pinned[0]} pins other certificates)" if pinned else ""
            raise CertificateUntrusted(f"{describe(leaf)} names no participant{why}")
        if len(named) > 1:
            raise CertificateUntrusted(
                f"{describe(leaf)} is pinned by several participants: "
                + ", ".join(p.id for p in named)
            )
        participant = named[0]
        self._verify_chain(leaf, intermediates, participant.country, at)
        return participant


@dataclass(frozen=True)
class GatewayIdentity:
    """The gateway's signing key and certificate (certs/gateway/), parsed once."""

    key: PrivateKey
    certificate: x509.Certificate
    certificate_der: bytes
    ca: tuple[x509.Certificate, ...]

    @classmethod
    def load(cls, certs: Path) -> GatewayIdentity:
        folder = certs / "gateway"
        try:
            loaded = serialization.load_pem_private_key((folder / "key.pem").read_bytes(), None)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"{folder / 'key.pem'}: cannot load the gateway key: {exc}") from exc
        try:
            key = algorithms.standard_private(loaded)
        except ValueError as exc:
            raise ConfigError(f"{folder / 'key.pem'}: {exc}") from exc
        certificate = _read_pems(folder / "cert.pem")[0]
        spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if certificate.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
            raise ConfigError(f"{folder}: cert.pem does not belong to key.pem")
        return cls(
            key,
            certificate,
            certificate.public_bytes(serialization.Encoding.DER),
            tuple(_read_pems(folder / "ca.pem")),
        )
