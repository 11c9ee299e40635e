"""SOAP 1.2 / WS-Addressing / ``urn:EEC:Interaction:v1.0`` headers → a frozen Envelope (SPEC §1).

Structure problems (not SOAP 1.2, a required header missing or repeated, a Body without exactly
one element) are NOT_AN_ENVELOPE; malformed or inconsistent addresses, Actions and codes, unknown
header blocks and a sender's ``int:Integration`` are ENVELOPE_INVALID. Structure is checked in full
before content so that the SPEC §8 precedence holds whatever the order of the headers.

A missing ``wsse:Security`` is not decided here: SIGNATURE_MISSING ranks below schema errors, so
the signature stage raises it.

Values are read as exclusive C14N sees them (text nodes joined, comments skipped), and each
header keeps its element so the signature stage can prove that exactly this element was signed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from broker.errors import EnvelopeInvalid, NotAnEnvelope
from broker.xmlsafe import text_value

SOAP = "http://www.w3.org/2003/05/soap-envelope"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
WSA = "http://www.w3.org/2005/08/addressing"
INT = "urn:EEC:Interaction:v1.0"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DS = "http://www.w3.org/2000/09/xmldsig#"

WSU_ID = f"{{{WSU}}}Id"
MEMBER_SEGMENTS = ("EEC", "AM", "BY", "KZ", "KG", "RU")

UUID_RE = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
URN_UUID = re.compile(rf"urn:uuid:{UUID_RE}")
PROCEDURE_IDS = re.compile(rf"urn:uuid:{UUID_RE}(/urn:uuid:{UUID_RE})*")
PROCESS_RE = r"P\.[A-Z]{2}\.[0-9]{2}"
PARTICIPANT_RE = r"P(\.[A-Z]{2}\.[0-9]{2})?\.ACT\.[0-9]{3}"
ADDRESS = re.compile(
    rf"EAEU://(?P<segment>{'|'.join(MEMBER_SEGMENTS)})/CP/(?P<process>{PROCESS_RE})"
    rf"/(?P<participant>{PARTICIPANT_RE})"
)
ACTION = re.compile(
    rf"int://CP/(?P<process>{PROCESS_RE})/(?P<version>[0-9]+(\.[0-9]+)*)"
    r"/(?P<procedure>(?P=process)\.PRC\.[0-9]{3})"
    r"/(?P<transaction>(?P=process)\.TRN\.[0-9]{3})"
    r"/(?P<message>(?P=process)\.MSG\.[0-9]{3}|P\.MSG\.(RCV|PRS|ERR))"
)
EDOC_CODE = re.compile(r"R(\.[A-Z]{2}\.[A-Z]{2}\.[0-9]{2})?\.[0-9]{3}")
INF_ENVELOPE_CODE = re.compile(r"P\.[A-Z]{2}\.[0-9]{2}\.MSG\.[0-9]{3}")


@dataclass(frozen=True)
class Header:
    """One header block: its display name, text value, ``wsu:Id`` and element."""

    name: str
    value: str
    wsu_id: str | None
    element: etree._Element


@dataclass(frozen=True)
class Address:
    """A logical EEC address ``EAEU://<segment>/CP/<process>/<participant>``."""

    text: str
    segment: str
    process: str
    participant: str


@dataclass(frozen=True)
class Action:
    """``int://CP/<process>/<version>/<procedure>/<transaction>/<message>``."""

    text: str
    process: str
    version: str
    procedure: str
    transaction: str
    message: str


@dataclass(frozen=True)
class Document:
    """The EEC electronic document in ``soap:Body`` and its header fields."""

    element: etree._Element
    namespace: str
    root: str
    edoc_code: str | None
    edoc_id: str | None
    edoc_datetime: str | None
    inf_envelope_code: str | None


@dataclass(frozen=True)
class Envelope:
    """A structurally sound, consistent SOAP envelope (SPEC §1). Not yet signature-checked."""

    root: etree._Element
    message_id: Header
    to: Header
    reply_to: Header
    action: Header
    relates_to: Header | None
    procedure_id: Header | None
    conversation_id: Header | None
    security: etree._Element | None
    body: etree._Element
    body_id: str | None
    document: Document
    to_address: Address
    reply_address: Address
    action_parts: Action

    @property
    def headers(self) -> tuple[Header, ...]:
        """Every present header that the sender must sign, in SPEC §1 order."""
        optional = (self.relates_to, self.procedure_id, self.conversation_id)
        required = (self.message_id, self.to, self.reply_to, self.action)
        return required + tuple(h for h in optional if h is not None)


# Header element → (display name, required)
_HEADERS: dict[str, tuple[str, bool]] = {
    f"{{{WSA}}}MessageID": ("wsa:MessageID", True),
    f"{{{WSA}}}To": ("wsa:To", True),
    f"{{{WSA}}}ReplyTo": ("wsa:ReplyTo", True),
    f"{{{WSA}}}Action": ("wsa:Action", True),
    f"{{{WSA}}}RelatesTo": ("wsa:RelatesTo", False),
    f"{{{INT}}}ProcedureID": ("int:ProcedureID", False),
    f"{{{INT}}}ConversationID": ("int:ConversationID", False),
    f"{{{WSSE}}}Security": ("wsse:Security", False),
}


def _children(element: etree._Element) -> list[etree._Element]:
    """Element children only (comments and PIs skipped)."""
    return [child for child in element if isinstance(child.tag, str)]


def _has_text(element: etree._Element) -> bool:
    return bool(text_value(element).strip()) or any((child.tail or "").strip() for child in element)


def _local(element: etree._Element) -> str:
    return str(etree.QName(element).localname)


def _simple_value(name: str, element: etree._Element) -> str:
    if _children(element):
        raise EnvelopeInvalid(f"{name} (line {element.sourceline}) must hold text only")
    return text_value(element)


def _address(name: str, value: str, line: int | None) -> Address:
    match = ADDRESS.fullmatch(value)
    if match is None:
        raise EnvelopeInvalid(
            f"{name} (line {line}) {value!r} is not a logical address "
            "EAEU://<segment>/CP/<process>/<participant-code>"
        )
    return Address(value, match["segment"], match["process"], match["participant"])


def _find_structure(root: etree._Element) -> tuple[dict[str, etree._Element], etree._Element]:
    """Check the SOAP 1.2 skeleton and return (header blocks by tag, body element)."""
    if root.tag == f"{{{SOAP11}}}Envelope":
        raise NotAnEnvelope("SOAP 1.1 envelope; SOAP 1.2 is required")
    if root.tag != f"{{{SOAP}}}Envelope":
        raise NotAnEnvelope(f"root element {root.tag!r} is not a SOAP 1.2 Envelope")
    parts = _children(root)
    tags = [part.tag for part in parts]
    if tags != [f"{{{SOAP}}}Header", f"{{{SOAP}}}Body"]:
        raise NotAnEnvelope("soap:Envelope must hold exactly soap:Header then soap:Body")
    header, body = parts
    if _has_text(root) or _has_text(header):
        raise NotAnEnvelope("text outside header blocks in soap:Envelope or soap:Header")
    blocks: dict[str, etree._Element] = {}
    for block in _children(header):
        tag = str(block.tag)
        if tag in blocks and tag in _HEADERS:
            raise NotAnEnvelope(
                f"header {_HEADERS[tag][0]} repeated (line {block.sourceline}); at most once"
            )
        blocks.setdefault(tag, block)
    for tag, (name, required) in _HEADERS.items():
        if required and tag not in blocks:
            raise NotAnEnvelope(f"required header {name} missing")
    documents = _children(body)
    if len(documents) != 1 or _has_text(body):
        raise NotAnEnvelope(f"soap:Body must hold exactly one element, found {len(documents)}")
    return blocks, body


def _document(element: etree._Element) -> Document:
    qname = etree.QName(element)
    fields: dict[str, str] = {}
    header = next((c for c in _children(element) if _local(c) == "EDocHeader"), None)
    for child in _children(header if header is not None else element):
        name = _local(child)
        if name in ("EDocCode", "EDocId", "EDocDateTime", "InfEnvelopeCode"):
            fields.setdefault(name, text_value(child))
    code = fields.get("EDocCode")
    if code is not None and not EDOC_CODE.fullmatch(code):
        raise EnvelopeInvalid(f"EDocCode {code!r} is malformed (expected e.g. R.TR.TS.01.001)")
    inf = fields.get("InfEnvelopeCode")
    if inf is not None and not INF_ENVELOPE_CODE.fullmatch(inf):
        raise EnvelopeInvalid(f"InfEnvelopeCode {inf!r} is malformed (expected P.XX.00.MSG.000)")
    return Document(
        element=element,
        namespace=qname.namespace or "",
        root=qname.localname,
        edoc_code=code,
        edoc_id=fields.get("EDocId"),
        edoc_datetime=fields.get("EDocDateTime"),
        inf_envelope_code=inf,
    )


def parse_envelope(root: etree._Element) -> Envelope:
    """Check the SPEC §1 rules on a parsed tree and return the frozen Envelope."""
    blocks, body = _find_structure(root)

    for tag, block in blocks.items():
        if tag == f"{{{INT}}}Integration":
            raise EnvelopeInvalid(
                f"int:Integration (line {block.sourceline}) is stamped by the gateway; "
                "a sender must not send it"
            )
        if tag not in _HEADERS:
            raise EnvelopeInvalid(f"unknown header block {tag} (line {block.sourceline})")

    def header(tag: str) -> Header | None:
        block = blocks.get(tag)
        if block is None:
            return None
        name = _HEADERS[tag][0]
        if tag == f"{{{WSA}}}ReplyTo":
            addresses = block.findall(f"{{{WSA}}}Address")
            if len(addresses) != 1 or len(_children(block)) != 1:
                raise NotAnEnvelope("wsa:ReplyTo must hold exactly one wsa:Address")
            value = _simple_value("wsa:ReplyTo/wsa:Address", addresses[0])
        else:
            value = _simple_value(name, block)
        return Header(name, value, block.get(WSU_ID), block)

    def required(tag: str) -> Header:
        found = header(tag)
        assert found is not None  # presence checked by _find_structure
        return found

    message_id = required(f"{{{WSA}}}MessageID")
    to = required(f"{{{WSA}}}To")
    reply_to = required(f"{{{WSA}}}ReplyTo")
    action = required(f"{{{WSA}}}Action")
    relates_to = header(f"{{{WSA}}}RelatesTo")
    procedure_id = header(f"{{{INT}}}ProcedureID")
    conversation_id = header(f"{{{INT}}}ConversationID")

    for uuid_header in (message_id, relates_to, conversation_id):
        if uuid_header is not None and not URN_UUID.fullmatch(uuid_header.value):
            raise EnvelopeInvalid(
                f"{uuid_header.name} {uuid_header.value!r} is not urn:uuid:<uuid>"
            )
    if procedure_id is not None and not PROCEDURE_IDS.fullmatch(procedure_id.value):
        raise EnvelopeInvalid(
            f"int:ProcedureID {procedure_id.value!r} is not urn:uuid:… (joined by '/')"
        )

    to_address = _address("wsa:To", to.value, to.element.sourceline)
    reply_address = _address("wsa:ReplyTo/wsa:Address", reply_to.value, reply_to.element.sourceline)
    match = ACTION.fullmatch(action.value)
    if match is None:
        raise EnvelopeInvalid(
            f"wsa:Action {action.value!r} is not "
            "int://CP/<process>/<version>/<procedure>/<transaction>/<message>"
        )
    action_parts = Action(
        action.value,
        match["process"],
        match["version"],
        match["procedure"],
        match["transaction"],
        match["message"],
    )
    if action_parts.process != to_address.process:
        raise EnvelopeInvalid(
            f"wsa:Action process {action_parts.process} differs from wsa:To process "
            f"{to_address.process}"
        )

    document = _document(_children(body)[0])
    if (
        document.inf_envelope_code is not None
        and document.inf_envelope_code != action_parts.message
    ):
        raise EnvelopeInvalid(
            f"wsa:Action message {action_parts.message} differs from the document's "
            f"InfEnvelopeCode {document.inf_envelope_code}"
        )

    return Envelope(
        root=root,
        message_id=message_id,
        to=to,
        reply_to=reply_to,
        action=action,
        relates_to=relates_to,
        procedure_id=procedure_id,
        conversation_id=conversation_id,
        security=blocks.get(f"{{{WSSE}}}Security"),
        body=body,
        body_id=body.get(WSU_ID),
        document=document,
        to_address=to_address,
        reply_address=reply_address,
        action_parts=action_parts,
    )
