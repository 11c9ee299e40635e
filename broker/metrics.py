"""Prometheus metrics of one gateway, in a registry of its own (so tests can run several)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter


@dataclass
class Metrics:
    """The gateway's Prometheus metrics, in a registry of its own (one per gateway)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.received = Counter(
            "broker_messages_received",
            "Intake requests whose body was read",
            registry=self.registry,
        )
        self.accepted = Counter(
            "broker_messages_accepted", "Messages accepted", registry=self.registry
        )
        self.rejected = Counter(
            "broker_messages_rejected",
            "Messages refused, by SPEC §8 code",
            ["code"],
            registry=self.registry,
        )
