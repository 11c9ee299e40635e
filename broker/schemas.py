"""The schema catalog (SPEC §5): ``xsd/catalog.yaml`` → compiled schemas, and validation.

The hot path validates with ``lxml.etree.XMLSchema`` (libxml2; ~70× faster than xmlschema on a
10 KB document). ``xmlschema`` is used where its thoroughness pays: ``broker xsd check`` builds
every schema with it as a second, stricter compiler. Both load schemas and their imports from the
catalog folder only; neither ever follows a message's ``xsi:schemaLocation`` — validation is
against the schema the catalog names for the document's namespace, nothing else.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import yaml
from lxml import etree

from broker.envelope import Document
from broker.errors import ConfigError, SchemaInvalid, UnknownDocument
from broker.xmlsafe import parse_schema_file

MAX_REPORTED_ERRORS = 50


@dataclass(frozen=True)
class CatalogEntry:
    """One document type: its EDocCode, root namespace and element, and schema file."""

    code: str
    namespace: str
    root: str
    schema: Path


@dataclass(frozen=True)
class CompiledDocument:
    entry: CatalogEntry
    schema: etree.XMLSchema


def read_catalog(folder: Path) -> tuple[CatalogEntry, ...]:
    """Read ``catalog.yaml`` in ``folder``; a malformed catalog is a ConfigError."""
    path = folder / "catalog.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the schema catalog: {exc}") from exc
    if not isinstance(data, dict) or set(data) != {"documents"}:
        raise ConfigError(f"{path}: expected a mapping with the one key 'documents'")
    documents = data["documents"]
    if not isinstance(documents, list):
        raise ConfigError(f"{path}: 'documents' must be a list")
    entries: list[CatalogEntry] = []
    for index, item in enumerate(documents):
        keys = {"code", "namespace", "root", "schema"}
        if not isinstance(item, dict) or set(item) != keys:
            raise ConfigError(f"{path}: documents[{index}] must have exactly the keys {keys}")
        if not all(isinstance(item[k], str) and item[k] for k in keys):
            raise ConfigError(f"{path}: documents[{index}]: every value must be a string")
        schema = (folder / item["schema"]).resolve()
        if not schema.is_relative_to(folder.resolve()):
            raise ConfigError(f"{path}: documents[{index}]: schema must lie inside {folder}")
        entries.append(CatalogEntry(item["code"], item["namespace"], item["root"], schema))
    # An entry is identified by (namespace, root): the three signals share one namespace.
    for what, values in (
        ("code", [e.code for e in entries]),
        ("(namespace, root)", [f"({e.namespace}, {e.root})" for e in entries]),
    ):
        duplicates = sorted({v for v in values if values.count(v) > 1})
        if duplicates:
            raise ConfigError(f"{path}: duplicate {what} {', '.join(duplicates)}")
    return tuple(entries)


def _compile(entry: CatalogEntry, folder: Path) -> etree.XMLSchema:
    try:
        tree = parse_schema_file(entry.schema, folder)
        return etree.XMLSchema(tree)
    except (OSError, etree.LxmlError) as exc:
        raise ConfigError(f"{entry.code}: schema {entry.schema} does not compile: {exc}") from exc


class Catalog:
    """The compiled catalog: look up a document by namespace and validate it."""

    def __init__(self, folder: Path, entries: tuple[CatalogEntry, ...]) -> None:
        self.folder = folder
        self.entries = entries
        self._by_name = {
            (e.namespace, e.root): CompiledDocument(e, _compile(e, folder)) for e in entries
        }
        self._roots: dict[str, list[str]] = {}
        for e in entries:
            self._roots.setdefault(e.namespace, []).append(e.root)
        self._by_code = {e.code: e for e in entries}

    @classmethod
    def load(cls, folder: Path) -> Catalog:
        """Read and compile every schema of the catalog once (start-up and reload)."""
        return cls(folder, read_catalog(folder))

    def identify(self, document: Document) -> CatalogEntry:
        """The catalog entry of a body document, or UNKNOWN_DOCUMENT saying why not."""
        compiled = self._by_name.get((document.namespace, document.root))
        if compiled is None:
            roots = self._roots.get(document.namespace)
            if roots is None:
                raise UnknownDocument(
                    f"document namespace {document.namespace!r} is not in the schema catalog"
                )
            raise UnknownDocument(
                f"root element {document.root!r} is not registered for {document.namespace} "
                f"(registered: {', '.join(roots)})"
            )
        entry = compiled.entry
        code = document.code
        if code is not None and code != entry.code:
            known = "registered for another namespace" if code in self._by_code else "unknown"
            raise UnknownDocument(
                f"{'signal' if document.signal else 'EDocCode'} {code} ({known}) disagrees "
                f"with namespace {entry.namespace}, registered as {entry.code}"
            )
        return entry

    def compiled(self, entry: CatalogEntry) -> etree.XMLSchema:
        """The compiled schema of a catalog entry (for `broker bench`'s direct measure)."""
        return self._by_name[(entry.namespace, entry.root)].schema

    def validate(self, document: Document) -> CatalogEntry:
        """Validate the body document against its schema: UNKNOWN_DOCUMENT or SCHEMA_INVALID."""
        entry = self.identify(document)
        schema = self._by_name[(entry.namespace, entry.root)].schema
        if schema.validate(document.element):
            return entry
        problems = tuple(
            f"line {err.line}: {err.path}: {err.message}"
            for err in list(schema.error_log)[:MAX_REPORTED_ERRORS]
        )
        count = len(schema.error_log)
        more = f" (first {MAX_REPORTED_ERRORS} shown)" if count > MAX_REPORTED_ERRORS else ""
        raise SchemaInvalid(
            f"{entry.code} fails its schema with {count} error(s){more}: {problems[0]}", problems
        )


def check_with_xmlschema(folder: Path, entry: CatalogEntry) -> None:
    """Build one schema with xmlschema too, loading local files inside ``folder`` only."""
    import xmlschema  # only the offline check needs it; keep it off the serving import path

    root = folder.resolve()

    def local_only(uri: str) -> str:
        path = Path(uri.removeprefix("file://"))
        if "://" in uri.removeprefix("file://") or not path.resolve().is_relative_to(root):
            raise ConfigError(f"{entry.code}: schema reference {uri!r} leaves {root}")
        return uri

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an import that failed is an error, not a warning
            schema = xmlschema.XMLSchema(
                str(entry.schema), allow="local", defuse="always", uri_mapper=local_only
            )
    except ConfigError:
        raise
    except Exception as exc:  # xmlschema raises many unrelated types for a broken schema
        raise ConfigError(f"{entry.code}: {entry.schema.name}: {exc}") from exc
    if entry.root not in {
        etree.QName(name).localname for name in schema.elements if isinstance(name, str)
    }:
        raise ConfigError(f"{entry.code}: {entry.schema.name} declares no element {entry.root}")
    if schema.target_namespace != entry.namespace:
        raise ConfigError(
            f"{entry.code}: {entry.schema.name} targets {schema.target_namespace!r}, "
            f"catalog says {entry.namespace!r}"
        )
