"""``broker xsd import DIR… [--code CODE]``: the EEC's published registry folders → the catalog.

The EEC publishes its registry of structures as folders of XSDs. This takes them as they are
(SPEC §5):

1. collect the regular ``*.xsd`` files of each folder (recursively), each to be copied to
   ``xsd/<its base name>``; a base model already there with identical bytes is shared, one with
   other bytes under the same name is a conflict;
2. check each ``xs:import``/``xs:include``: a relative ``schemaLocation`` that resolves inside
   ``xsd/`` after copying;
3. find the document schemas — files named ``EEC_R_*.xsd`` declaring one global element — and
   take each one's code from the comment before its root element (``<!-- R.TR.TS.01.001: … -->``)
   or from ``--code``, its namespace and root from the schema; a code or (namespace, root) that
   the catalog already holds with other bytes is a conflict;
4. write everything into a staging copy of ``xsd/`` and compile the whole catalog there, with
   lxml and with xmlschema;
5. only then copy the files in and replace ``catalog.yaml`` (each by an atomic rename).

Any failure before step 5 changes nothing and names the file and the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from lxml import etree

from broker.errors import ConfigError, ImportRefused
from broker.schemas import CatalogEntry, check_with_xmlschema, read_catalog

XS = "http://www.w3.org/2001/XMLSchema"
_CODE_COMMENT = re.compile(r"^\s*(R(?:\.[A-Z]{2}\.[A-Z]{2}\.[0-9]{2})?\.[0-9]{3})\b")
_DOCUMENT_FILE = re.compile(r"EEC_R_.*\.xsd")


@dataclass(frozen=True)
class Added:
    """One catalog entry the import added."""

    code: str
    namespace: str
    root: str
    file: str

    def line(self) -> str:
        return f"added {self.code} {self.namespace} {self.root} {self.file}"


@dataclass(frozen=True)
class _Schema:
    source: Path
    name: str
    data: bytes
    tree: etree._ElementTree


def _collect(folders: Sequence[Path]) -> dict[str, _Schema]:
    found: dict[str, _Schema] = {}
    for folder in folders:
        if not folder.is_dir():
            raise ConfigError(f"{folder}: not a readable folder")
        try:
            paths = sorted(folder.rglob("*.xsd"))
        except OSError as exc:
            raise ConfigError(f"{folder}: cannot read: {exc.strerror}") from exc
        for path in paths:
            if path.is_symlink() or not path.is_file():
                continue  # only regular files are copied
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
            earlier = found.get(path.name)
            if earlier is not None:
                if earlier.data != data:
                    raise ImportRefused(
                        f"{path}: another {path.name} with other bytes is being imported "
                        f"({earlier.source})"
                    )
                continue
            found[path.name] = _Schema(path, path.name, data, _parse(path, data))
    if not found:
        raise ImportRefused(f"no .xsd files in {', '.join(str(f) for f in folders)}")
    return found


def _parse(path: Path, data: bytes) -> etree._ElementTree:
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise ImportRefused(f"{path}: not well-formed XML: {exc.msg}") from exc
    if root.tag != f"{{{XS}}}schema":
        raise ImportRefused(f"{path}: not an XML Schema (root element {root.tag})")
    return root.getroottree()


def _check_locations(schema: _Schema, xsd: Path, names: set[str]) -> None:
    for ref in schema.tree.getroot():
        if ref.tag not in (f"{{{XS}}}import", f"{{{XS}}}include"):
            continue
        location = ref.get("schemaLocation")
        if location is None:
            continue
        where = f"{schema.source}: line {ref.sourceline}: schemaLocation {location!r}"
        if "://" in location or location.startswith("/") or ":" in location.split("/")[0]:
            raise ImportRefused(f"{where} is not a relative path")
        target = (xsd / location).resolve()
        if not target.is_relative_to(xsd.resolve()):
            raise ImportRefused(f"{where} leaves {xsd}/")
        if not (target.parent == xsd.resolve() and target.name in names) and not target.is_file():
            raise ImportRefused(f"{where}: no such schema is imported or already in {xsd}/")


def _document(schema: _Schema, code: str | None) -> CatalogEntry | None:
    if not _DOCUMENT_FILE.fullmatch(schema.name):
        return None
    root = schema.tree.getroot()
    elements = [e for e in root if e.tag == f"{{{XS}}}element"]
    if len(elements) != 1:
        return None  # a document schema declares exactly one global element
    element = elements[0]
    found = None
    previous = element.getprevious()
    while previous is not None and previous.tag is etree.Comment:
        match = _CODE_COMMENT.match(previous.text or "")
        if match:
            found = match.group(1)
            break
        previous = previous.getprevious()
    chosen = found or code
    if chosen is None:
        raise ImportRefused(
            f"{schema.source}: no code in the comment before its root element "
            "(<!-- R.…: … -->); give it with --code"
        )
    name = element.get("name")
    namespace = root.get("targetNamespace")
    if not name or not namespace:
        raise ImportRefused(f"{schema.source}: the root element needs a name and a targetNamespace")
    return CatalogEntry(chosen, namespace, name, Path(schema.name))


def _conflicts(
    new: list[CatalogEntry], existing: tuple[CatalogEntry, ...], schemas: dict[str, _Schema]
) -> list[CatalogEntry]:
    """The entries really new; the same entry with the same bytes is already there (skipped)."""
    fresh = []
    for entry in new:
        data = schemas[entry.schema.name].data
        same = [
            e
            for e in existing
            if e.code == entry.code or (e.namespace, e.root) == (entry.namespace, entry.root)
        ]
        if not same:
            fresh.append(entry)
            continue
        for other in same:
            identical = (
                (other.code, other.namespace, other.root)
                == (entry.code, entry.namespace, entry.root)
                and other.schema.is_file()
                and other.schema.read_bytes() == data
            )
            if not identical:
                raise ImportRefused(
                    f"{schemas[entry.schema.name].source}: the catalog already holds "
                    f"{other.code} ({other.namespace}, {other.root}) from {other.schema.name} "
                    "with other bytes"
                )
    return fresh


def _catalog_text(catalog: Path, entries: list[CatalogEntry]) -> str:
    """catalog.yaml with ``entries`` appended, keeping the operator's comments."""
    lines = [
        f"  - code: {e.code}\n    namespace: {e.namespace}\n    root: {e.root}\n"
        f"    schema: {e.schema.as_posix()}\n"
        for e in entries
    ]
    if not catalog.is_file():
        return (
            "# The schema catalog (SPEC §5), written by `broker xsd import`.\ndocuments:\n"
            + "".join(lines)
        )
    text = catalog.read_text(encoding="utf-8")
    appended = text + ("" if text.endswith("\n") else "\n") + "".join(lines)
    try:
        data = yaml.safe_load(appended)
        if isinstance(data, dict) and isinstance(data.get("documents"), list):
            return appended
    except yaml.YAMLError:
        pass
    # A catalog written in flow style cannot be appended to: write it out again.
    data = yaml.safe_load(text) or {"documents": []}
    data["documents"] = list(data.get("documents") or []) + [
        {"code": e.code, "namespace": e.namespace, "root": e.root, "schema": e.schema.as_posix()}
        for e in entries
    ]
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def import_schemas(folders: Sequence[Path], xsd: Path, code: str | None = None) -> list[Added]:
    """Import the registry folders into ``xsd``; see the module docstring."""
    schemas = _collect(folders)
    if not xsd.is_dir():
        raise ConfigError(f"{xsd}: the schema folder does not exist")
    catalog = xsd / "catalog.yaml"
    existing = read_catalog(xsd) if catalog.is_file() else ()
    copies: list[_Schema] = []
    for schema in schemas.values():
        there = xsd / schema.name
        if there.exists():
            if there.read_bytes() != schema.data:
                raise ImportRefused(
                    f"{schema.source}: {there} already exists with other bytes (a different "
                    "schema under the same file name)"
                )
            continue  # identical: shared
        copies.append(schema)
    for schema in schemas.values():
        _check_locations(schema, xsd, set(schemas))
    documents = [d for d in (_document(s, code) for s in schemas.values()) if d is not None]
    if not documents:
        raise ImportRefused("no document schema (EEC_R_*.xsd declaring one global element) found")
    fresh = _conflicts(documents, tuple(e for e in existing), schemas)
    _stage_and_compile(xsd, copies, _catalog_text(catalog, fresh), fresh, schemas)
    _commit(xsd, copies, _catalog_text(catalog, fresh))
    return [Added(e.code, e.namespace, e.root, e.schema.as_posix()) for e in fresh]


def _stage_and_compile(
    xsd: Path,
    copies: list[_Schema],
    catalog_text: str,
    fresh: list[CatalogEntry],
    schemas: dict[str, _Schema],
) -> None:
    from broker.schemas import Catalog

    with tempfile.TemporaryDirectory(prefix="broker-xsd-import-") as tmp:
        staging = Path(tmp) / "xsd"
        shutil.copytree(xsd, staging, symlinks=False)
        for schema in copies:
            (staging / schema.name).write_bytes(schema.data)
        (staging / "catalog.yaml").write_text(catalog_text, encoding="utf-8")
        try:
            entries = read_catalog(staging)
            Catalog(staging, entries)
            for entry in entries:
                if entry.schema.name in {e.schema.name for e in fresh}:
                    check_with_xmlschema(staging, entry)
        except ConfigError as exc:
            culprit = next(
                (s.source for s in schemas.values() if s.name in exc.message),
                None,
            )
            where = f"{culprit}: " if culprit else ""
            raise ImportRefused(f"{where}does not compile: {exc.message}") from exc


def _commit(xsd: Path, copies: list[_Schema], catalog_text: str) -> None:
    written: list[Path] = []
    try:
        for schema in copies:
            target = xsd / schema.name
            partial = target.with_name(f".{schema.name}.importing")
            partial.write_bytes(schema.data)
            os.replace(partial, target)
            written.append(target)
        partial = xsd / ".catalog.yaml.importing"
        partial.write_text(catalog_text, encoding="utf-8")
        os.replace(partial, xsd / "catalog.yaml")
    except OSError as exc:
        for path in written:  # the catalog still names none of them: take them back
            path.unlink(missing_ok=True)
        raise ConfigError(f"{xsd}: cannot write: {exc.strerror}") from exc
