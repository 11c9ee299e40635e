"""Who may start sending a body now (SPEC §7 busy answers): bounds no participant can take over.

A request is admitted before its body is read, against three bounds:

* **requests in flight** (all callers): past ``max_in_flight``, 503 + Retry-After;
* **bytes in flight**: the bodies being read or processed, reserved by their Content-Length
  (a chunked body reserves what it has sent so far, as it arrives): past ``body_budget``,
  503 + Retry-After, before memory can run away;
* **a fair share per participant**, once its TLS identity is known (it is, before the body):
  one participant may have at most ``per_participant`` requests in flight; past it, **429** +
  Retry-After for that participant while the others are served.

What protects the gateway *before* an identity is known — TLS handshakes and connections that
never send a request, or send their headers or body too slowly — are the listener's timeouts
(handshake, keep-alive, body idle and minimum data rate; see :class:`IntakeSettings`). Against
a participant's *own* flood, its fair share bounds what it can hold; what it sends within its
share is its own traffic, answered in turn.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str
    retry_after: int = 1


@dataclass
class Ticket:
    """An admitted request: release it when the request is done."""

    admission: Admission
    participant: str | None
    reserved: int = 0
    released: bool = False

    def reserve(self, more: int) -> Refusal | None:
        """Count ``more`` body bytes (a chunked body, as it arrives); a refusal past the budget."""
        admission = self.admission
        if admission.bytes + more > admission.body_budget:
            return admission.over_budget()
        admission.bytes += more
        self.reserved += more
        return None

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        admission = self.admission
        admission.requests -= 1
        admission.bytes -= self.reserved
        if self.participant is not None:
            admission.per[self.participant] -= 1


@dataclass
class Admission:
    max_in_flight: int
    body_budget: int
    per_participant: int
    requests: int = 0
    bytes: int = 0
    per: Counter[str] = field(default_factory=Counter)

    def over_budget(self) -> Refusal:
        return Refusal(
            503,
            "BUSY",
            f"too many bytes of messages in progress (budget {self.body_budget} bytes); "
            "nothing was stored, try again",
            1,
        )

    def admit(self, participant: str | None, declared: int | None) -> Ticket | Refusal:
        """Admit a request of ``participant`` (None: not identified) whose Content-Length is
        ``declared`` (None: chunked)."""
        if self.requests >= self.max_in_flight:
            return Refusal(503, "BUSY", "too many messages in progress; try again", 1)
        if participant is not None and self.per[participant] >= self.per_participant:
            return Refusal(
                429,
                "TOO_MANY_REQUESTS",
                f"{participant} has {self.per[participant]} messages in progress, its fair "
                f"share; send the next when one is answered",
                1,
            )
        if declared is not None and self.bytes + declared > self.body_budget:
            return self.over_budget()
        self.requests += 1
        if participant is not None:
            self.per[participant] += 1
        ticket = Ticket(self, participant)
        if declared:
            ticket.reserved = declared
            self.bytes += declared
        return ticket
