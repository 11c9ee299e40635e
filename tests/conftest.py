"""Shared fixtures: the repository's folders, the compiled catalog, sample loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.schemas import Catalog

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
XSD = ROOT / "xsd"


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return Catalog.load(XSD)


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()
