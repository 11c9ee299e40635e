"""TLS contexts (SPEC §7, §11): the intake server and the delivery client.

Intake: the gateway presents ``certs/tls/{cert,key}.pem`` and requires a client certificate
issued by a CA in ``certs/trust/*/`` — which participant it is, is decided afterwards by
:meth:`broker.signing.trust.TrustStore.identify`. Delivery: the gateway presents the same
identity as its client certificate and accepts a destination's server certificate only from a CA
of that destination's country.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from broker.errors import ConfigError


def _trust_files(certs: Path, country: str | None = None) -> list[Path]:
    folders = (
        [certs / "trust" / country]
        if country
        else sorted(p for p in (certs / "trust").iterdir() if p.is_dir())
    )
    return [pem for folder in folders if folder.is_dir() for pem in sorted(folder.glob("*.pem"))]


# TLS 1.2 suites: forward-secret AEAD only (no CBC); TLS 1.3 suites are AEAD by definition.
AEAD_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"


def _harden(context: ssl.SSLContext) -> None:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(AEAD_CIPHERS)


def _load_identity(context: ssl.SSLContext, certs: Path) -> None:
    try:
        context.load_cert_chain(certs / "tls" / "cert.pem", certs / "tls" / "key.pem")
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            f"{certs / 'tls'}/cert.pem, key.pem: cannot load the gateway TLS identity: {reason} "
            "(do the key and the certificate belong together? `broker certs check` lists them)"
        ) from exc


def server_context(certs: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(context)
    _load_identity(context, certs)
    context.verify_mode = ssl.CERT_REQUIRED
    files = _trust_files(certs)
    if not files:
        raise ConfigError(f"{certs / 'trust'}: no CA certificates to accept clients with")
    for pem in files:
        context.load_verify_locations(cafile=str(pem))
    return context


class ClientContexts:
    """One client context per destination country, built on first use."""

    def __init__(self, certs: Path) -> None:
        self.certs = certs
        self._contexts: dict[str, ssl.SSLContext] = {}

    def for_country(self, country: str) -> ssl.SSLContext:
        context = self._contexts.get(country)
        if context is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            _harden(context)
            files = _trust_files(self.certs, country)
            if not files:
                raise ConfigError(f"no CA in {self.certs / 'trust' / country} for {country}")
            for pem in files:
                context.load_verify_locations(cafile=str(pem))
            _load_identity(context, self.certs)
            self._contexts[country] = context
        return context
