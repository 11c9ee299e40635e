"""`broker conformance sender PARTICIPANT [--since TIME]`: what a participant really submitted,
from the facts intake recorded per submission (store table ``submissions``), scored against
criteria.SENDER. Nothing is parsed again."""

from __future__ import annotations

import collections
from collections.abc import Sequence

from broker.conformance.criteria import Evaluation, Result, result
from broker.signing.algorithms import describe
from broker.store.base import Submission

ACCEPTED = {200, 202}
BUSY = {429, 503}
INVALID_DOCUMENTS = {"SCHEMA_INVALID", "UNKNOWN_DOCUMENT"}
SKEW_PASS = 60.0


def evaluate(participant: str, submissions: Sequence[Submission], since: str) -> Evaluation:
    report = Evaluation(
        "sender", participant, {"since": since, "submissions": str(len(submissions))}
    )
    answered = [s for s in submissions if s.status not in BUSY]
    report.results += [
        _acceptance(answered),
        _rejections(answered),
        _forms(answered),
        _reuse(answered),
        _retry_after(submissions),
        _skew(answered),
        _documents(answered),
    ]
    return report


def _acceptance(answered: Sequence[Submission]) -> Result:
    if not answered:
        return result("acceptance-rate", "INFO", "no submission answered with a receipt")
    accepted = sum(s.status in ACCEPTED for s in answered)
    share = accepted / len(answered)
    text = f"{accepted} of {len(answered)} accepted ({share:.1%})"
    return result("acceptance-rate", "PASS" if share >= 0.95 else "FAIL", text)


def _rejections(answered: Sequence[Submission]) -> Result:
    codes = collections.Counter(s.code for s in answered if s.status not in ACCEPTED)
    text = ", ".join(f"{code} {n}" for code, n in codes.most_common()) or "none"
    return result("rejections-by-code", "INFO", text)


def _forms(answered: Sequence[Submission]) -> Result:
    seen = collections.Counter(
        f"{s.keyinfo} / {describe(s.algorithm)}" for s in answered if s.keyinfo and s.algorithm
    )
    text = ", ".join(f"{form} ×{n}" for form, n in seen.most_common()) or "no accepted signature"
    return result("keyinfo-forms", "INFO", text)


def _reuse(answered: Sequence[Submission]) -> Result:
    if not answered:
        return result("message-id-reuse", "INFO", "no submission answered with a receipt")
    conflicts = sorted({s.message_id or "?" for s in answered if s.code == "DUPLICATE_CONFLICT"})
    if conflicts:
        return result(
            "message-id-reuse",
            "FAIL",
            f"{len(conflicts)} MessageID(s) reused with another content: "
            + ", ".join(conflicts[:3]),
        )
    return result("message-id-reuse", "PASS", "no MessageID reused with another content")


def _retry_after(submissions: Sequence[Submission]) -> Result:
    busy = [s for s in submissions if s.status in BUSY and s.retry_after is not None]
    if not busy:
        return result("retry-after-honoured", "INFO", "no busy answer (429/503) was given")
    early = 0
    for answer in busy:
        assert answer.retry_after is not None
        until = answer.at + answer.retry_after
        early += any(answer.at < s.at < until for s in submissions if s is not answer)
    if early:
        return result(
            "retry-after-honoured",
            "FAIL",
            f"came back sooner than Retry-After allowed after {early} of {len(busy)} busy answers",
        )
    return result(
        "retry-after-honoured", "PASS", f"waited out Retry-After after all {len(busy)} busy answers"
    )


def _skew(answered: Sequence[Submission]) -> Result:
    skews = [s.skew for s in answered if s.skew is not None]
    if not skews:
        return result("timestamp-skew", "INFO", "no wsu:Timestamp seen")
    worst = max(skews, key=abs)
    text = f"largest skew {worst:+.1f} s over {len(skews)} timestamps"
    return result("timestamp-skew", "PASS" if abs(worst) <= SKEW_PASS else "INFO", text)


def _documents(answered: Sequence[Submission]) -> Result:
    if not answered:
        return result("documents-valid", "INFO", "no submission answered with a receipt")
    invalid = [s for s in answered if s.code in INVALID_DOCUMENTS]
    if invalid:
        return result(
            "documents-valid", "FAIL", f"{len(invalid)} of {len(answered)} refused as invalid"
        )
    return result("documents-valid", "PASS", f"no invalid document in {len(answered)}")
