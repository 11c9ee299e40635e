"""The sender-signature stage (SPEC §2): a validated envelope → a Verified message.

After this stage only signed data exists: :class:`Verified` carries the route facts read from
the elements the signature was proven to cover (the very element objects the envelope parser
found at their fixed places — a reference to a look-alike elsewhere in the tree is refused), and
the participant identified by the signing certificate. For a participant marked
``signature: body`` the headers may be uncovered; they are then vouched for by its TLS identity
alone, and :attr:`Verified.coverage` says so (it goes into the Accepted receipt and the audit).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from lxml import etree

from broker.envelope import DS, WSU, Envelope, element_id
from broker.errors import SenderMismatch, SignatureInvalid, SignatureMissing
from broker.routing.table import Coverage, Participant, RouteFacts
from broker.signing import keyinfo, xmldsig
from broker.signing.trust import TrustStore
from broker.validation import Validated

TIMESTAMP = f"{{{WSU}}}Timestamp"
CLOCK_SKEW = dt.timedelta(minutes=5)
"""Tolerated difference between the sender's clock and ours for wsu:Timestamp (SPEC §2)."""


@dataclass(frozen=True)
class Verified:
    """A message whose sender signature and sender identity hold."""

    validated: Validated
    signature: xmldsig.VerifiedSignature
    sender: Participant
    facts: RouteFacts
    """What routing matches on, read only from signed elements (or, for ``coverage`` body,
    from headers the sender's TLS identity vouches for)."""
    coverage: Coverage = "full"
    """``body`` when the signature leaves a SPEC §2 header uncovered (``signature: body``)."""
    timestamp: etree._Element | None = None

    @property
    def envelope(self) -> Envelope:
        return self.validated.envelope


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
    allowed = (f"{{{DS}}}Signature", keyinfo.BST, TIMESTAMP)
    others = [etree.QName(c).localname for c in children if c.tag not in allowed]
    if others:
        raise SignatureInvalid(
            f"unexpected {others} in wsse:Security (it may hold ds:Signature, "
            "wsse:BinarySecurityToken and wsu:Timestamp)"
        )
    return signatures[0]


def _timestamp(security: etree._Element) -> etree._Element | None:
    found = [c for c in security if c.tag == TIMESTAMP]
    if len(found) > 1:
        raise SignatureInvalid(f"wsse:Security holds {len(found)} wsu:Timestamp; at most one")
    return found[0] if found else None


def _utc(element: etree._Element, what: str) -> dt.datetime:
    text = (element.text or "").strip()
    if not text.endswith("Z") or len(element) or "T" not in text:
        raise SignatureInvalid(f"{what} {text!r} is not an xs:dateTime in UTC (…Z)")
    try:
        return dt.datetime.fromisoformat(text[:-1]).replace(tzinfo=dt.UTC)
    except ValueError as exc:
        raise SignatureInvalid(f"{what} {text!r} is not an xs:dateTime in UTC (…Z)") from exc


def check_timestamp(timestamp: etree._Element, at: dt.datetime) -> None:
    """Created and optional Expires, judged with 5 minutes of skew (SPEC §2)."""
    parts = [c for c in timestamp if isinstance(c.tag, str)]
    names = [etree.QName(c).localname if c.tag.startswith(f"{{{WSU}}}") else c.tag for c in parts]
    if names not in (["Created"], ["Created", "Expires"]):
        raise SignatureInvalid(
            f"wsu:Timestamp must hold wsu:Created and optionally wsu:Expires, found {names}"
        )
    created = _utc(parts[0], "wsu:Created")
    if created > at + CLOCK_SKEW:
        raise SignatureInvalid(
            f"wsu:Created {parts[0].text} is in the future (received at "
            f"{at:%Y-%m-%dT%H:%M:%SZ}, 5 minutes of skew allowed)"
        )
    if len(parts) == 2:
        expires = _utc(parts[1], "wsu:Expires")
        if expires <= created:
            raise SignatureInvalid(f"wsu:Expires {parts[1].text} is not after wsu:Created")
        if expires < at - CLOCK_SKEW:
            raise SignatureInvalid(
                f"wsu:Timestamp expired at {parts[1].text} (received at "
                f"{at:%Y-%m-%dT%H:%M:%SZ}, 5 minutes of skew allowed)"
            )


def check_coverage(
    signature: xmldsig.VerifiedSignature,
    envelope: Envelope,
    timestamp: etree._Element | None,
    body_only_allowed: Callable[[], bool],
) -> Coverage:
    """Each reference names a part at its place, once, by its Id; Body and Timestamp always
    covered; the SPEC §1 headers too unless ``body_only_allowed()`` (the signer is a
    ``signature: body`` participant)."""
    parts: dict[int, tuple[str, etree._Element]] = {id(envelope.body): ("soap:Body", envelope.body)}
    headers = {id(h.element): (h.name, h.element) for h in envelope.headers}
    parts.update(headers)
    if timestamp is not None:
        parts[id(timestamp)] = ("wsu:Timestamp", timestamp)
    token = signature.signer.token
    if token is not None:  # WSS4J may sign the token it references; it need not
        parts[id(token)] = ("wsse:BinarySecurityToken", token)
    covered: set[int] = set()
    for reference in signature.references:
        part = parts.get(id(reference.element))
        if part is None:
            raise SignatureInvalid(
                f"Reference {reference.uri!r} covers {etree.QName(reference.element).localname} "
                f"(line {reference.element.sourceline}), which is not a part of the envelope the "
                "profile signs (soap:Body, the SPEC §1 headers and wsu:Timestamp at their places)"
            )
        name, element = part
        if reference.uri != f"#{element_id(element)}":
            raise SignatureInvalid(f"{name} must be referenced by its wsu:Id or Id")
        if id(element) in covered:
            raise SignatureInvalid(f"{name} is referenced twice")
        covered.add(id(element))
    always = [envelope.body] + ([timestamp] if timestamp is not None else [])
    missing = [parts[id(e)][0] for e in always if id(e) not in covered]
    if missing:
        raise SignatureInvalid(f"not covered by the signature: {', '.join(missing)}")
    uncovered = [name for key, (name, _) in headers.items() if key not in covered]
    if not uncovered:
        return "full"
    if body_only_allowed():
        return "body"
    raise SignatureInvalid(
        f"not covered by the signature: {', '.join(uncovered)} (only a participant marked "
        "`signature: body` in routing.yaml may leave its headers unsigned)"
    )


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
    assert envelope.security is not None  # sender_signature found one
    timestamp = _timestamp(envelope.security)
    ids = xmldsig.id_index(envelope.root)

    def resolve_key(key_info: etree._Element) -> keyinfo.SignerKey:
        return keyinfo.resolve(
            key_info,
            security=envelope.security,
            ids=ids,
            known=trust.known,
            at=at,
            parse=xmldsig.certificate_from_der,
        )

    signature = xmldsig.verify(signature_element, ids, resolve_key=resolve_key)
    coverage = check_coverage(
        signature,
        envelope,
        timestamp,
        lambda: any(
            p.signature == "body" for p in trust.named(signature.certificate, participants)
        ),
    )
    if timestamp is not None:
        check_timestamp(timestamp, at)
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
        document=envelope.document.code or "",
        sender=sender.id,
        to=envelope.to.value,
    )
    return Verified(validated, signature, sender, facts, coverage, timestamp)
