"""`broker xsd import` as an operator runs it on a published registry folder (SPEC §5): success,
sharing of identical base models, conflicts, broken files, atomicity, exit codes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from broker.schemas import Catalog, read_catalog
from tests.conftest import XSD
from tests.test_cli_validate import broker

NAMESPACE = "urn:EEC:R:TR:TS:01:ConformityDocsRegistryRequest:v1.0.0"
DOCUMENT = f"""<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"
           xmlns:ccdo="urn:EEC:M:ComplexDataObjects:v0.4.5"
           xmlns:rq="urn:EEC:M:TR:RequestObjects:v1.0.0"
           targetNamespace="{NAMESPACE}" elementFormDefault="qualified">
  <xs:import namespace="urn:EEC:M:ComplexDataObjects:v0.4.5"
             schemaLocation="EEC_M_ComplexDataObjects_v0.4.5.xsd"/>
  <xs:import namespace="urn:EEC:M:TR:RequestObjects:v1.0.0"
             schemaLocation="EEC_M_TR_RequestObjects_v1.0.0.xsd"/>
  <!-- R.TR.TS.01.005: Запрос сведений из единого реестра -->
  <xs:element name="ConformityDocsRegistryRequest">
    <xs:complexType>
      <xs:sequence>
        <xs:element ref="ccdo:EDocHeader"/>
        <xs:element ref="rq:RequestedDocId"/>
      </xs:sequence>
    </xs:complexType>
  </xs:element>
</xs:schema>
"""
REQUEST_OBJECTS = """<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"
           targetNamespace="urn:EEC:M:TR:RequestObjects:v1.0.0" elementFormDefault="qualified">
  <xs:element name="RequestedDocId" type="xs:string"/>
</xs:schema>
"""
DOCUMENT_FILE = "EEC_R_TR_TS_01_ConformityDocsRegistryRequest_v1.0.0.xsd"


def _registry(tmp_path: Path, document: str = DOCUMENT) -> Path:
    """A registry folder as the EEC publishes it: documents and the models they import."""
    folder = tmp_path / "registry"
    (folder / "models").mkdir(parents=True)
    (folder / DOCUMENT_FILE).write_text(document, encoding="utf-8")
    (folder / "models" / "EEC_M_TR_RequestObjects_v1.0.0.xsd").write_text(REQUEST_OBJECTS)
    for base in ("ComplexDataObjects", "SimpleDataObjects", "BaseDataTypes"):
        name = f"EEC_M_{base}_v0.4.5.xsd"
        shutil.copy(XSD / name, folder / "models" / name)
    return folder


def _xsd(tmp_path: Path) -> Path:
    folder = tmp_path / "xsd"
    shutil.copytree(XSD, folder)
    return folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_import_adds_the_document_and_shares_identical_models(tmp_path: Path) -> None:
    """One line per entry added; new models copied, identical base models shared; the catalog
    compiles and holds the entry."""
    xsd = _xsd(tmp_path)
    before = _snapshot(xsd)
    result = broker("xsd", "import", str(_registry(tmp_path)), "--xsd", str(xsd))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"added R.TR.TS.01.005 {NAMESPACE} ConformityDocsRegistryRequest {DOCUMENT_FILE}"
    ]
    after = _snapshot(xsd)
    assert set(after) - set(before) == {DOCUMENT_FILE, "EEC_M_TR_RequestObjects_v1.0.0.xsd"}
    assert all(after[name] == data for name, data in before.items() if name != "catalog.yaml")
    assert "# The schema catalog" in after["catalog.yaml"].decode()  # comments kept
    entry = next(e for e in read_catalog(xsd) if e.code == "R.TR.TS.01.005")
    assert (entry.namespace, entry.root) == (NAMESPACE, "ConformityDocsRegistryRequest")
    Catalog.load(xsd)
    again = broker("xsd", "import", str(_registry(tmp_path / "again")), "--xsd", str(xsd))
    assert again.returncode == 0, again.stderr
    assert "nothing to add" in again.stdout


def test_code_option_for_a_schema_without_the_comment(tmp_path: Path) -> None:
    """Without the <!-- CODE: … --> comment the code comes from --code, else exit 1."""
    document = DOCUMENT.replace("<!-- R.TR.TS.01.005: Запрос сведений из единого реестра -->", "")
    registry = _registry(tmp_path, document)
    xsd = _xsd(tmp_path)
    refused = broker("xsd", "import", str(registry), "--xsd", str(xsd))
    assert refused.returncode == 1
    assert "give it with --code" in refused.stderr
    result = broker("xsd", "import", str(registry), "--code", "R.TR.TS.01.006", "--xsd", str(xsd))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("added R.TR.TS.01.006 ")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            lambda r: (r / "models" / "EEC_M_ComplexDataObjects_v0.4.5.xsd").write_text(
                (r / "models" / "EEC_M_ComplexDataObjects_v0.4.5.xsd")
                .read_text()
                .replace("M.CDT.90001", "changed")
            ),
            "already exists with other bytes",
        ),
        (
            lambda r: (r / DOCUMENT_FILE).write_text(
                DOCUMENT.replace("R.TR.TS.01.005:", "R.006:"), encoding="utf-8"
            ),
            "the catalog already holds R.006",
        ),
        (
            lambda r: (r / DOCUMENT_FILE).write_text(DOCUMENT[:-40], encoding="utf-8"),
            "not well-formed",
        ),
        (
            lambda r: (r / DOCUMENT_FILE).write_text(
                DOCUMENT.replace('ref="rq:RequestedDocId"', 'ref="rq:NoSuchElement"'),
                encoding="utf-8",
            ),
            "does not compile",
        ),
        (
            lambda r: (r / DOCUMENT_FILE).write_text(
                DOCUMENT.replace(
                    'schemaLocation="EEC_M_TR_RequestObjects_v1.0.0.xsd"',
                    'schemaLocation="http://127.0.0.1:9/x.xsd"',
                ),
                encoding="utf-8",
            ),
            "is not a relative path",
        ),
        (
            lambda r: (r / DOCUMENT_FILE).write_text(
                DOCUMENT.replace(
                    'schemaLocation="EEC_M_TR_RequestObjects_v1.0.0.xsd"',
                    'schemaLocation="../outside.xsd"',
                ),
                encoding="utf-8",
            ),
            "leaves",
        ),
    ],
    ids=[
        "same file name, other bytes",
        "code already in the catalog",
        "broken file",
        "schema that does not compile",
        "network import",
        "import outside xsd/",
    ],
)
def test_refused_import_changes_nothing(tmp_path: Path, change: object, reason: str) -> None:
    """Each conflict or broken file: exit 1, a line naming the file and the reason, and the
    schema folder byte for byte as it was."""
    registry = _registry(tmp_path)
    assert callable(change)
    change(registry)
    xsd = _xsd(tmp_path)
    before = _snapshot(xsd)
    result = broker("xsd", "import", str(registry), "--xsd", str(xsd))
    assert result.returncode == 1, result.stdout
    assert reason in result.stderr
    assert str(registry) in result.stderr
    assert _snapshot(xsd) == before


def test_unreadable_folder_is_a_usage_error(tmp_path: Path) -> None:
    """A DIR that does not exist: exit 2, one line."""
    result = broker("xsd", "import", str(tmp_path / "nope"), "--xsd", str(_xsd(tmp_path)))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "not a readable folder" in result.stderr
