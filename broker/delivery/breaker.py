"""Each destination on its own (SPEC §7): a cap on deliveries in flight per destination, and a
circuit breaker for a destination that does not answer.

A destination that accepts TCP and never answers, or refuses connections, would otherwise hold
every delivery slot while its attempts time out, and every other destination would wait
behind it. So:

* at most ``per_destination`` deliveries to one destination are in flight at once;
* after ``failures`` consecutive attempts that got no HTTP answer (connection refused or reset,
  timeout), the breaker **opens**: no job of that destination is claimed for ``cooldown``
  seconds (doubling on each re-opening, up to ``max_cooldown``). Its jobs keep their place
  and their SPEC §6 schedule; an open breaker only postpones them, and their ttl still holds;
* then it is **half-open**: one probe delivery; an HTTP answer (any status — the destination is
  reachable) closes it, no answer opens it again.

The worker asks :meth:`DestinationHealth.rooms` before each claim: the free slots of each
destination it knows (0 while saturated, open, or probing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

State = Literal["closed", "open", "half-open"]
STATE_VALUES: dict[State, int] = {"closed": 0, "open": 1, "half-open": 2}


@dataclass(frozen=True)
class BreakerPolicy:
    per_destination: int = 8
    """Deliveries in flight to one destination at once."""
    failures: int = 5
    """Consecutive unanswered attempts (refused, reset, timed out) that open the breaker."""
    cooldown: float = 5.0
    """Seconds the breaker stays open the first time; doubled on each re-opening."""
    max_cooldown: float = 300.0
    """Upper bound of the open period."""


@dataclass
class _Destination:
    in_flight: int = 0
    unanswered: int = 0
    open_until: float | None = None
    cooldown: float = 0.0
    probing: bool = False


@dataclass
class DestinationHealth:
    policy: BreakerPolicy = field(default_factory=BreakerPolicy)
    _known: dict[str, _Destination] = field(default_factory=dict)

    def _get(self, destination: str) -> _Destination:
        return self._known.setdefault(destination, _Destination())

    def state(self, destination: str, now: float) -> State:
        d = self._known.get(destination)
        if d is None or d.open_until is None:
            return "closed"
        return "open" if now < d.open_until else "half-open"

    def rooms(self, now: float) -> dict[str, int]:
        """Free delivery slots of every destination seen (the others have the default)."""
        rooms = {}
        for name, d in self._known.items():
            state = self.state(name, now)
            if state == "open" or (state == "half-open" and (d.probing or d.in_flight)):
                rooms[name] = 0
            elif state == "half-open":
                rooms[name] = 1
            else:
                rooms[name] = max(0, self.policy.per_destination - d.in_flight)
        return rooms

    def started(self, destination: str, now: float) -> None:
        d = self._get(destination)
        d.in_flight += 1
        if self.state(destination, now) == "half-open":
            d.probing = True

    def finished(self, destination: str, answered: bool | None, now: float) -> None:
        """Record an attempt's end: ``answered`` means an HTTP status came back; None means no
        attempt was made (the ttl had run out), which says nothing about the destination."""
        d = self._get(destination)
        d.in_flight = max(0, d.in_flight - 1)
        was_probe, d.probing = d.probing, False
        if answered is None:
            return
        if answered:
            d.unanswered, d.open_until, d.cooldown = 0, None, 0.0
            return
        d.unanswered += 1
        if was_probe or (d.open_until is None and d.unanswered >= self.policy.failures):
            d.cooldown = min(
                self.policy.max_cooldown,
                self.policy.cooldown if not d.cooldown else d.cooldown * 2,
            )
            d.open_until = now + d.cooldown

    def in_flight(self, destination: str) -> int:
        d = self._known.get(destination)
        return d.in_flight if d else 0

    def destinations(self) -> list[str]:
        return sorted(self._known)
