"""The routing table (SPEC §6) as frozen values, and the matcher: first matching rule wins.

A rule matches on four facts of a verified message — ``action`` (wsa:Action), ``document``
(EDocCode), ``from`` (the sender participant id) and ``to`` (wsa:To) — each a glob or list of
globs; an absent key matches anything. It then either rejects (ROUTE_DENIED with its reason) or
delivers: to ``addressee`` (the one participant whose ``addresses`` match wsa:To) or to a list.

A ``deliver`` list holds participant ids and globs over ids. A glob fans out to every participant
it matches **except the sender**, so "every other state" is ``deliver: ["*"]``; a participant
named literally is delivered to even when it is the sender, because the table says so explicitly.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from broker.errors import NoRoute, RouteDenied
from broker.routing.globs import Glob, Nfa, union

MATCH_KEYS = ("action", "document", "from", "to")
MatchKey = Literal["action", "document", "from", "to"]
Coverage = Literal["full", "body"]


@dataclass(frozen=True)
class GlobList:
    """One or more globs; matches when any of them does."""

    globs: tuple[Glob, ...]

    def matches(self, value: str) -> bool:
        return any(g.matches(value) for g in self.globs)

    @functools.cached_property
    def nfa(self) -> Nfa:
        """One automaton for the whole list (built once; the table checks ask it often)."""
        return union([g.nfa for g in self.globs])

    def __str__(self) -> str:
        texts = [g.text for g in self.globs]
        return texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"


@dataclass(frozen=True)
class RetryPolicy:
    """How one rule's deliveries are retried (SPEC §6, §7). Durations in seconds."""

    attempts: int = 12
    """Most delivery attempts per destination, the first included."""
    initial: float = 2.0
    """Upper bound of the delay before the first retry (full jitter doubles it each retry)."""
    max: float = 600.0
    """Cap on the jitter bound; a destination's Retry-After may exceed it."""
    ttl: float = 86_400.0
    """Time from acceptance after which delivery gives up (DELIVERY_EXPIRED)."""

    def describe(self) -> str:
        return (
            f"attempts {self.attempts}, initial {format_duration(self.initial)}, "
            f"max {format_duration(self.max)}, ttl {format_duration(self.ttl)}"
        )


DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True)
class Retention:
    """How long a finished message's stored data is kept (SPEC §6), in seconds; None: for
    ever. ``bodies``: its stored envelopes (received and forwarded); ``receipts``: its
    receipts and status. The audit chain is never purged."""

    bodies: float | None = None
    receipts: float | None = None

    def over(self, default: Retention) -> Retention:
        """This (a route's) retention, each period not given taken from ``default``."""
        return Retention(
            default.bodies if self.bodies is None else self.bodies,
            default.receipts if self.receipts is None else self.receipts,
        )

    def describe(self) -> str:
        def text(value: float | None) -> str:
            return "for ever" if value is None else format_duration(value)

        return f"bodies {text(self.bodies)}, receipts {text(self.receipts)}"


def format_duration(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds * 1000:g}ms"


@dataclass(frozen=True)
class Participant:
    """A member-state system: its country, the addresses it serves, where to deliver."""

    id: str
    country: str
    addresses: GlobList
    endpoint: str
    receipts: str | None
    pins: frozenset[str]
    """Lower-case hex SHA-256 of the DER certificates it may use; empty → subject CN == id."""
    line: int = 0
    signature: Coverage = "full"
    """What its signature must cover (SPEC §2): ``full`` (Body and every header) or ``body``
    (Body only, its headers vouched for by its TLS identity)."""


@dataclass(frozen=True)
class Rule:
    name: str
    match: Mapping[str, GlobList]
    deliver: Literal["addressee"] | tuple[Glob, ...] | None
    reject: str | None
    retry: RetryPolicy
    line: int = 0
    retention: Retention | None = None
    """Its own retention, if it gives one (each period it leaves out is the table's)."""


@dataclass(frozen=True)
class RouteFacts:
    """What a rule matches on, read from the verified message."""

    action: str
    document: str
    sender: str
    to: str

    def get(self, key: str) -> str:
        return {
            "action": self.action,
            "document": self.document,
            "from": self.sender,
            "to": self.to,
        }[key]


@dataclass(frozen=True)
class Decision:
    """The matched rule and the destinations it resolved to."""

    rule: Rule
    destinations: tuple[Participant, ...]


@dataclass(frozen=True)
class RoutingTable:
    gateway_id: str
    participants: Mapping[str, Participant]
    rules: tuple[Rule, ...]
    digest: str
    """Hex SHA-256 of the routing.yaml bytes this table was loaded from."""
    source: str = "routing.yaml"
    retention: Retention = Retention()
    """The table's retention (top level), which a rule's own overrides."""

    def first_mismatch(self, rule: Rule, facts: RouteFacts) -> str | None:
        """The first condition of ``rule`` that ``facts`` fail, or None if the rule matches."""
        for key in MATCH_KEYS:
            globs = rule.match.get(key)
            if globs is not None and not globs.matches(facts.get(key)):
                return f"{key} {facts.get(key)!r} does not match {globs}"
        return None

    def addressee(self, to: str) -> Participant | None:
        # The table check guarantees at most one participant can serve an address that an
        # ``addressee`` rule lets through.
        return next((p for p in self.participants.values() if p.addresses.matches(to)), None)

    def resolve(self, rule: Rule, facts: RouteFacts) -> tuple[Participant, ...]:
        if rule.deliver == "addressee":
            participant = self.addressee(facts.to)
            if participant is None:
                raise NoRoute(f"rule {rule.name!r}: no participant serves address {facts.to}")
            return (participant,)
        assert rule.deliver is not None
        # Table order, whatever the order of the deliver list.
        chosen = [
            participant
            for pid, participant in self.participants.items()
            if any(
                (glob.text == pid)
                if glob.is_literal
                else (pid != facts.sender and glob.matches(pid))
                for glob in rule.deliver
            )
        ]
        if not chosen:
            raise NoRoute(f"rule {rule.name!r} leaves no destination for sender {facts.sender}")
        return tuple(chosen)

    def route(self, facts: RouteFacts) -> Decision:
        """First rule that matches wins; NO_ROUTE when none does, ROUTE_DENIED on reject."""
        for rule in self.rules:
            if self.first_mismatch(rule, facts) is not None:
                continue
            if rule.reject is not None:
                raise RouteDenied(f"rule {rule.name!r}: {rule.reject}")
            return Decision(rule, self.resolve(rule, facts))
        raise NoRoute(
            f"no rule matches action {facts.action}, document {facts.document}, "
            f"from {facts.sender}, to {facts.to}"
        )

    def participant_for_address(self, address: str) -> Participant | None:
        """The participant serving a logical address (used to guess a sender offline)."""
        matches = [p for p in self.participants.values() if p.addresses.matches(address)]
        return matches[0] if len(matches) == 1 else None
