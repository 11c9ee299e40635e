"""What every console page reads: the gateway (its store and configuration in force), the
delivery worker of this process, and the audit verification run in the background."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web

from broker.audit import AuditEvent
from broker.delivery.worker import DeliveryWorker
from broker.intake import Gateway


@dataclass
class AuditRun:
    """The last (or current) verification of the audit chain started from the console."""

    started_at: str | None = None
    finished_at: str | None = None
    checked: int = 0
    total: int = 0
    head: str | None = None
    problem: str | None = None
    error: str | None = None
    by: str | None = None

    @property
    def running(self) -> bool:
        return self.started_at is not None and self.finished_at is None


@dataclass
class ConsoleContext:
    gateway: Gateway
    ready: list[bool]
    worker: DeliveryWorker | None = None
    audit_run: AuditRun = field(default_factory=AuditRun)


CONTEXT = web.AppKey("console_context", ConsoleContext)


def context(request: web.Request) -> ConsoleContext:
    return request.app[CONTEXT]


async def audit(
    request: web.Request,
    who: str,
    event: str,
    message_id: str | None = None,
    destination: str | None = None,
    detail: Mapping[str, object] | None = None,
) -> None:
    """Audit a console action with who took it (:attr:`Session.who`; SPEC §10)."""
    await context(request).gateway.store.audit(
        [
            AuditEvent(
                event,
                message_id,
                destination=destination,
                detail={"by": who, **(detail or {})},
            )
        ]
    )
