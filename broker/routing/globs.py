"""Shell-style globs (SPEC §6) and the language arithmetic the table checks need.

A glob is parsed once into tokens; the tokens compile to a regular expression for matching and
to a small NFA for analysis. The analysis answers, exactly and for all strings:

* ``is_subset(a, b)`` — does every string ``a`` matches also match ``b``? (shadowed rules)
* ``intersects(a, b, …)`` — is there one string all of them match? (ambiguous ``addressee``,
  a glob that cannot match any well-formed value)

Both walk the product of the automata' subset constructions over a finite alphabet: every
character named anywhere in the patterns, plus one representative of "any other character"
(all such characters behave alike in every pattern). Patterns are small, so this is quick.

Glob syntax: ``*`` any run of characters (``/`` included), ``?`` one character, ``[abc]``,
``[a-z]``, ``[!…]`` (negated); ``]`` first in a class is literal. An unclosed or empty class is
an error rather than a literal ``[`` (fnmatch's choice), so a typo cannot silently match nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

MAX_RANGE = 512  # characters one [a-z] range may span; more is surely a typo


class GlobError(ValueError):
    """A malformed glob; the message says what is wrong."""


@dataclass(frozen=True)
class CharSet:
    """A set of characters: ``chars``, or everything but ``chars`` when ``negated``."""

    chars: frozenset[str]
    negated: bool = False

    def __contains__(self, char: str) -> bool:
        return (char in self.chars) != self.negated


ANY = CharSet(frozenset(), negated=True)


@dataclass(frozen=True)
class Token:
    """One glob position: a character set, repeated any number of times when ``star``."""

    charset: CharSet
    star: bool = False


@dataclass(frozen=True)
class Glob:
    """A parsed glob: its text, a compiled regex for matching, and its NFA for analysis."""

    text: str
    regex: re.Pattern[str] = field(compare=False)
    nfa: Nfa = field(compare=False, repr=False)

    def matches(self, value: str) -> bool:
        return self.regex.fullmatch(value) is not None

    @property
    def is_literal(self) -> bool:
        return not any(c in self.text for c in "*?[")


def _parse_class(text: str, start: int) -> tuple[CharSet, int]:
    """Parse ``[…]`` beginning at ``start`` (the '['); return the set and the index after ']'."""
    i = start + 1
    negated = i < len(text) and text[i] == "!"
    if negated:
        i += 1
    chars: set[str] = set()
    first = True
    while i < len(text) and (text[i] != "]" or first):
        first = False
        if i + 2 < len(text) and text[i + 1] == "-" and text[i + 2] != "]":
            low, high = text[i], text[i + 2]
            if ord(high) < ord(low):
                raise GlobError(f"range {low}-{high} is reversed in {text!r}")
            if ord(high) - ord(low) > MAX_RANGE:
                raise GlobError(f"range {low}-{high} is too wide in {text!r}")
            chars.update(chr(c) for c in range(ord(low), ord(high) + 1))
            i += 3
        else:
            chars.add(text[i])
            i += 1
    if i >= len(text):
        raise GlobError(f"unclosed '[' at position {start + 1} in {text!r}")
    if not chars:
        raise GlobError(f"empty character class at position {start + 1} in {text!r}")
    return CharSet(frozenset(chars), negated), i + 1


def tokenize(text: str) -> tuple[Token, ...]:
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "*":
            if not (tokens and tokens[-1].star and tokens[-1].charset == ANY):
                tokens.append(Token(ANY, star=True))  # '**' is the same as '*'
            i += 1
        elif char == "?":
            tokens.append(Token(ANY))
            i += 1
        elif char == "[":
            charset, i = _parse_class(text, i)
            tokens.append(Token(charset))
        else:
            tokens.append(Token(CharSet(frozenset(char))))
            i += 1
    return tuple(tokens)


def _regex(tokens: Sequence[Token]) -> re.Pattern[str]:
    parts: list[str] = []
    for token in tokens:
        if token.charset == ANY:
            parts.append("(?s:.)")
        else:
            body = "".join(re.escape(c) for c in sorted(token.charset.chars))
            parts.append(f"[{'^' if token.charset.negated else ''}{body}]")
        if token.star:
            parts[-1] += "*"
    return re.compile("".join(parts), re.DOTALL)


def compile_glob(text: str) -> Glob:
    """Parse a glob; raises GlobError when it is malformed."""
    tokens = tokenize(text)
    return Glob(text, _regex(tokens), Nfa.from_tokens(tokens))


# --- automata -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Nfa:
    """A nondeterministic automaton with ε-moves; states are 0..n-1."""

    start: int
    accepting: frozenset[int]
    moves: tuple[tuple[tuple[CharSet, int], ...], ...]
    epsilon: tuple[tuple[int, ...], ...]
    # Memo of step(); kept on the automaton so the well-formed-value automata, which every table
    # check reuses, are determinised once per process rather than once per question.
    _steps: dict[tuple[frozenset[int], str], frozenset[int]] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

    @classmethod
    def from_tokens(cls, tokens: Sequence[Token]) -> Nfa:
        builder = _Builder()
        start = builder.state()
        end = start
        for token in tokens:
            if token.star:
                builder.move(end, token.charset, end)
                nxt = builder.state()
                builder.eps(end, nxt)
            else:
                nxt = builder.state()
                builder.move(end, token.charset, nxt)
            end = nxt
        return builder.build(start, {end})

    def charsets(self) -> Iterable[CharSet]:
        for moves in self.moves:
            for charset, _ in moves:
                yield charset

    def closure(self, states: Iterable[int]) -> frozenset[int]:
        stack = list(states)
        seen = set(stack)
        while stack:
            for nxt in self.epsilon[stack.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return frozenset(seen)

    def step(self, states: frozenset[int], char: str) -> frozenset[int]:
        key = (states, char)
        found = self._steps.get(key)
        if found is None:
            found = self.closure(
                target for s in states for charset, target in self.moves[s] if char in charset
            )
            self._steps[key] = found
        return found


class _Builder:
    def __init__(self) -> None:
        self._moves: list[list[tuple[CharSet, int]]] = []
        self._eps: list[list[int]] = []

    def state(self) -> int:
        self._moves.append([])
        self._eps.append([])
        return len(self._moves) - 1

    def move(self, src: int, charset: CharSet, dst: int) -> None:
        self._moves[src].append((charset, dst))

    def eps(self, src: int, dst: int) -> None:
        self._eps[src].append(dst)

    def build(self, start: int, accepting: set[int]) -> Nfa:
        return Nfa(
            start,
            frozenset(accepting),
            tuple(tuple(m) for m in self._moves),
            tuple(tuple(e) for e in self._eps),
        )


# A tiny pattern language for the well-formed values of SPEC §1, built from combinators so the
# same automata arithmetic can intersect a glob with "every valid address".
@dataclass(frozen=True)
class Pattern:
    """A regular pattern: ``emit(builder, start)`` wires it in and returns its end state."""

    parts: tuple[object, ...]
    kind: str

    def emit(self, b: _Builder, start: int) -> int:
        if self.kind == "set":
            (charset,) = self.parts
            assert isinstance(charset, CharSet)
            end = b.state()
            b.move(start, charset, end)
            return end
        if self.kind == "seq":
            end = start
            for part in self.parts:
                assert isinstance(part, Pattern)
                end = part.emit(b, end)
            return end
        if self.kind == "alt":
            end = b.state()
            for part in self.parts:
                assert isinstance(part, Pattern)
                b.eps(part.emit(b, start), end)
            return end
        if self.kind == "opt":
            (inner,) = self.parts
            assert isinstance(inner, Pattern)
            end = inner.emit(b, start)
            b.eps(start, end)
            return end
        raise AssertionError(self.kind)  # pragma: no cover

    def nfa(self) -> Nfa:
        b = _Builder()
        start = b.state()
        return b.build(start, {self.emit(b, start)})


def lit(text: str) -> Pattern:
    return Pattern(tuple(Pattern((CharSet(frozenset(c)),), "set") for c in text), "seq")


def charset(chars: str) -> Pattern:
    return Pattern((CharSet(frozenset(chars)),), "set")


def seq(*parts: Pattern) -> Pattern:
    return Pattern(parts, "seq")


def alt(*parts: Pattern) -> Pattern:
    return Pattern(parts, "alt")


def opt(part: Pattern) -> Pattern:
    return Pattern((part,), "opt")


def rep(part: Pattern, count: int) -> Pattern:
    return Pattern((part,) * count, "seq")


def plus(part: Pattern, at_most: int) -> Pattern:
    """One to ``at_most`` repetitions (bounded, which is all the §1 forms need)."""
    return seq(part, *(opt(part) for _ in range(at_most - 1)))


# --- questions --------------------------------------------------------------------------------


def _alphabet(nfas: Sequence[Nfa]) -> list[str]:
    """One representative character per class of characters that every automaton treats alike.

    Two characters belonging to exactly the same character sets cannot be told apart by any of
    the automata, so exploring one of them is enough. This folds [A-Z] and [0-9] into a few
    classes and keeps the product exploration small.
    """
    sets = list(dict.fromkeys(cs for nfa in nfas for cs in nfa.charsets()))
    named: set[str] = set()
    for cs in sets:
        named.update(cs.chars)
    other = next(chr(c) for c in range(0x2400, 0x10FFFF) if chr(c) not in named)
    representatives: dict[tuple[bool, ...], str] = {}
    for char in [*sorted(named), other]:
        representatives.setdefault(tuple(char in cs for cs in sets), char)
    return list(representatives.values())


def _explore(nfas: Sequence[Nfa], alive: int) -> Iterable[tuple[frozenset[int], ...]]:
    """Every reachable tuple of subset-construction states of ``nfas`` run in lockstep.

    A tuple in which one of the first ``alive`` automata has no state left is not explored
    further: nothing that follows can be accepted by that automaton.
    """
    alphabet = _alphabet(nfas)
    first = tuple(n.closure([n.start]) for n in nfas)
    seen = {first}
    stack = [first]
    while stack:
        current = stack.pop()
        yield current
        for char in alphabet:
            nxt = tuple(n.step(s, char) for n, s in zip(nfas, current, strict=True))
            if nxt not in seen and all(nxt[:alive]):
                seen.add(nxt)
                stack.append(nxt)


def intersects(*nfas: Nfa) -> bool:
    """Is there one string every automaton accepts?"""
    for states in _explore(nfas, alive=len(nfas)):
        if all(s & n.accepting for n, s in zip(nfas, states, strict=True)):
            return True
    return False


def union(nfas: Sequence[Nfa]) -> Nfa:
    """One automaton accepting what any of ``nfas`` accepts."""
    b = _Builder()
    start = b.state()
    accepting: set[int] = set()
    for nfa in nfas:
        offset = len(b._moves)
        for _ in nfa.moves:
            b.state()
        for src, moves in enumerate(nfa.moves):
            for cs, dst in moves:
                b.move(src + offset, cs, dst + offset)
            for dst in nfa.epsilon[src]:
                b.eps(src + offset, dst + offset)
        b.eps(start, nfa.start + offset)
        accepting.update(a + offset for a in nfa.accepting)
    return b.build(start, accepting)


def is_subset(a: Nfa, b: Nfa) -> bool:
    """Does ``b`` accept every string ``a`` accepts?"""
    for sa, sb in _explore((a, b), alive=1):
        if sa & a.accepting and not sb & b.accepting:
            return False
    return True


EVERYTHING = Nfa.from_tokens((Token(ANY, star=True),))
