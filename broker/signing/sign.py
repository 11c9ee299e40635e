"""Signing: a participant's sender signature (``broker sign``) and the gateway's countersignature.

Sender signature (SPEC §2): one ds:Signature with an Id in wsse:Security, referencing soap:Body
and every SPEC §1 header by its wsu:Id (added where missing).

Countersignature (SPEC §3): the forwarded envelope is the sender's with exactly these changes:
the gateway's ``int:Integration`` (TrackID, AcceptTime, a wsu:Id) in place of an upstream one;
an ``Id`` on a sender signature without one and a ``wsu:Id`` on an unsigned header without one;
a BinarySecurityToken carrying a certs/known certificate the sender only named; and the
gateway's ds:Signature appended to wsse:Security, referencing soap:Body, every header block,
the Timestamp and tokens, and the sender's ds:Signature. Nothing the sender signed is touched,
so the sender's signature still verifies at the destination.
"""

from __future__ import annotations

import base64
import uuid

from cryptography.hazmat.primitives import serialization
from lxml import etree

from broker.envelope import INT, SOAP, WSSE, WSU, WSU_ID, Envelope, element_id
from broker.signing import algorithms, keyinfo, xmldsig
from broker.signing.trust import GatewayIdentity
from broker.signing.verify import TIMESTAMP, Verified

_ID_PREFIX = {
    "soap:Body": "id-body",
    "wsa:MessageID": "id-message-id",
    "wsa:To": "id-to",
    "wsa:ReplyTo": "id-reply-to",
    "wsa:Action": "id-action",
    "wsa:RelatesTo": "id-relates-to",
    "int:ProcedureID": "id-procedure-id",
    "int:ConversationID": "id-conversation-id",
}


def sign_envelope(envelope: Envelope, key: xmldsig.PrivateKey, certificate_der: bytes) -> bytes:
    """Add a SPEC §2 sender signature to an unsigned envelope; return the signed bytes."""
    root = envelope.root
    if envelope.security is not None:
        raise ValueError("the envelope already has a wsse:Security header")
    parts = [("soap:Body", envelope.body)] + [(h.name, h.element) for h in envelope.headers]
    taken = set(xmldsig.id_index(root))
    references: list[tuple[str, etree._Element]] = []
    for name, element in parts:
        wsu_id = element_id(element)
        if wsu_id is None:
            wsu_id = _ID_PREFIX[name]
            while wsu_id in taken:
                wsu_id = f"{_ID_PREFIX[name]}-{uuid.uuid4().hex[:8]}"
            element.set(WSU_ID, wsu_id)
            taken.add(wsu_id)
        references.append((f"#{wsu_id}", element))
    header = root.find(f"{{{SOAP}}}Header")
    assert header is not None  # a parsed Envelope always has one
    security = etree.SubElement(header, f"{{{WSSE}}}Security", nsmap={"wsse": WSSE})
    security.set(f"{{{SOAP}}}mustUnderstand", "true")
    xmldsig.sign(security, references, key, certificate_der, signature_id=f"sig-{uuid.uuid4()}")
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")  # type: ignore[no-any-return]


def countersign(
    verified: Verified, gateway: GatewayIdentity, track_id: str, accept_time: str
) -> bytes:
    """The forwarded envelope of SPEC §3 (mutates the verified tree; call once per message)."""
    envelope = verified.envelope
    security = envelope.security
    assert security is not None  # a verified envelope has its Security header
    suffix = track_id.rsplit(":", 1)[-1]
    integration = etree.Element(f"{{{INT}}}Integration", nsmap={"int": INT, "wsu": WSU})
    integration.set(WSU_ID, f"id-integration-{suffix}")
    etree.SubElement(integration, f"{{{INT}}}TrackID").text = track_id
    etree.SubElement(integration, f"{{{INT}}}AcceptTime").text = accept_time
    if envelope.integration is not None:
        # The upstream platform's stamp is replaced in its place (the sender never signs it).
        upstream = envelope.integration.element
        integration.tail = upstream.tail
        upstream.addprevious(integration)
        header = upstream.getparent()
        assert header is not None
        header.remove(upstream)
    else:
        # Before wsse:Security, so the security header (with both signatures) stays last.
        security.addprevious(integration)
    sender_signature = verified.signature.element
    if not sender_signature.get("Id"):  # zeep and node-soap write none; ours must name it
        sender_signature.set("Id", f"sig-{uuid.uuid4()}")
    if verified.signature.signer.from_known:
        # The sender named a certs/known certificate without carrying it: carry it, so that
        # destinations can verify without our certs/known (SPEC §3).
        token = etree.Element(keyinfo.BST, nsmap={"wsu": WSU})
        token.set(WSU_ID, f"gw-token-{uuid.uuid4()}")
        token.set("ValueType", keyinfo.X509V3)
        token.set("EncodingType", keyinfo.BASE64)
        token.text = base64.b64encode(
            verified.signature.certificate.public_bytes(serialization.Encoding.DER)
        ).decode("ascii")
        sender_signature.addprevious(token)
    references = [(f"#{element_id(envelope.body)}", envelope.body)]
    header = security.getparent()
    assert header is not None
    for block in header:
        if not isinstance(block.tag, str) or block is security:
            continue
        if element_id(block) is None:  # a body-only sender's unsigned header
            block.set(WSU_ID, f"gw-{uuid.uuid4()}")
        references.append((f"#{element_id(block)}", block))
    for part in security:
        if part.tag in (TIMESTAMP, keyinfo.BST):
            references.append((f"#{element_id(part)}", part))
    references.append((f"#{sender_signature.get('Id')}", sender_signature))
    xmldsig.sign(
        security,
        references,
        gateway.key,
        gateway.certificate_der,
        signature_id=f"gw-sig-{suffix}",
        # The body and headers were just verified with the same transform and digest.
        known_sha256={id(r.element): r.sha256 for r in verified.signature.references if r.sha256},
    )
    return etree.tostring(  # type: ignore[no-any-return]
        envelope.root.getroottree(), xml_declaration=True, encoding="UTF-8"
    )


def load_private_key(data: bytes) -> xmldsig.PrivateKey:
    return algorithms.load_private_pem(data)
