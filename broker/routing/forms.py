"""The well-formed values of SPEC §1 as automata, so a glob can be checked against them.

A rule glob or participant address that cannot match any well-formed value is an error of the
table (it would silently never match). Over-approximations are fine here — the check must never
reject a glob that could match — so the Action's "same process in every part" rule and the
unbounded version number are relaxed.
"""

from __future__ import annotations

from broker.envelope import MEMBER_SEGMENTS, SIGNALS
from broker.routing.globs import Nfa, Pattern, alt, charset, lit, opt, plus, rep, seq

_UPPER = charset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGIT = charset("0123456789")

_PROCESS = seq(lit("P."), rep(_UPPER, 2), lit("."), rep(_DIGIT, 2))
_SUFFIX_CHAR = charset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
# envelope.PARTICIPANT_RE as an automaton; tests/routing/test_forms.py holds the two equal.
_PARTICIPANT = seq(
    lit("P"),
    opt(seq(lit("."), rep(_UPPER, 2), lit("."), rep(_DIGIT, 2))),
    lit(".ACT."),
    rep(_DIGIT, 3),
    opt(plus(_SUFFIX_CHAR, 4)),
)


def _coded(kind: str) -> Pattern:
    return seq(_PROCESS, lit(f".{kind}."), rep(_DIGIT, 3))


_VERSION = seq(
    plus(_DIGIT, 6),
    opt(seq(lit("."), plus(_DIGIT, 6))),
    opt(seq(lit("."), plus(_DIGIT, 6))),
    opt(seq(lit("."), plus(_DIGIT, 6))),
)

ADDRESS: Nfa = seq(
    lit("EAEU://"),
    alt(*(lit(s) for s in MEMBER_SEGMENTS)),
    lit("/CP/"),
    _PROCESS,
    lit("/"),
    _PARTICIPANT,
).nfa()

ACTION: Nfa = seq(
    lit("int://CP/"),
    _PROCESS,
    lit("/"),
    _VERSION,
    lit("/"),
    _coded("PRC"),
    lit("/"),
    _coded("TRN"),
    lit("/"),
    alt(_coded("MSG"), seq(lit("P.MSG."), alt(lit("RCV"), lit("PRS"), lit("ERR")))),
).nfa()

_EDOC_CODE = seq(
    lit("R"),
    opt(seq(lit("."), rep(_UPPER, 2), lit("."), rep(_UPPER, 2), lit("."), rep(_DIGIT, 2))),
    lit("."),
    rep(_DIGIT, 3),
)
EDOC_CODE: Nfa = _EDOC_CODE.nfa()

# What a rule's `document` matches: an EDocCode, or a signal's code (SPEC §1).
DOCUMENT: Nfa = alt(_EDOC_CODE, *(lit(code) for code in SIGNALS.values())).nfa()
