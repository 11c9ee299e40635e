"""Prometheus metrics of one gateway, in a registry of its own (so tests can run several).

Counters move with the traffic; the gauges of the store (jobs pending, age of the oldest, leases
held) and of the certificates (days until each expires) are refreshed by a periodic task of the
server, since reading them needs the store or the clock rather than an event.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400)


@dataclass
class Metrics:
    """The gateway's Prometheus metrics."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.received = Counter(
            "broker_messages_received", "Intake requests whose body was read", registry=r
        )
        self.accepted = Counter("broker_messages_accepted", "Messages accepted", registry=r)
        self.rejected = Counter(
            "broker_messages_rejected", "Messages refused, by SPEC §8 code", ["code"], registry=r
        )
        self.intake_seconds = Histogram(
            "broker_intake_seconds",
            "Request to receipt, intake",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.deliveries = Counter(
            "broker_deliveries", "Final delivery outcomes", ["outcome", "destination"], registry=r
        )
        self.attempts = Counter(
            "broker_delivery_attempts",
            "Delivery attempts (POSTs)",
            ["destination", "kind"],
            registry=r,
        )
        self.delivery_seconds = Histogram(
            "broker_delivery_seconds",
            "Acceptance to delivery",
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        self.receipts_pushed = Counter(
            "broker_receipts_pushed", "Receipts pushed to senders", ["outcome"], registry=r
        )
        self.jobs_pending = Gauge(
            "broker_jobs_pending", "Message deliveries not yet final", registry=r
        )
        self.oldest_pending = Gauge(
            "broker_oldest_pending_seconds",
            "Age of the oldest pending delivery's last change",
            registry=r,
        )
        self.destination_backlog = Gauge(
            "broker_destination_backlog",
            "Pending jobs per destination (messages and receipt pushes)",
            ["destination"],
            registry=r,
        )
        self.destination_in_flight = Gauge(
            "broker_destination_in_flight",
            "Deliveries in flight per destination, in this process",
            ["destination"],
            registry=r,
        )
        self.destination_breaker = Gauge(
            "broker_destination_breaker",
            "Circuit breaker per destination: 0 closed, 1 open, 2 half-open",
            ["destination"],
            registry=r,
        )
        self.leases_held = Gauge(
            "broker_leases_held", "Delivery jobs this process is working on", registry=r
        )
        self.routing = Gauge(
            "broker_routing_table", "The routing table in force (value 1)", ["sha256"], registry=r
        )
        self.reload_failures = Counter(
            "broker_routing_reload_failures", "Refused routing reloads", registry=r
        )
        self.connections_refused = Counter(
            "broker_connections_refused",
            "Connections closed at accept: over the cap, overall or from one address",
            ["listener"],
            registry=r,
        )
        self.connections_open = Gauge(
            "broker_connections_open",
            "Connections open, those in their TLS handshake included",
            ["listener"],
            registry=r,
        )
        self.certificate_days = Gauge(
            "broker_certificate_expiry_days",
            "Days until a certificate in certs/ expires",
            ["role", "subject"],
            registry=r,
        )

    def routing_digest(self, digest: str) -> None:
        self.routing.clear()
        self.routing.labels(digest).set(1)
