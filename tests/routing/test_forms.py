"""The SPEC §1 grammar lives twice — envelope.py's regexes (what the gateway accepts) and
routing/forms.py's automata (what routing check judges a glob against): these tests hold the
two languages equal."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from broker import envelope
from broker.routing import forms
from broker.routing.globs import Nfa


def accepts(nfa: Nfa, value: str) -> bool:
    states = nfa.closure([nfa.start])
    for char in value:
        states = nfa.step(states, char)
        if not states:
            return False
    return bool(states & nfa.accepting)


PAIRS = [(envelope.ADDRESS, forms.ADDRESS), (envelope.EDOC_CODE, forms.EDOC_CODE)]


def _near(pattern: re.Pattern[str]) -> st.SearchStrategy[str]:
    """Well-formed values and small edits of them: the boundary where the two could differ."""
    base = st.from_regex(pattern, fullmatch=True)
    alphabet = st.sampled_from("PACT.0123456789ZKR/:EU-_a")
    edits = st.tuples(base, st.integers(0, 40), alphabet, st.sampled_from(["ins", "del", "set"]))

    def apply(item: tuple[str, int, str, str]) -> str:
        text, at, char, how = item
        at = min(at, len(text))
        if how == "ins":
            return text[:at] + char + text[at:]
        if how == "del":
            return text[:at] + text[at + 1 :]
        return text[:at] + char + text[at + 1 :]

    return st.one_of(base, edits.map(apply))


@given(_near(envelope.ADDRESS))
def test_address_regex_and_automaton_agree(value: str) -> None:
    """A logical address is well formed for the envelope exactly when routing thinks so."""
    assert bool(envelope.ADDRESS.fullmatch(value)) == accepts(forms.ADDRESS, value)


@given(_near(envelope.EDOC_CODE))
def test_edoc_code_regex_and_automaton_agree(value: str) -> None:
    """An EDocCode is well formed for the envelope exactly when routing thinks so."""
    assert bool(envelope.EDOC_CODE.fullmatch(value)) == accepts(forms.EDOC_CODE, value)


def test_suffixed_participant_codes_are_addresses() -> None:
    """Real codes carry up to four letters or digits after the number (SPEC v1.1 §1)."""
    for code in ("P.ACT.001", "P.CC.05.ACT.022AT", "P.TS.01.ACT.0021234"):
        value = f"EAEU://EEC/CP/P.CC.05/{code}"
        assert envelope.ADDRESS.fullmatch(value)
        assert accepts(forms.ADDRESS, value)
    too_long = "EAEU://EEC/CP/P.CC.05/P.CC.05.ACT.022ABCDE"
    assert not envelope.ADDRESS.fullmatch(too_long)
    assert not accepts(forms.ADDRESS, too_long)
