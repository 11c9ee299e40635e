"""Why a message goes where it goes: every rule tried in order, the first that matches, and
what it resolves to. `broker routing explain` prints it; the console shows it."""

from __future__ import annotations

from dataclasses import dataclass

from broker.errors import RefusalError
from broker.routing.table import Participant, RouteFacts, RoutingTable, Rule


@dataclass(frozen=True)
class Verdict:
    rule: Rule
    mismatch: str | None
    """The first condition the facts fail, or None: this rule matches."""


@dataclass(frozen=True)
class Explanation:
    facts: RouteFacts
    verdicts: tuple[Verdict, ...]
    """The rules tried, in table order, up to and including the one that matched."""
    destinations: tuple[Participant, ...] = ()
    refusal: str | None = None
    """``CODE: reason`` when the message would be refused (NO_ROUTE, ROUTE_DENIED)."""

    @property
    def rule(self) -> Rule | None:
        last = self.verdicts[-1] if self.verdicts else None
        return last.rule if last is not None and last.mismatch is None else None


def explain(table: RoutingTable, facts: RouteFacts) -> Explanation:
    """The same decision as :meth:`RoutingTable.route`, with the reasons."""
    verdicts: list[Verdict] = []
    for rule in table.rules:
        mismatch = table.first_mismatch(rule, facts)
        verdicts.append(Verdict(rule, mismatch))
        if mismatch is not None:
            continue
        if rule.reject is not None:
            return Explanation(facts, tuple(verdicts), refusal=f"ROUTE_DENIED: {rule.reject}")
        try:
            destinations = table.resolve(rule, facts)
        except RefusalError as exc:
            return Explanation(facts, tuple(verdicts), refusal=f"{exc.code}: {exc.message}")
        return Explanation(facts, tuple(verdicts), destinations)
    return Explanation(facts, tuple(verdicts), refusal="NO_ROUTE: no rule matches")
