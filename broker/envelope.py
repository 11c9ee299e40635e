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
# OASIS WSS 1.0, as every real stack writes it (SPEC v1.1 §1; v1 misspelt it "wssecext").
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DS = "http://www.w3.org/2000/09/xmldsig#"
SIGNAL = "urn:EEC:signal:v1.0"

WSU_ID = f"{{{WSU}}}Id"
PLAIN_ID = "Id"  # the unqualified spelling node-soap writes by default (SPEC §2)
MEMBER_SEGMENTS = ("EEC", "AM", "BY", "KZ", "KG", "RU")

UUID_RE = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
URN_UUID = re.compile(rf"urn:uuid:{UUID_RE}")
PROCEDURE_IDS = re.compile(rf"urn:uuid:{UUID_RE}(/urn:uuid:{UUID_RE})*")
PROCESS_RE = r"P\.[A-Z]{2}\.[0-9]{2}"
# The suffix is seen in real traffic: P.CC.05.ACT.022AT. routing/forms.py holds the same grammar
# as an automaton; tests/routing/test_forms.py holds the two equal.
PARTICIPANT_RE = r"P(\.[A-Z]{2}\.[0-9]{2})?\.ACT\.[0-9]{3}[A-Z0-9]{0,4}"
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
TRACK_ID = re.compile(rf"urn:uuid:{UUID_RE}|[A-Za-z0-9:._-]{{1,128}}")
XS_DATETIME = re.compile(
    r"-?[0-9]{4,}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:"
    r"[0-5][0-9](\.[0-9]+)?(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))?"
)

# Transport signals of Decision No. 5 (SPEC §1): body element in urn:EEC:signal:v1.0 → the code
# the Action's last part must carry.
SIGNALS = {
    "DeliveryReceipt": "P.MSG.RCV",
    "ProcessingReceipt": "P.MSG.PRS",
    "ValidationError": "P.MSG.ERR",
}


def element_id(element: etree._Element) -> str | None:
    """The Id a reference may name an element by: its ``wsu:Id``, else an unqualified ``Id``.

    (An element carrying both is refused by the signature stage's Id index.)"""
    value: str | None = element.get(WSU_ID) or element.get(PLAIN_ID)
    return value


@dataclass(frozen=True)
class Header:
    """One header block: its display name, text value, Id (``wsu:Id`` or ``Id``) and element."""

    name: str
    value: str
    ref_id: str | None
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
    signal: str | None = None
    """The signal code (``P.MSG.PRS``…) when the body is a transport signal (SPEC §1)."""

    @property
    def code(self) -> str | None:
        """What the catalog registers and routing's ``document`` matches: EDocCode or signal."""
        return self.signal or self.edoc_code


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
    integration: Header | None
    """A sender's upstream ``int:Integration`` (value: its TrackID); never signed, replaced
    when forwarded (SPEC §1, §3)."""
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

    @property
    def upstream_track_id(self) -> str | None:
        return self.integration.value if self.integration is not None else None


# Header element → (display name, required)
_HEADERS: dict[str, tuple[str, bool]] = {
    f"{{{WSA}}}MessageID": ("wsa:MessageID", True),
    f"{{{WSA}}}To": ("wsa:To", True),
    f"{{{WSA}}}ReplyTo": ("wsa:ReplyTo", True),
    f"{{{WSA}}}Action": ("wsa:Action", True),
    f"{{{WSA}}}RelatesTo": ("wsa:RelatesTo", False),
    f"{{{INT}}}ProcedureID": ("int:ProcedureID", False),
    f"{{{INT}}}ConversationID": ("int:ConversationID", False),
    f"{{{INT}}}Integration": ("int:Integration", False),
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
    if qname.namespace == SIGNAL:
        code = SIGNALS.get(qname.localname)
        if code is None:
            raise EnvelopeInvalid(
                f"{qname.localname!r} is not a signal of {SIGNAL} ({', '.join(SIGNALS)})"
            )
        return Document(element, SIGNAL, qname.localname, None, None, None, None, code)
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


def parse_envelope(root: etree._Element, *, forwarded: bool = False) -> Envelope:
    """Check the SPEC §1 rules on a parsed tree and return the frozen Envelope.

    ``forwarded``: the envelope is one the gateway forwarded (read at a destination), whose
    ``int:Integration`` is the gateway's own stamp, signed by the gateway."""
    blocks, body = _find_structure(root)

    body_element = _children(body)[0]
    if etree.QName(body_element).namespace == SIGNAL and f"{{{WSA}}}RelatesTo" not in blocks:
        raise NotAnEnvelope(f"signal {etree.QName(body_element).localname} without wsa:RelatesTo")

    for tag, block in blocks.items():
        if tag not in _HEADERS:
            raise EnvelopeInvalid(f"unknown header block {tag} (line {block.sourceline})")
    if not forwarded:
        _refuse_signed_integration(blocks)

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
        elif tag == f"{{{INT}}}Integration":
            value = _upstream_track_id(block)
        else:
            value = _simple_value(name, block)
        return Header(name, value, element_id(block), block)

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
    integration = header(f"{{{INT}}}Integration")

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

    document = _document(body_element)
    _check_signal(document, action_parts)
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
        integration=integration,
        security=blocks.get(f"{{{WSSE}}}Security"),
        body=body,
        body_id=element_id(body),
        document=document,
        to_address=to_address,
        reply_address=reply_address,
        action_parts=action_parts,
    )


def _upstream_track_id(block: etree._Element) -> str:
    """Check an upstream ``int:Integration`` (SPEC §1) and return its TrackID."""
    where = f"int:Integration (line {block.sourceline})"
    parts: dict[str, str] = {}
    for child in _children(block):
        name = _local(child) if child.tag.startswith(f"{{{INT}}}") else str(child.tag)
        if name not in ("TrackID", "AcceptTime") or name in parts:
            raise EnvelopeInvalid(
                f"{where} may hold int:TrackID and int:AcceptTime once each, not {name}"
            )
        parts[name] = _simple_value(f"{where}/int:{name}", child)
    if _has_text(block) or "TrackID" not in parts or "AcceptTime" not in parts:
        raise EnvelopeInvalid(f"{where} must hold int:TrackID and int:AcceptTime, and no text")
    if not TRACK_ID.fullmatch(parts["TrackID"]):
        raise EnvelopeInvalid(
            f"{where}: TrackID {parts['TrackID']!r} is neither urn:uuid:… nor 1 to 128 of "
            "[A-Za-z0-9:._-]"
        )
    if not XS_DATETIME.fullmatch(parts["AcceptTime"]):
        raise EnvelopeInvalid(f"{where}: AcceptTime {parts['AcceptTime']!r} is not an xs:dateTime")
    return parts["TrackID"]


def _refuse_signed_integration(blocks: dict[str, etree._Element]) -> None:
    """A sender's ``int:Integration`` must not be covered by its signature: the gateway replaces
    it with its own stamp, which would break a signature over it (SPEC §1)."""
    block = blocks.get(f"{{{INT}}}Integration")
    security = blocks.get(f"{{{WSSE}}}Security")
    if block is None or security is None:
        return
    ids = {v for v in (block.get(WSU_ID), block.get(PLAIN_ID)) if v}
    uris = {f"#{i}" for i in ids}
    for reference in security.iterfind(f"{{{DS}}}Signature/{{{DS}}}SignedInfo/{{{DS}}}Reference"):
        if reference.get("URI") in uris:
            raise EnvelopeInvalid(
                f"int:Integration (line {block.sourceline}) is covered by the sender's "
                "signature; the gateway replaces it with its own stamp, so it must stay unsigned"
            )


def _check_signal(document: Document, action: Action) -> None:
    """A signal's Action names its code (SPEC §1). (A signal Action over a business document
    was accepted by v1 and still is: the rule binds the signal bodies.)"""
    if document.signal is None:
        return
    if action.message != document.signal:
        raise EnvelopeInvalid(
            f"wsa:Action message {action.message} differs from the body's signal "
            f"{document.root} ({document.signal})"
        )
