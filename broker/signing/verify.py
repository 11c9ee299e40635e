"""The sender-signature stage (SPEC §2): a validated envelope → a Verified message.

After this stage only signed data exists: :class:`Verified` carries the route facts read from
the elements the signature was proven to cover (the very element objects the envelope parser
found at their fixed places — a reference to a look-alike elsewhere in the tree is refused), and
the participant identified by the signing certificate.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from lxml import etree

from broker.envelope import DS, WSU_ID, Envelope, Header
from broker.errors import SenderMismatch, SignatureInvalid, SignatureMissing
from broker.routing.table import Participant, RouteFacts
from broker.signing import xmldsig
from broker.signing.trust import TrustStore
from broker.validation import Validated


@dataclass(frozen=True)
class Verified:
    """A message whose sender signature and sender identity hold."""

    validated: Validated
    signature: xmldsig.VerifiedSignature
    sender: Participant
    facts: RouteFacts
    """What routing matches on, read only from signed elements."""

    @property
    def envelope(self) -> Envelope:
        return self.validated.envelope


def _required_parts(envelope: Envelope) -> dict[int, tuple[str, etree._Element, str | None]]:
    """The elements a sender must sign: id(element) → (name, element, its wsu:Id)."""
    parts: list[tuple[str, etree._Element, str | None]] = [
        ("soap:Body", envelope.body, envelope.body_id)
    ]
    parts.extend((h.name, h.element, h.wsu_id) for h in envelope.headers)
    return {id(element): (name, element, wsu_id) for name, element, wsu_id in parts}


def sender_signature(envelope: Envelope) -> etree._Element:
    """The one sender ds:Signature in wsse:Security (SIGNATURE_MISSING / _INVALID otherwise)."""
    if envelope.security is None:
        raise SignatureMissing("no wsse:Security header: the message is not signed")
    children = [c for c in envelope.security if isinstance(c.tag, str)]
    signatures = [c for c in children if c.tag == f"{{{DS}}}Signature"]
    if not signatures:
        raise SignatureMissing("wsse:Security holds no ds:Signature")
    if len(signatures) > 1:
        raise SignatureInvalid(
            f"wsse:Security holds {len(signatures)} ds:Signature elements; exactly one sender "
            "signature is allowed"
        )
    others = [etree.QName(c).localname for c in children if c is not signatures[0]]
    if others:
        raise SignatureInvalid(f"unexpected {others} in wsse:Security")
    if not signatures[0].get("Id"):
        raise SignatureInvalid("the sender's ds:Signature has no Id attribute")
    return signatures[0]


def check_coverage(signature: xmldsig.VerifiedSignature, envelope: Envelope) -> tuple[Header, ...]:
    """Every required part covered exactly once by its #wsu:Id, and nothing else."""
    required = _required_parts(envelope)
    covered: set[int] = set()
    for reference in signature.references:
        part = required.get(id(reference.element))
        if part is None:
            raise SignatureInvalid(
                f"Reference {reference.uri!r} covers {etree.QName(reference.element).localname} "
                f"(line {reference.element.sourceline}), which is not a part of the envelope the "
                "profile signs (soap:Body and the SPEC §1 headers at their places)"
            )
        name, element, wsu_id = part
        if reference.uri != f"#{wsu_id}" or element.get(WSU_ID) is None:
            raise SignatureInvalid(f"{name} must be referenced by its wsu:Id")
        if id(element) in covered:
            raise SignatureInvalid(f"{name} is referenced twice")
        covered.add(id(element))
    missing = [name for key, (name, _, _) in required.items() if key not in covered]
    if missing:
        raise SignatureInvalid(f"not covered by the signature: {', '.join(missing)}")
    return envelope.headers


def verify_sender(
    validated: Validated,
    trust: TrustStore,
    participants: Mapping[str, Participant],
    *,
    at: dt.datetime,
    tls_participant: str | None = None,
) -> Verified:
    """SPEC §2 in order: SIGNATURE_MISSING, SIGNATURE_INVALID, CERTIFICATE_UNTRUSTED,
    SENDER_MISMATCH. ``tls_participant`` is the participant the TLS client certificate
    identified (None only for offline checks and ``--insecure-http``)."""
    envelope = validated.envelope
    signature_element = sender_signature(envelope)
    ids = xmldsig.id_index(envelope.root)
    signature = xmldsig.verify(signature_element, ids)
    check_coverage(signature, envelope)
    sender = trust.identify(signature.certificate, signature.chain, participants, at)
    if tls_participant is not None and tls_participant != sender.id:
        raise SenderMismatch(
            f"signed by {sender.id} but the TLS client certificate is {tls_participant}'s"
        )
    if envelope.reply_address.segment != sender.country:
        raise SenderMismatch(
            f"wsa:ReplyTo segment {envelope.reply_address.segment} is not the signer "
            f"{sender.id}'s country {sender.country}"
        )
    facts = RouteFacts(
        action=envelope.action.value,
        document=envelope.document.edoc_code or "",
        sender=sender.id,
        to=envelope.to.value,
    )
    return Verified(validated, signature, sender, facts)
