"""The offline stages of intake: bytes → parse → envelope → schema (what `broker validate` runs).

The whole ordered pipeline, with signature, routing, storage and receipts, is in
:mod:`broker.intake`; this module is the part that needs no keys, no table and no store.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker import xmlsafe
from broker.envelope import Envelope, parse_envelope
from broker.schemas import Catalog, CatalogEntry


@dataclass(frozen=True)
class Validated:
    """A message that passed the door, the envelope rules and its document schema."""

    raw: bytes
    envelope: Envelope
    entry: CatalogEntry


def check_document(
    data: bytes, catalog: Catalog, limits: xmlsafe.XmlLimits = xmlsafe.DEFAULT_LIMITS
) -> Validated:
    """SPEC §1 and §5 offline: door → envelope → schema. Raises the first §8 refusal."""
    root = xmlsafe.parse(data, limits)
    envelope = parse_envelope(root)
    entry = catalog.validate(envelope.document)
    return Validated(data, envelope, entry)
