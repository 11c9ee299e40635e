"""When to try a destination again (SPEC §6, §7).

Before retry n the delay is uniform in [0, min(max, initial·2^(n−1))] ("full jitter"), or the
destination's ``Retry-After`` (seconds or HTTP-date), which may exceed ``max`` but never the ttl.
"""

from __future__ import annotations

import email.utils
import random
from dataclasses import dataclass

RETRYABLE_STATUS = frozenset({408, 425, 429}) | frozenset(range(500, 600))


def is_retryable(status: int) -> bool:
    return status in RETRYABLE_STATUS


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header, or None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True)
class Decision:
    """Retry at ``at`` (epoch seconds), or give up when ``at`` is None."""

    at: float | None
    reason: str = ""


def next_attempt(
    *,
    attempts: int,
    max_attempts: int,
    initial: float,
    max_delay: float,
    deadline: float,
    now: float,
    retry_after: float | None,
    rng: random.Random | None = None,
) -> Decision:
    """After ``attempts`` attempts, when to try again (or that it is time to give up)."""
    if attempts >= max_attempts:
        return Decision(None, f"gave up after {attempts} attempt(s)")
    if retry_after is not None:
        delay = retry_after
    else:
        bound = min(max_delay, initial * 2 ** (attempts - 1))
        delay = (rng or random).uniform(0, bound)
    if now + delay > deadline:
        return Decision(None, "the ttl ran out before the next attempt")
    return Decision(now + delay)
