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
    context = ssl.create_default_context(cafile=str(gateway_ca))
    context.load_cert_chain(cert, key)
    return context


async def send(
    data: bytes, *, gateway: str, key: Path, cert: Path, gateway_ca: Path, timeout: float = 60.0
) -> SendResult:
    signed = prepare(data, key.read_bytes(), cert.read_bytes())
    url = gateway.rstrip("/")
    if not url.endswith("/v1/messages"):
        url += "/v1/messages"
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
