"""Glob parsing, matching, and the inclusion/intersection answers, checked by brute force."""

from __future__ import annotations

import fnmatch
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.routing import forms
from broker.routing.globs import EVERYTHING, GlobError, compile_glob, intersects, is_subset

# Globs over {a, b, /}; strings also use 'c', a character no glob names explicitly.
_TOKENS = ["a", "b", "/", "?", "*", "[ab]", "[!a]", "[a-b]"]
globs = st.lists(st.sampled_from(_TOKENS), max_size=4).map("".join)
STRINGS = ["".join(p) for n in range(8) for p in itertools.product("ab/c", repeat=n)]


@settings(max_examples=300, deadline=None)
@given(globs, st.text(alphabet="ab/c", max_size=8))
def test_matching_agrees_with_fnmatch(glob: str, value: str) -> None:
    """For the syntax both share, our matcher and fnmatchcase agree."""
    assert compile_glob(glob).matches(value) == fnmatch.fnmatchcase(value, glob)


@settings(max_examples=200, deadline=None)
@given(globs, globs)
def test_is_subset_agrees_with_enumeration(a: str, b: str) -> None:
    """is_subset(a, b) holds exactly when no short string matches a but not b."""
    ga, gb = compile_glob(a), compile_glob(b)
    brute = all(gb.matches(s) for s in STRINGS if ga.matches(s))
    assert is_subset(ga.nfa, gb.nfa) == brute


@settings(max_examples=200, deadline=None)
@given(globs, globs)
def test_intersects_agrees_with_enumeration(a: str, b: str) -> None:
    """intersects(a, b) holds exactly when some short string matches both."""
    ga, gb = compile_glob(a), compile_glob(b)
    brute = any(ga.matches(s) and gb.matches(s) for s in STRINGS)
    assert intersects(ga.nfa, gb.nfa) == brute


def test_star_crosses_slashes() -> None:
    """'*' matches any run of characters, '/' included (SPEC §6)."""
    assert compile_glob("EAEU://*/CP/P.TS.01/*").matches("EAEU://RU/CP/P.TS.01/P.TS.01.ACT.002")
    assert compile_glob("int://CP/*").matches("int://CP/P.TS.01/1.0.1/a/b/c")


def test_matching_is_case_sensitive_and_whole_value() -> None:
    """Globs are case-sensitive and must match the whole value."""
    glob = compile_glob("KZ-*")
    assert glob.matches("KZ-SW")
    assert not glob.matches("kz-SW")
    assert not glob.matches("XKZ-SW")


@pytest.mark.parametrize("bad", ["[abc", "[]", "[!]", "[z-a]", "x[\u0000-\uffff]"])
def test_malformed_globs_are_errors(bad: str) -> None:
    """Unclosed, empty, reversed or absurdly wide classes are errors, not literals."""
    with pytest.raises(GlobError):
        compile_glob(bad)


def test_class_with_leading_bracket() -> None:
    """']' first in a class is a literal member."""
    assert compile_glob("[]x]").matches("]")
    assert compile_glob("[!]x]").matches("a")
    assert not compile_glob("[!]x]").matches("]")


@pytest.mark.parametrize(
    ("glob", "form", "expected"),
    [
        ("EAEU://KZ/*", forms.ADDRESS, True),
        ("EAEU://XX/*", forms.ADDRESS, False),
        ("EAEU://KZ/CA/*", forms.ADDRESS, False),
        ("https://kz/*", forms.ADDRESS, False),
        ("int://CP/P.TS.01/*", forms.ACTION, True),
        ("int://CP/P.TS.1/*", forms.ACTION, False),
        ("*/P.MSG.ERR", forms.ACTION, True),
        ("R.TR.TS.01.*", forms.EDOC_CODE, True),
        ("R.055", forms.EDOC_CODE, True),
        ("R.55", forms.EDOC_CODE, False),
    ],
)
def test_well_formed_value_languages(glob: str, form: object, expected: bool) -> None:
    """A glob is checked against the SPEC §1 form of the value it matches."""
    assert intersects(compile_glob(glob).nfa, form) == expected  # type: ignore[arg-type]


def test_everything_is_only_contained_in_star() -> None:
    """An absent match key (everything) is contained only in a universal glob."""
    assert is_subset(EVERYTHING, compile_glob("*").nfa)
    assert not is_subset(EVERYTHING, compile_glob("?*").nfa)
