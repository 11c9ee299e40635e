"""`broker send`: sign a message as a participant (if unsigned) and submit it over mutual TLS."""

from __future__ import annotations

import io
import ssl
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from broker import xmlsafe
from broker.envelope import parse_envelope
from broker.errors import ConfigError
from broker.signing.sign import load_private_key, sign_envelope


@dataclass(frozen=True)
class SendResult:
    status: int
    body: bytes
    signed: bytes


def prepare(data: bytes, key_pem: bytes, cert_pem: bytes) -> bytes:
    """The envelope as it will be sent: signed with the participant's key if it is not yet."""
    envelope = parse_envelope(xmlsafe.parse(data))
    if envelope.security is not None:
        return data
    key = load_private_key(key_pem)
    cert = x509.load_pem_x509_certificate(cert_pem)
    return sign_envelope(envelope, key, cert.public_bytes(serialization.Encoding.DER))


def client_context(key: Path, cert: Path, gateway_ca: Path) -> ssl.SSLContext:
    """A participant's TLS client context; files that do not load are a ConfigError naming
    them and the likely fix."""
    try:
        context = ssl.create_default_context(cafile=str(gateway_ca))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{gateway_ca}: not the gateway's CA certificate (PEM): {exc}") from exc
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        why = (
            "the key does not belong to the certificate"
            if "KEY_VALUES_MISMATCH" in str(exc)
            else "not a PEM certificate and its private key"
        )
        raise ConfigError(f"{cert} and {key}: {why} ({exc.reason or exc})") from exc
    return context


def _url(gateway: str, path: str) -> str:
    base = gateway.rstrip("/").removesuffix("/v1/messages")
    return f"{base}{path}"


async def send(
    data: bytes,
    *,
    gateway: str,
    key: Path,
    cert: Path,
    gateway_ca: Path,
    timeout: float = 60.0,
    signing: tuple[Path, Path] | None = None,
) -> SendResult:
    """Sign ``data`` if unsigned and POST it; the signed bytes are returned with the answer, so
    that a retry can resubmit exactly them (SPEC §7: an identical resubmission is safe).
    ``key``/``cert`` are the TLS identity; ``signing`` (key, cert), when given, signs instead
    (a GOST signing identity beside an ECDSA TLS one)."""
    sign_key, sign_cert = signing or (key, cert)
    signed = prepare(data, sign_key.read_bytes(), sign_cert.read_bytes())
    url = _url(gateway, "/v1/messages")
    context = client_context(key, cert, gateway_ca) if url.startswith("https:") else None
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
        session.post(
            url,
            data=io.BytesIO(signed),
            ssl=context or False,
            headers={"Content-Type": "application/soap+xml"},
        ) as response,
    ):
        return SendResult(response.status, await response.read(), signed)


async def fetch(
    path: str, *, gateway: str, key: Path, cert: Path, gateway_ca: Path, timeout: float = 60.0
) -> tuple[int, bytes]:
    """GET ``path`` of the intake API as the participant (mTLS): a receipt or a status."""
    url = _url(gateway, path)
    context = client_context(key, cert, gateway_ca) if url.startswith("https:") else None
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
        session.get(url, ssl=context or False) as response,
    ):
        return response.status, await response.read()


def numbered(path: Path) -> Path:
    """``path`` if it does not exist yet, else the first free ``name-2.ext``, ``name-3.ext``…:
    a receipt is never overwritten."""
    if not path.exists():
        return path
    number = 2
    while True:
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
        if not candidate.exists():
            return candidate
        number += 1
