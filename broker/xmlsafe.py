"""The one hardened XML door: the only place where bytes become an lxml tree.

Nothing else in the gateway calls ``etree.fromstring``/``etree.parse``. The door:

* accepts UTF-8 only (SPEC §1) — a UTF-16/UTF-32 byte-order mark, NUL bytes or an XML
  declaration naming another encoding are refused, so an attack re-encoded as UTF-16 meets the
  same refusal as its UTF-8 original, before any parsing;
* refuses any DOCTYPE before libxml2 sees it, so no DTD, internal subset, entity or parameter
  entity is ever parsed, let alone expanded or fetched;
* parses with entity resolution, DTD loading and network access off, XInclude never processed,
  and a resolver that refuses every external load (defence in depth behind the DOCTYPE check);
* enforces depth, element-count and attribute-count limits (SPEC §8 defaults).

Schema files from ``xsd/`` are read through :func:`parse_schema_file`, whose resolver lets
``xs:import``/``xs:include`` reach files inside the schema folder and nothing else.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

from broker.errors import MalformedXml, TooLarge

EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"


@dataclass(frozen=True)
class XmlLimits:
    """Limits applied to every parsed message (SPEC §8 defaults)."""

    max_bytes: int = 10 * 1024 * 1024
    """Largest body accepted; larger is TOO_LARGE."""
    max_depth: int = 100
    """Deepest element nesting, counting the root as 1."""
    max_elements: int = 100_000
    """Most elements in one document."""
    max_attributes: int = 256
    """Most attributes on one element (namespace declarations are not attributes)."""


DEFAULT_LIMITS = XmlLimits()

# UTF-16/32 marks and the NUL-interleaved starts of BOM-less UTF-16/32 '<'.
_FOREIGN_STARTS = (
    b"\xff\xfe",
    b"\xfe\xff",
    b"\x00\x00\xfe\xff",
    b"\x00<",
    b"<\x00",
    b"\x00\x00\x00<",
    b"<\x00\x00\x00",
)
_UTF8_BOM = b"\xef\xbb\xbf"
_XINCLUDE = "{http://www.w3.org/2001/XInclude}"
_XML_DECL = re.compile(rb"<\?xml\s[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")
# The prolog before the root element: declaration, white space, comments, PIs.
_PROLOG_ITEM = re.compile(rb"\s+|<!--.*?-->|<\?.*?\?>", re.DOTALL)


class _RefuseExternal(etree.Resolver):  # type: ignore[misc]
    """Refuses every external load a message could ask for (DTDs, entities, XInclude)."""

    def resolve(self, system_url: str, public_id: str, context: Any) -> Any:
        raise MalformedXml(f"external resource {system_url!r} refused; no external loads")


class _SchemaFolderOnly(etree.Resolver):  # type: ignore[misc]
    """Lets schema imports reach files inside one folder, and nothing else."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self._folder = folder.resolve()

    def resolve(self, system_url: str, public_id: str, context: Any) -> Any:
        url = system_url.removeprefix("file://")
        if "://" in url:
            raise OSError(f"schema import {system_url!r} refused: network loads are disabled")
        target = Path(url).resolve()
        if not target.is_relative_to(self._folder):
            raise OSError(f"schema import {system_url!r} refused: outside {self._folder}")
        return self.resolve_filename(str(target), context)


def _new_parser() -> etree.XMLParser:
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=False,  # comments stay: exc-c14n drops them, values ignore them
        remove_pis=False,
        strip_cdata=True,
        collect_ids=False,
        encoding="utf-8",
    )
    parser.resolvers.add(_RefuseExternal())
    return parser


# lxml parser objects must not be shared between threads; one per thread.
_local = threading.local()


def _parser() -> etree.XMLParser:
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = _new_parser()
        _local.parser = parser
    return parser


def _check_encoding(data: bytes) -> None:
    if data.startswith(_FOREIGN_STARTS):
        raise MalformedXml("line 1: only UTF-8 is accepted (UTF-16/UTF-32 byte order found)")
    if b"\x00" in data:
        raise MalformedXml("NUL byte in the body: only UTF-8 XML is accepted")
    head = data[:512]
    match = _XML_DECL.match(head.removeprefix(_UTF8_BOM))
    if match and match.group(1).lower() not in (b"utf-8", b"utf8"):
        declared = match.group(1).decode("ascii", "replace")
        raise MalformedXml(f"line 1: encoding {declared!r} declared; only UTF-8 is accepted")


def _check_no_doctype(data: bytes) -> None:
    pos = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0
    while True:
        match = _PROLOG_ITEM.match(data, pos)
        if match is None or match.end() == pos:
            break
        pos = match.end()
    if data.startswith(b"<!DOCTYPE", pos) or data.startswith(b"<!doctype", pos):
        line = data.count(b"\n", 0, pos) + 1
        raise MalformedXml(f"line {line}: DOCTYPE refused; DTDs and entities are not allowed")


@functools.cache
def _too_deep(max_depth: int) -> etree.XPath:
    """An XPath that finds any element at depth max_depth + 1 (evaluated in libxml2)."""
    return etree.XPath("/" + "*/" * max_depth + "*")


def check_limits(root: etree._Element, limits: XmlLimits) -> None:
    """Raise MALFORMED_XML when the tree exceeds a limit or holds an XInclude element.

    XInclude is never processed; an ``xi:include`` is refused rather than passed on, so no
    consumer further down (or at a destination) can be tricked into processing it.
    Depth is checked by one XPath in libxml2; a Python ``iterwalk`` with start/end events cost
    four times as much on a 10 KB message.
    """
    too_deep = _too_deep(limits.max_depth)(root)
    if too_deep:
        raise MalformedXml(
            f"line {too_deep[0].sourceline}: nesting deeper than {limits.max_depth} elements"
        )
    elements = 0
    for element in root.iter():
        elements += 1
        if elements > limits.max_elements:
            raise MalformedXml(
                f"line {element.sourceline}: more than {limits.max_elements} elements"
            )
        tag = element.tag
        if not isinstance(tag, str):
            continue  # comments and processing instructions have no attributes
        if tag.startswith(_XINCLUDE):
            raise MalformedXml(f"line {element.sourceline}: XInclude is not allowed")
        if len(element.attrib) > limits.max_attributes:
            raise MalformedXml(
                f"line {element.sourceline}: element {etree.QName(element).localname} has "
                f"{len(element.attrib)} attributes, more than {limits.max_attributes}"
            )


def parse(data: bytes, limits: XmlLimits = DEFAULT_LIMITS) -> etree._Element:
    """Turn a message body into a tree, or raise TOO_LARGE / MALFORMED_XML saying where."""
    if len(data) > limits.max_bytes:
        raise TooLarge(f"body of {len(data)} bytes exceeds the limit of {limits.max_bytes}")
    if not data.strip():
        raise MalformedXml("empty body: an XML document is expected")
    _check_encoding(data)
    _check_no_doctype(data)
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        line = exc.lineno or "?"
        raise MalformedXml(f"line {line}: {exc.msg}") from exc
    except MalformedXml:
        raise
    except (etree.LxmlError, ValueError) as exc:  # pragma: no cover - libxml2 oddities
        raise MalformedXml(f"not parseable XML: {exc}") from exc
    if root is None:  # pragma: no cover - lxml returns None only with recover=True
        raise MalformedXml("no document element")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise MalformedXml("DOCTYPE refused; DTDs and entities are not allowed")
    check_limits(root, limits)
    return root


def parse_schema_file(path: Path, folder: Path) -> etree._ElementTree:
    """Read one XSD from the schema folder; its imports may only reach that folder."""
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    parser.resolvers.add(_SchemaFolderOnly(folder))
    return etree.parse(str(path), parser)


def text_value(element: etree._Element) -> str:
    """The character content of a simple element as exc-c14n sees it.

    All direct text nodes joined — the element's text and the tail of each child — so a comment
    inside a signed value is skipped rather than truncating the value at the comment (which is
    what ``element.text`` alone would do).
    """
    parts = [element.text or ""]
    parts.extend(child.tail or "" for child in element)
    return "".join(parts)


def c14n(element: etree._Element, inclusive_prefixes: tuple[str, ...] = ()) -> bytes:
    """Exclusive XML canonicalisation without comments of one element in its document."""
    canonical: bytes = etree.tostring(
        element,
        method="c14n",
        exclusive=True,
        with_comments=False,
        inclusive_ns_prefixes=list(inclusive_prefixes) or None,
    )
    return canonical
