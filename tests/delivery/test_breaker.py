"""The per-destination cap and circuit breaker, step by step (broker/delivery/breaker.py)."""

from __future__ import annotations

from broker.delivery.breaker import BreakerPolicy, DestinationHealth

POLICY = BreakerPolicy(per_destination=3, failures=2, cooldown=10.0, max_cooldown=25.0)


def test_cap_per_destination() -> None:
    """Slots in flight are counted per destination; a full one has no room, the others do."""
    health = DestinationHealth(POLICY)
    for _ in range(3):
        health.started("RU-SW", 0.0)
    health.started("KZ-SW", 0.0)
    assert health.rooms(0.0) == {"RU-SW": 0, "KZ-SW": 2}
    health.finished("RU-SW", True, 1.0)
    assert health.rooms(1.0)["RU-SW"] == 1


def test_opens_after_consecutive_unanswered_attempts_then_probes() -> None:
    """Two unanswered attempts open it for the cooldown; then one probe; an answer closes it."""
    health = DestinationHealth(POLICY)
    for at in (0.0, 1.0):
        health.started("RU-SW", at)
        health.finished("RU-SW", False, at)
    assert health.state("RU-SW", 1.5) == "open"
    assert health.rooms(1.5)["RU-SW"] == 0
    assert health.state("RU-SW", 11.5) == "half-open"
    assert health.rooms(11.5)["RU-SW"] == 1
    health.started("RU-SW", 11.5)
    assert health.rooms(11.6)["RU-SW"] == 0  # one probe at a time
    health.finished("RU-SW", True, 12.0)
    assert health.state("RU-SW", 12.0) == "closed"
    assert health.rooms(12.0)["RU-SW"] == 3


def test_failed_probe_reopens_with_a_doubled_cooldown_up_to_the_cap() -> None:
    """A probe without answer opens it again for twice as long, never beyond max_cooldown."""
    health = DestinationHealth(POLICY)
    for at in (0.0, 0.0):
        health.started("RU-SW", at)
        health.finished("RU-SW", False, at)
    health.started("RU-SW", 10.0)
    health.finished("RU-SW", False, 10.0)  # probe failed: open for 20 s
    assert health.state("RU-SW", 29.0) == "open"
    assert health.state("RU-SW", 30.5) == "half-open"
    health.started("RU-SW", 30.5)
    health.finished("RU-SW", False, 30.5)  # open for min(40, 25) s
    assert health.state("RU-SW", 55.0) == "open"
    assert health.state("RU-SW", 55.6) == "half-open"


def test_an_http_answer_resets_the_count() -> None:
    """Any HTTP status (even 503) means reachable: unanswered attempts must be consecutive."""
    health = DestinationHealth(POLICY)
    for answered in (False, True, False):
        health.started("RU-SW", 0.0)
        health.finished("RU-SW", answered, 0.0)
    assert health.state("RU-SW", 0.1) == "closed"
