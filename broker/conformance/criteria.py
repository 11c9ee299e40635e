"""Every criterion a participant is scored against: its id, what it checks, the SPEC section
it comes from, and its verdict rule, in one place (docs/conformance.md is written from it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Verdict = Literal["PASS", "FAIL", "INFO"]


@dataclass(frozen=True)
class Criterion:
    id: str
    description: str
    spec: str
    rule: str


@dataclass(frozen=True)
class Result:
    criterion: Criterion
    verdict: Verdict
    reason: str


INBOX: tuple[Criterion, ...] = (
    Criterion(
        "tls-server-identity",
        "The inbox's TLS server certificate belongs to the participant",
        "SPEC §6",
        "PASS when it chains to a CA of the participant's country (certs/trust/<CC>/) and "
        "its subject CN is the participant id, or a pin matches",
    ),
    Criterion(
        "client-certificate-required",
        "A connection without the gateway's client certificate is refused",
        "SPEC §7",
        "PASS when the TLS handshake fails or the answer is not 2xx",
    ),
    Criterion(
        "valid-delivery-accepted",
        "A valid forwarded envelope is accepted",
        "SPEC §3, §7",
        "PASS on 2xx within --timeout",
    ),
    Criterion(
        "redelivery-accepted",
        "The same delivery again (same MessageID and TrackID) is accepted again",
        "SPEC §9 (at-least-once)",
        "PASS on 2xx",
    ),
    Criterion(
        "tampered-body-refused",
        "A delivery whose body changed after signing is refused",
        "SPEC §2, §3",
        "PASS on any answer but 2xx",
    ),
    Criterion(
        "broken-countersignature-refused",
        "A delivery whose gateway countersignature does not verify is refused",
        "SPEC §3",
        "PASS on any answer but 2xx",
    ),
    Criterion(
        "untrusted-sender-refused",
        "A delivery signed by a sender whose CA is not trusted is refused",
        "SPEC §2",
        "PASS on any answer but 2xx",
    ),
    Criterion(
        "missing-integration-refused",
        "A delivery without the gateway's int:Integration is refused",
        "SPEC §3",
        "PASS on any answer but 2xx",
    ),
    Criterion(
        "malformed-refused",
        "A body that is not XML is refused",
        "SPEC §1",
        "PASS on any answer but 2xx",
    ),
    Criterion(
        "answer-time",
        "How long the inbox takes to answer valid deliveries (p50 and maximum), and whether "
        "any Retry-After it gives is well formed",
        "SPEC §7",
        "PASS under 10 s p50, INFO from 10 to 30 s, FAIL at 30 s or more, or on a malformed "
        "Retry-After",
    ),
)

SENDER: tuple[Criterion, ...] = (
    Criterion(
        "acceptance-rate",
        "The share of its submissions the gateway accepted",
        "SPEC §7, §8",
        "PASS at 95 % accepted or more, FAIL below; INFO without submissions",
    ),
    Criterion(
        "rejections-by-code",
        "Its rejections, counted by SPEC §8 code",
        "SPEC §8",
        "INFO",
    ),
    Criterion(
        "keyinfo-forms",
        "The KeyInfo forms and signature algorithms it uses",
        "SPEC §2",
        "INFO",
    ),
    Criterion(
        "message-id-reuse",
        "A MessageID reused with another content (409 DUPLICATE_CONFLICT)",
        "SPEC §7",
        "PASS when none, FAIL otherwise; INFO without submissions",
    ),
    Criterion(
        "retry-after-honoured",
        "After a 429 or 503 with Retry-After, it waited that long before submitting again",
        "SPEC §7",
        "PASS when it always waited, FAIL when it came back sooner; INFO without busy answers",
    ),
    Criterion(
        "timestamp-skew",
        "The clock skew seen in its wsu:Timestamp Created",
        "SPEC §2",
        "PASS within 60 s, INFO beyond (the gateway refuses beyond 5 minutes); INFO without "
        "timestamps",
    ),
    Criterion(
        "documents-valid",
        "Its documents are valid (no SCHEMA_INVALID or UNKNOWN_DOCUMENT rejection)",
        "SPEC §5",
        "PASS when none was refused so, FAIL otherwise; INFO without submissions",
    ),
)

BY_ID = {c.id: c for c in (*INBOX, *SENDER)}


@dataclass
class Evaluation:
    """One evaluation of one participant: the report's content."""

    kind: Literal["inbox", "sender"]
    participant: str
    tested: dict[str, str]
    """What was evaluated: the ``Tested`` element's attributes and the report's header."""
    results: list[Result] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(r.verdict == "FAIL" for r in self.results)


def result(criterion_id: str, verdict: Verdict, reason: str) -> Result:
    return Result(BY_ID[criterion_id], verdict, reason)
