"""docs/conformance.md lists exactly the criteria broker/conformance/criteria.py scores."""

from __future__ import annotations

import re

from broker.conformance.criteria import INBOX, SENDER
from tests.conftest import ROOT


def test_the_documented_criteria_are_the_scored_ones() -> None:
    text = (ROOT / "docs" / "conformance.md").read_text()
    documented = re.findall(r"^\| `([a-z-]+)` \|", text, flags=re.MULTILINE)
    assert documented == [c.id for c in (*INBOX, *SENDER)]
    for criterion in (*INBOX, *SENDER):
        assert criterion.rule in text
