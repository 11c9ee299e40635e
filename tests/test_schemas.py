"""The schema catalog: compile once, identify by namespace and EDocCode, validate on lxml."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from lxml import etree

from broker import xmlsafe
from broker.envelope import parse_envelope
from broker.errors import ConfigError, SchemaInvalid, UnknownDocument
from broker.schemas import Catalog, check_with_xmlschema, read_catalog
from tests.conftest import DATA, ROOT, XSD, sample


def _document(name: str) -> object:
    return parse_envelope(xmlsafe.parse(sample(name))).document


@pytest.mark.parametrize("path", sorted(DATA.glob("valid-*.xml")), ids=lambda p: p.name)
def test_valid_samples_pass(catalog: Catalog, path: Path) -> None:
    """Every valid sample validates against its catalog schema."""
    document = parse_envelope(xmlsafe.parse(path.read_bytes())).document
    assert catalog.validate(document).code == document.code


def test_schema_errors_give_line_and_path(catalog: Catalog) -> None:
    """SCHEMA_INVALID lists every error, each with its line and element path."""
    document = parse_envelope(
        xmlsafe.parse(sample("invalid-SCHEMA_INVALID-declaration-two-errors.xml"))
    ).document
    with pytest.raises(SchemaInvalid) as info:
        catalog.validate(document)
    assert len(info.value.problems) == 2
    for problem in info.value.problems:
        assert problem.startswith("line 37: /gd:GoodsDeclaration/gd:TotalCustomsValueAmount")


def test_xsi_schema_location_is_never_followed(catalog: Catalog, tmp_path: Path) -> None:
    """A message pointing at a permissive schema is still validated against the catalog's."""
    lax = tmp_path / "lax.xsd"
    lax.write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" '
        'targetNamespace="urn:EEC:R:ProcessingResultDetails:v1.0.7">'
        '<xs:element name="ProcessingResultDetails"/></xs:schema>'
    )
    text = sample("valid-processing-result-ru-to-kz.xml").decode()
    text = text.replace(
        'xmlns:pr="urn:EEC:R:ProcessingResultDetails:v1.0.7"',
        'xmlns:pr="urn:EEC:R:ProcessingResultDetails:v1.0.7" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:schemaLocation="urn:EEC:R:ProcessingResultDetails:v1.0.7 {lax.as_uri()}"',
    ).replace("<pr:ProcessingResultV2Code>3<", "<pr:ProcessingResultV2Code>99<")
    document = parse_envelope(xmlsafe.parse(text.encode())).document
    with pytest.raises(SchemaInvalid, match="ProcessingResultV2Code"):
        catalog.validate(document)


def test_root_element_must_match_the_catalog(catalog: Catalog) -> None:
    """A registered namespace with another root element is UNKNOWN_DOCUMENT."""
    text = sample("valid-processing-result-ru-to-kz.xml").decode()
    text = text.replace("pr:ProcessingResultDetails", "pr:ProcessingResult")
    document = parse_envelope(xmlsafe.parse(text.encode())).document
    with pytest.raises(UnknownDocument, match="root element"):
        catalog.validate(document)


def test_edoc_code_of_another_document_is_unknown(catalog: Catalog) -> None:
    """EDocCode registered for another namespace disagrees with the root namespace."""
    text = sample("valid-conformity-kz-to-ru.xml").decode()
    text = text.replace("<csdo:EDocCode>R.TR.TS.01.001", "<csdo:EDocCode>R.006")
    document = parse_envelope(xmlsafe.parse(text.encode())).document
    with pytest.raises(UnknownDocument, match="registered for another namespace"):
        catalog.validate(document)


def _copy_xsd(tmp_path: Path) -> Path:
    folder = tmp_path / "xsd"
    shutil.copytree(XSD, folder)
    return folder


def test_import_from_the_network_is_refused(tmp_path: Path) -> None:
    """A schema importing over http does not compile; nothing is fetched."""
    folder = _copy_xsd(tmp_path)
    path = folder / "EEC_R_ProcessingResultDetails_v1.0.7.xsd"
    path.write_text(
        path.read_text().replace("EEC_M_BaseDataTypes_v0.4.12.xsd", "http://127.0.0.1:9/base.xsd")
    )
    with pytest.raises(ConfigError, match=r"R\.006"):
        Catalog.load(folder)
    entry = next(e for e in read_catalog(folder) if e.code == "R.006")
    with pytest.raises(ConfigError):
        check_with_xmlschema(folder, entry)


def test_import_outside_the_folder_is_refused(tmp_path: Path) -> None:
    """A schema import that leaves xsd/ is refused by both compilers."""
    folder = _copy_xsd(tmp_path)
    outside = tmp_path / "outside.xsd"
    shutil.copy(folder / "EEC_M_BaseDataTypes_v0.4.12.xsd", outside)
    path = folder / "EEC_R_ProcessingResultDetails_v1.0.7.xsd"
    path.write_text(
        path.read_text().replace('"EEC_M_BaseDataTypes_v0.4.12.xsd"', f'"../{outside.name}"')
    )
    with pytest.raises(ConfigError):
        Catalog.load(folder)
    entry = next(e for e in read_catalog(folder) if e.code == "R.006")
    with pytest.raises(ConfigError, match="leaves"):
        check_with_xmlschema(folder, entry)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("documents: {}", "must be a list"),
        ("docs: []", "one key"),
        ("documents:\n  - {code: R.006, namespace: a, root: b}", "exactly the keys"),
        ("documents:\n  - {code: R.006, namespace: a, root: b, schema: ../../etc/x.xsd}", "inside"),
        (
            "documents:\n  - {code: R.006, namespace: a, root: b, schema: a.xsd}\n"
            "  - {code: R.006, namespace: c, root: b, schema: a.xsd}",
            "duplicate code",
        ),
    ],
)
def test_malformed_catalog_is_a_config_error(tmp_path: Path, text: str, match: str) -> None:
    """Catalog mistakes are reported with the file and the rule."""
    (tmp_path / "catalog.yaml").write_text(text)
    with pytest.raises(ConfigError, match=match):
        read_catalog(tmp_path)


def _conformity_document() -> str:
    return (ROOT / "tests" / "documents" / "conformity.xml").read_text(encoding="utf-8")


def _validate_document(catalog: Catalog, text: str) -> None:
    from broker.envelope import Document

    root = xmlsafe.parse(text.encode())
    qname = etree.QName(root)
    catalog.validate(
        Document(root, qname.namespace or "", qname.localname, "R.TR.TS.01.001", None, None, None)
    )


def test_official_conformity_structure_with_optional_elements_is_accepted(
    catalog: Catalog,
) -> None:
    """R.TR.TS.01.001 v1.0.1 as the official schema has it — EDocHeader, then
    ConformityDocDetails over base models v0.4.5 and TR models v1.0.3 — with optional elements
    this project does not model, between and inside the required ones."""
    text = _conformity_document()
    text = text.replace(
        "<csdo:DocId>",
        "<trsdo:ConformityDocSeriesId>KZ</trsdo:ConformityDocSeriesId><csdo:DocId>",
    ).replace(
        "</trcdo:ApplicantDetails>",
        "<ccdo:CommunicationDetails><csdo:CommunicationChannelId>x</csdo:CommunicationChannelId>"
        "</ccdo:CommunicationDetails></trcdo:ApplicantDetails>",
    )
    _validate_document(catalog, text)


def test_conformity_root_sequence_is_enforced(catalog: Catalog) -> None:
    """The known part is strict: a ConformityDocDetails before EDocHeader is SCHEMA_INVALID."""
    text = _conformity_document()
    header_start, header_end = text.index("<ccdo:EDocHeader>"), text.index("</ccdo:EDocHeader>")
    header = text[header_start : header_end + len("</ccdo:EDocHeader>")]
    text = text.replace(header, "").replace(
        "</trcdo:ConformityDocDetails>", "</trcdo:ConformityDocDetails>" + header
    )
    with pytest.raises(SchemaInvalid):
        _validate_document(catalog, text)


def test_every_shipped_document_schema_names_its_standing() -> None:
    """Each shipped schema claiming an official namespace says at its top whether it is a
    working model, and that operators should import the official one (SPEC §5)."""
    for entry in read_catalog(XSD):
        head = entry.schema.read_text(encoding="utf-8")[:2000]
        assert "working model" in head, entry.schema.name
        assert "broker xsd import" in head, entry.schema.name
