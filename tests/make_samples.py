"""Regenerate the sample envelopes in tests/data/ (``python -m tests.make_samples``).

Valid samples wrap the documents in tests/documents/; each invalid sample is a valid one
with exactly one defect, and its file name carries the SPEC §8 code it must produce:
``invalid-<CODE>-<what>.xml``. The samples are committed; this script documents how they were
made and lets them be remade after a schema change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from broker.compose import Addressing, compose_envelope

DATA = Path(__file__).parent / "data"
DOCS = Path(__file__).parent / "documents"

TS01 = "int://CP/P.TS.01/1.0.1/P.TS.01.PRC.001/P.TS.01.TRN.001"
SS08 = "int://CP/P.SS.08/1.0.0/P.SS.08.PRC.001/P.SS.08.TRN.001"
# The customs exchange's process code is illustrative; the address and Action forms are SPEC §1.
CC01 = "int://CP/P.CC.01/1.0.0/P.CC.01.PRC.001/P.CC.01.TRN.001"


@dataclass(frozen=True)
class Sample:
    name: str
    document: str
    addressing: Addressing


VALID = (
    Sample(
        "valid-conformity-kz-to-ru.xml",
        "conformity.xml",
        Addressing(
            to="EAEU://RU/CP/P.TS.01/P.TS.01.ACT.002",
            reply_to="EAEU://KZ/CP/P.TS.01/P.TS.01.ACT.001",
            action=f"{TS01}/P.TS.01.MSG.001",
            message_id="urn:uuid:3f0c5b7e-9f65-4a0e-8d4c-1c2e3a4b5c01",
            procedure_id="urn:uuid:a6c1e0f2-4b3d-4e5f-8a9b-0c1d2e3f4a51",
            conversation_id="urn:uuid:b7d2f1a3-5c4e-4f60-9bac-1d2e3f4a5b61",
        ),
    ),
    Sample(
        "valid-processing-result-ru-to-kz.xml",
        "processing-result.xml",
        Addressing(
            to="EAEU://KZ/CP/P.TS.01/P.TS.01.ACT.001",
            reply_to="EAEU://RU/CP/P.TS.01/P.TS.01.ACT.002",
            action=f"{TS01}/P.TS.01.MSG.002",
            message_id="urn:uuid:4e1d6c8f-0a76-4b1f-9e5d-2d3f4b5c6d02",
            relates_to="urn:uuid:3f0c5b7e-9f65-4a0e-8d4c-1c2e3a4b5c01",
            conversation_id="urn:uuid:b7d2f1a3-5c4e-4f60-9bac-1d2e3f4a5b61",
        ),
    ),
    Sample(
        "valid-dangerous-product-alert-by-to-kz.xml",
        "dangerous-product-alert.xml",
        Addressing(
            to="EAEU://KZ/CP/P.SS.08/P.SS.08.ACT.001",
            reply_to="EAEU://BY/CP/P.SS.08/P.SS.08.ACT.001",
            action=f"{SS08}/P.SS.08.MSG.002",
            message_id="urn:uuid:5f2e7d90-1b87-4c20-af6e-3e4f5c6d7e03",
        ),
    ),
    Sample(
        "valid-goods-declaration-kz-to-ru.xml",
        "goods-declaration.xml",
        Addressing(
            to="EAEU://RU/CP/P.CC.01/P.CC.01.ACT.002",
            reply_to="EAEU://KZ/CP/P.CC.01/P.CC.01.ACT.001",
            action=f"{CC01}/P.CC.01.MSG.001",
            message_id="urn:uuid:6a3f8ea1-2c98-4d31-b07f-4f5a6d7e8f04",
        ),
    ),
    Sample(
        "valid-signal-processing-receipt-ru-to-kz.xml",
        "processing-receipt-signal.xml",
        Addressing(
            to="EAEU://KZ/CP/P.TS.01/P.TS.01.ACT.001",
            reply_to="EAEU://RU/CP/P.TS.01/P.TS.01.ACT.002",
            action=f"{TS01}/P.MSG.PRS",
            message_id="urn:uuid:7b4e9fb2-3da9-4e42-8c17-5a6b7c8d9e05",
            relates_to="urn:uuid:3f0c5b7e-9f65-4a0e-8d4c-1c2e3a4b5c01",
            procedure_id="urn:uuid:a6c1e0f2-4b3d-4e5f-8a9b-0c1d2e3f4a51",
            conversation_id="urn:uuid:b7d2f1a3-5c4e-4f60-9bac-1d2e3f4a5b61",
        ),
    ),
)

CONFORMITY = VALID[0].name
ALERT = VALID[2].name
DECLARATION = VALID[3].name
SIGNAL = VALID[4].name
UPSTREAM = (
    "<int:Integration><int:TrackID>NSW-KZ:2020-000123</int:TrackID>"
    "<int:AcceptTime>2020-03-24T20:56:41+03:00</int:AcceptTime></int:Integration></soap:Header>"
)

# Each variant is a valid sample with one change: a valid-* variant must still be accepted, an
# invalid-<CODE>-* one is refused with CODE.
# (file name, valid sample it starts from, text to replace, replacement)
VARIANTS: tuple[tuple[str, str, str, str], ...] = (
    ("valid-upstream-integration-kz-to-ru.xml", CONFORMITY, "</soap:Header>", UPSTREAM),
    (
        "valid-suffixed-participant-code-kz-to-ru.xml",
        CONFORMITY,
        "EAEU://RU/CP/P.TS.01/P.TS.01.ACT.002",
        "EAEU://RU/CP/P.TS.01/P.TS.01.ACT.002AT",
    ),
    (
        "invalid-NOT_AN_ENVELOPE-signal-without-relates-to.xml",
        SIGNAL,
        '<wsa:RelatesTo wsu:Id="id-relates-to">urn:uuid:3f0c5b7e-9f65-4a0e-8d4c-1c2e3a4b5c01'
        "</wsa:RelatesTo>",
        "",
    ),
    (
        "invalid-ENVELOPE_INVALID-signal-code-differs.xml",
        SIGNAL,
        "P.TS.01.TRN.001/P.MSG.PRS",
        "P.TS.01.TRN.001/P.MSG.RCV",
    ),
    (
        "invalid-ENVELOPE_INVALID-integration-extra-child.xml",
        CONFORMITY,
        "</soap:Header>",
        UPSTREAM.replace("</int:Integration>", "<int:Note>x</int:Note></int:Integration>"),
    ),
    (
        "invalid-ENVELOPE_INVALID-integration-accept-time.xml",
        CONFORMITY,
        "</soap:Header>",
        UPSTREAM.replace("2020-03-24T20:56:41+03:00", "24.03.2020 20:56"),
    ),
    (
        "invalid-NOT_AN_ENVELOPE-soap11.xml",
        CONFORMITY,
        "http://www.w3.org/2003/05/soap-envelope",
        "http://schemas.xmlsoap.org/soap/envelope/",
    ),
    (
        "invalid-NOT_AN_ENVELOPE-missing-action.xml",
        CONFORMITY,
        '<wsa:Action wsu:Id="id-action">int://CP/P.TS.01/1.0.1/P.TS.01.PRC.001/P.TS.01.TRN.001/'
        "P.TS.01.MSG.001</wsa:Action>",
        "",
    ),
    (
        "invalid-NOT_AN_ENVELOPE-repeated-to.xml",
        CONFORMITY,
        "<wsa:ReplyTo",
        '<wsa:To wsu:Id="id-to-2">EAEU://BY/CP/P.TS.01/P.TS.01.ACT.002</wsa:To><wsa:ReplyTo',
    ),
    (
        "invalid-NOT_AN_ENVELOPE-two-documents.xml",
        CONFORMITY,
        "</soap:Body>",
        "<extra xmlns='urn:x'/></soap:Body>",
    ),
    (
        "invalid-ENVELOPE_INVALID-action-process-differs.xml",
        CONFORMITY,
        "EAEU://RU/CP/P.TS.01/P.TS.01.ACT.002",
        "EAEU://RU/CP/P.TS.02/P.TS.02.ACT.002",
    ),
    (
        "invalid-ENVELOPE_INVALID-inf-envelope-code-differs.xml",
        CONFORMITY,
        "<csdo:InfEnvelopeCode>P.TS.01.MSG.001",
        "<csdo:InfEnvelopeCode>P.TS.01.MSG.003",
    ),
    (
        "invalid-ENVELOPE_INVALID-malformed-address.xml",
        CONFORMITY,
        "EAEU://RU/CP/P.TS.01/P.TS.01.ACT.002",
        "EAEU://XX/CP/P.TS.01/P.TS.01.ACT.002",
    ),
    (
        "invalid-ENVELOPE_INVALID-unknown-header.xml",
        CONFORMITY,
        "</soap:Header>",
        "<wsa:From><wsa:Address>EAEU://KZ/CP/P.TS.01/P.TS.01.ACT.001"
        "</wsa:Address></wsa:From></soap:Header>",
    ),
    (
        "invalid-UNKNOWN_DOCUMENT-namespace.xml",
        CONFORMITY,
        "urn:EEC:R:TR:TS:01:ConformityDocsRegistryDetails:v1.0.1",
        "urn:EEC:R:TR:TS:01:ConformityDocsRegistryDetails:v9.9.9",
    ),
    (
        "invalid-UNKNOWN_DOCUMENT-edoc-code-disagrees.xml",
        CONFORMITY,
        "<csdo:EDocCode>R.TR.TS.01.001",
        "<csdo:EDocCode>R.TR.TS.01.002",
    ),
    (
        "invalid-SCHEMA_INVALID-conformity-commodity-code.xml",
        CONFORMITY,
        "<csdo:CommodityCode>9405210000",
        "<csdo:CommodityCode>94052100X0",
    ),
    (
        "invalid-SCHEMA_INVALID-alert-missing-hazard.xml",
        ALERT,
        "<ss:HazardKindCode>choking</ss:HazardKindCode>",
        "",
    ),
    (
        "invalid-SCHEMA_INVALID-declaration-two-errors.xml",
        DECLARATION,
        'currencyCode="KZT" currencyCodeListId="2022">18450000.00',
        'currencyCode="tenge" currencyCodeListId="2022">-5',
    ),
    (
        "invalid-MALFORMED_XML-xxe.xml",
        CONFORMITY,
        "<soap:Envelope",
        '<!DOCTYPE soap:Envelope [<!ENTITY x SYSTEM "file:///etc/passwd">]><soap:Envelope',
    ),
    ("invalid-MALFORMED_XML-truncated.xml", CONFORMITY, "</soap:Envelope>", ""),
)


def main() -> None:
    texts: dict[str, str] = {}
    for sample in VALID:
        data = compose_envelope((DOCS / sample.document).read_bytes(), sample.addressing)
        (DATA / sample.name).write_bytes(data)
        texts[sample.name] = data.decode("utf-8")
    for name, base, old, new in VARIANTS:
        text = texts[base]
        if old not in text:
            raise SystemExit(f"{name}: {old!r} not found in {base}")
        (DATA / name).write_text(text.replace(old, new, 1), encoding="utf-8")
    (DATA / "invalid-MALFORMED_XML-not-xml.xml").write_text("MessageID=42; please deliver\n")


if __name__ == "__main__":
    main()
