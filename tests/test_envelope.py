"""SPEC §1 envelope rules: structure (NOT_AN_ENVELOPE) before content (ENVELOPE_INVALID)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker import xmlsafe
from broker.envelope import WSSE, Envelope, parse_envelope
from broker.errors import EnvelopeInvalid, GatewayError, NotAnEnvelope
from tests.conftest import sample

VALID = sample("valid-conformity-kz-to-ru.xml").decode()


def _parse(text: str) -> Envelope:
    return parse_envelope(xmlsafe.parse(text.encode()))


def test_valid_envelope_gives_every_header_and_document_field() -> None:
    """All headers, their wsu:Ids, and the EDocHeader fields are read."""
    env = parse_envelope(xmlsafe.parse(VALID.encode()))
    assert env.message_id.value == "urn:uuid:3f0c5b7e-9f65-4a0e-8d4c-1c2e3a4b5c01"
    assert env.to_address.segment == "RU"
    assert env.reply_address.segment == "KZ"
    assert env.reply_to.ref_id == "id-reply-to"
    assert env.action_parts.message == "P.TS.01.MSG.001"
    assert env.action_parts.version == "1.0.1"
    assert env.procedure_id is not None
    assert env.conversation_id is not None
    assert env.relates_to is None
    assert env.security is None
    assert env.body_id == "id-body"
    doc = env.document
    assert (doc.edoc_code, doc.inf_envelope_code) == ("R.TR.TS.01.001", "P.TS.01.MSG.001")
    assert doc.edoc_id == "5b1f8c0e-8a7e-4f63-9d3c-2b0b6f1a9e01"
    assert [h.name for h in env.headers] == [
        "wsa:MessageID",
        "wsa:To",
        "wsa:ReplyTo",
        "wsa:Action",
        "int:ProcedureID",
        "int:ConversationID",
    ]


def test_flat_header_document_fields_are_read() -> None:
    """Customs documents carry EDocCode/EDocId/EDocDateTime flat at the root."""
    env = parse_envelope(xmlsafe.parse(sample("valid-goods-declaration-kz-to-ru.xml")))
    assert env.document.edoc_code == "R.055"
    assert env.document.inf_envelope_code is None
    assert env.document.edoc_datetime == "2026-11-29T10:05:00+06:00"


@pytest.mark.parametrize(
    ("old", "new", "error", "match"),
    [
        ("<soap:Body", "<soap:Other/><soap:Body", NotAnEnvelope, "exactly soap:Header"),
        ("urn:uuid:3f0c5b7e-9f65-4a0e-8d4c-1c2e3a4b5c01", "msg-1", EnvelopeInvalid, "MessageID"),
        ("int://CP/P.TS.01/1.0.1/", "int://XX/P.TS.01/1.0.1/", EnvelopeInvalid, "wsa:Action"),
        ("P.TS.01.PRC.001", "P.TS.02.PRC.001", EnvelopeInvalid, "wsa:Action"),
        (
            "EAEU://KZ/CP/P.TS.01/P.TS.01.ACT.001",
            "EAEU://KZ/CA/P.TS.01/P.TS.01.ACT.001",
            EnvelopeInvalid,
            "ReplyTo",
        ),
        (
            "urn:uuid:a6c1e0f2-4b3d-4e5f-8a9b-0c1d2e3f4a51",
            "urn:uuid:a6c1e0f2-4b3d-4e5f-8a9b-0c1d2e3f4a51/bad",
            EnvelopeInvalid,
            "ProcedureID",
        ),
        ("<csdo:EDocCode>R.TR.TS.01.001", "<csdo:EDocCode>TR.01", EnvelopeInvalid, "EDocCode"),
        ("<wsa:Address>EAEU", "<wsa:Address>\n EAEU", EnvelopeInvalid, "ReplyTo"),
        (
            "</wsa:ReplyTo>",
            "<wsa:Address>EAEU://KZ/CP/P.TS.01/P.TS.01.ACT.001</wsa:Address></wsa:ReplyTo>",
            NotAnEnvelope,
            "exactly one wsa:Address",
        ),
        (
            ">EAEU://RU/CP/P.TS.01/P.TS.01.ACT.002<",
            "><b>EAEU://RU/CP/P.TS.01/P.TS.01.ACT.002</b><",
            EnvelopeInvalid,
            "text only",
        ),
    ],
    ids=[
        "extra envelope child",
        "message id not urn:uuid",
        "action scheme",
        "action procedure of another process",
        "reply-to space",
        "procedure ids",
        "edoc code",
        "whitespace in address",
        "two reply-to addresses",
        "element inside a text header",
    ],
)
def test_rule_violations_name_the_header(
    old: str, new: str, error: type[GatewayError], match: str
) -> None:
    """Each violated §1 rule raises its code and names the header or rule."""
    assert old in VALID
    with pytest.raises(error, match=match):
        _parse(VALID.replace(old, new, 1))


def test_structure_wins_over_content_whatever_the_order() -> None:
    """An unknown header before a missing required one still gives NOT_AN_ENVELOPE."""
    text = VALID.replace("<soap:Header>", "<soap:Header><x:Y xmlns:x='urn:x'/>", 1)
    text = text.replace("<wsa:Action", "<wsa:Ignored", 1).replace("</wsa:Action>", "</wsa:Ignored>")
    with pytest.raises(NotAnEnvelope, match="wsa:Action missing"):
        _parse(text)


def test_signal_action_is_accepted() -> None:
    """Signals replace the message code with P.MSG.RCV / PRS / ERR."""
    text = VALID.replace("P.TS.01.TRN.001/P.TS.01.MSG.001", "P.TS.01.TRN.001/P.MSG.RCV", 1)
    text = text.replace("<csdo:InfEnvelopeCode>P.TS.01.MSG.001</csdo:InfEnvelopeCode>", "")
    env = parse_envelope(xmlsafe.parse(text.encode()))
    assert env.action_parts.message == "P.MSG.RCV"


def test_comment_inside_address_is_not_part_of_the_value() -> None:
    """Values are read as exc-c14n sees them, not cut at a comment."""
    text = VALID.replace("EAEU://RU/CP/P.TS.01/", "EAEU://RU/<!-- hi -->CP/P.TS.01/", 1)
    env = parse_envelope(xmlsafe.parse(text.encode()))
    assert env.to.value == "EAEU://RU/CP/P.TS.01/P.TS.01.ACT.002"


_header_values = st.text(
    alphabet=st.sampled_from(list("EAU:/RUKZCPT.0123SMGacurnid-")), max_size=60
)


@settings(max_examples=200, deadline=None)
@given(to=_header_values, action=_header_values, message_id=_header_values)
def test_any_header_values_give_an_envelope_or_our_error(
    to: str, action: str, message_id: str
) -> None:
    """Whatever the header values, only our own errors come out of the envelope parser."""
    text = (
        VALID.replace("EAEU://RU/CP/P.TS.01/P.TS.01.ACT.002", to, 1)
        .replace(
            "int://CP/P.TS.01/1.0.1/P.TS.01.PRC.001/P.TS.01.TRN.001/P.TS.01.MSG.001", action, 1
        )
        .replace("urn:uuid:3f0c5b7e-9f65-4a0e-8d4c-1c2e3a4b5c01", message_id, 1)
    )
    with contextlib.suppress(GatewayError):
        _parse(text)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "<wsa:MessageID>urn:uuid:3f0c5b7e-9f65-4a0e-8d4c-1c2e3a4b5c01</wsa:MessageID>",
                "<wsa:To>EAEU://RU/CP/P.TS.01/P.TS.01.ACT.002</wsa:To>",
                "<wsa:ReplyTo><wsa:Address>EAEU://KZ/CP/P.TS.01/P.TS.01.ACT.001</wsa:Address></wsa:ReplyTo>",
                "<wsa:Action>int://CP/P.TS.01/1.0.1/P.TS.01.PRC.001/P.TS.01.TRN.001/P.TS.01.MSG.001"
                "</wsa:Action>",
                "<wsa:RelatesTo>urn:uuid:3f0c5b7e-9f65-4a0e-8d4c-1c2e3a4b5c01</wsa:RelatesTo>",
                "<int:Integration/>",
                "<wsse:Security/>",
                "<x:Other xmlns:x='urn:x'/>",
                "text",
            ]
        ),
        max_size=8,
    )
)
def test_any_header_combination_gives_an_envelope_or_our_error(blocks: list[str]) -> None:
    """Random header sets (missing, repeated, unknown) only ever yield our errors."""
    head, _, rest = VALID.partition("<soap:Header>")
    _, _, tail = rest.partition("</soap:Header>")
    security_ns = f' xmlns:wsse="{WSSE}"'
    text = f"{head}<soap:Header{security_ns}>{''.join(blocks)}</soap:Header>{tail}"
    with contextlib.suppress(GatewayError):
        _parse(text)


def test_v1_misspelt_wsse_namespace_is_refused() -> None:
    """SPEC v1.1 corrects the wsse namespace; v1's misspelling is an unknown header block."""
    misspelt = WSSE.replace("wssecurity-secext", "wssecext")  # v1's spelling
    text = VALID.replace(
        "</soap:Header>", f'<wsse:Security xmlns:wsse="{misspelt}"/></soap:Header>'
    )
    with pytest.raises(EnvelopeInvalid, match="unknown header block"):
        _parse(text)
    correct = VALID.replace("</soap:Header>", f'<wsse:Security xmlns:wsse="{WSSE}"/></soap:Header>')
    assert _parse(correct).security is not None


def test_signal_body_gives_its_code_and_needs_relates_to() -> None:
    """A signal body carries its code for the catalog and routing; without wsa:RelatesTo it is
    NOT_AN_ENVELOPE."""
    env = _parse(sample("valid-signal-processing-receipt-ru-to-kz.xml").decode())
    assert env.document.signal == "P.MSG.PRS"
    assert env.document.code == "P.MSG.PRS"
    with pytest.raises(NotAnEnvelope, match="without wsa:RelatesTo"):
        _parse(sample("invalid-NOT_AN_ENVELOPE-signal-without-relates-to.xml").decode())


def test_upstream_integration_is_read_in_any_datetime_form() -> None:
    """An upstream int:Integration's TrackID is kept; AcceptTime may carry a local offset."""
    env = _parse(sample("valid-upstream-integration-kz-to-ru.xml").decode())
    assert env.upstream_track_id == "NSW-KZ:2020-000123"
    assert env.integration is not None
