"""Compose an unsigned SPEC §1 envelope around an EEC document (for senders, the demo, tests).

Every header gets a ``wsu:Id`` so that ``broker sign`` (or any WS-Security signer) can reference
it. The gateway itself never composes what it forwards: it forwards the sender's bytes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from lxml import etree

from broker import clock
from broker.envelope import INT, SIGNAL, SIGNALS, SOAP, WSA, WSU, WSU_ID, Envelope
from broker.xmlsafe import parse


@dataclass(frozen=True)
class Addressing:
    """The header values of one message."""

    to: str
    reply_to: str
    action: str
    message_id: str | None = None
    relates_to: str | None = None
    procedure_id: str | None = None
    conversation_id: str | None = None


def new_message_id() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def compose_envelope(document: bytes, addressing: Addressing) -> bytes:
    """Wrap ``document`` (one EEC document, UTF-8 XML) in a SOAP 1.2 envelope, unsigned."""
    body_document = parse(document)
    nsmap = {"soap": SOAP, "wsa": WSA, "int": INT, "wsu": WSU}
    envelope = etree.Element(f"{{{SOAP}}}Envelope", nsmap=nsmap)
    header = etree.SubElement(envelope, f"{{{SOAP}}}Header")

    def add(tag: str, value: str, wsu_id: str) -> etree._Element:
        element = etree.SubElement(header, tag)
        element.set(WSU_ID, wsu_id)
        element.text = value
        return element

    add(f"{{{WSA}}}MessageID", addressing.message_id or new_message_id(), "id-message-id")
    add(f"{{{WSA}}}To", addressing.to, "id-to")
    reply_to = etree.SubElement(header, f"{{{WSA}}}ReplyTo")
    reply_to.set(WSU_ID, "id-reply-to")
    etree.SubElement(reply_to, f"{{{WSA}}}Address").text = addressing.reply_to
    add(f"{{{WSA}}}Action", addressing.action, "id-action")
    if addressing.relates_to:
        add(f"{{{WSA}}}RelatesTo", addressing.relates_to, "id-relates-to")
    if addressing.procedure_id:
        add(f"{{{INT}}}ProcedureID", addressing.procedure_id, "id-procedure-id")
    if addressing.conversation_id:
        add(f"{{{INT}}}ConversationID", addressing.conversation_id, "id-conversation-id")
    body = etree.SubElement(envelope, f"{{{SOAP}}}Body")
    body.set(WSU_ID, "id-body")
    body.append(body_document)
    etree.indent(envelope, space="  ")
    data: bytes = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
    return data


def signal_answering(envelope: Envelope, code: str, reply_to: str) -> bytes:
    """An unsigned transport signal (SPEC §1, e.g. ``P.MSG.PRS``) answering ``envelope``.

    It goes to the answered message's wsa:ReplyTo, relates to its MessageID, keeps its
    ProcedureID and ConversationID, and carries the signal code in place of the message code
    of the Action, as the EEC's own platform writes them. ``reply_to`` is the answerer's
    address."""
    root_name = next(name for name, signal in SIGNALS.items() if signal == code)
    document = etree.Element(f"{{{SIGNAL}}}{root_name}", nsmap={"sgn": SIGNAL})
    etree.SubElement(document, f"{{{SIGNAL}}}SignalId").text = str(uuid.uuid4())
    etree.SubElement(document, f"{{{SIGNAL}}}DateTime").text = clock.format_time(clock.now())
    action = envelope.action_parts
    return compose_envelope(
        etree.tostring(document),
        Addressing(
            to=envelope.reply_to.value,
            reply_to=reply_to,
            action=action.text.rsplit("/", 1)[0] + f"/{code}",
            relates_to=envelope.message_id.value,
            procedure_id=envelope.procedure_id.value if envelope.procedure_id else None,
            conversation_id=envelope.conversation_id.value if envelope.conversation_id else None,
        ),
    )
