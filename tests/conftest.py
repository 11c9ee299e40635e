"""Shared fixtures: the repository's folders, the compiled catalog, a session PKI, xmlsec1."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from broker.schemas import Catalog
from tests.pki_support import Pki, build_test_pki

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
XSD = ROOT / "xsd"


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return Catalog.load(XSD)


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """One development PKI for the session, with the bad certificates of the attack tests."""
    return build_test_pki(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def xmlsec1() -> str:
    """The xmlsec1 command; CI sets BROKER_REQUIRE_XMLSEC=1 so these tests cannot skip there."""
    path = shutil.which("xmlsec1")
    if path is None:
        if os.environ.get("BROKER_REQUIRE_XMLSEC") == "1":
            pytest.fail("xmlsec1 is required (BROKER_REQUIRE_XMLSEC=1) but not installed")
        pytest.skip("xmlsec1 not installed (apt-get install xmlsec1)")
    return path


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()
