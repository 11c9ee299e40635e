"""Health: readiness, store reachability, the delivery backlog by destination, the oldest
pending message, the worker leases held (on PostgreSQL: the whole cluster's), and this
process's circuit breakers."""

from __future__ import annotations

import time

from aiohttp import web

from broker.console.auth import session_of
from broker.console.context import context
from broker.console.layout import e, epoch_time, link, page, segment, table
from broker.operator import gost_status


async def health_page(request: web.Request) -> web.Response:
    session = session_of(request)
    ctx = context(request)
    store = ctx.gateway.store
    reachable = await store.ping()
    ready = bool(ctx.ready[0]) and reachable
    now = time.time()
    body = (
        "<dl class='facts'>"
        f"<dt>Readiness</dt><dd class='{'good' if ready else 'bad'}'>"
        f"{'ready' if ready else 'not ready'}</dd>"
        f"<dt>Store</dt><dd class='{'good' if reachable else 'bad'}'>"
        f"{'reachable' if reachable else 'UNREACHABLE'}</dd>"
        f"<dt>GOST</dt><dd>{e(gost_status())}</dd></dl>"
    )
    if reachable:
        backlog = await store.pending_by_destination()
        oldest = await store.oldest_pending()
        leases = await store.leases(now)
        body += "<h2>Delivery backlog</h2>" + (
            table(
                ("Destination", "Pending jobs"),
                [
                    [link("/console/messages", d, destination=d, state="pending"), str(n)]
                    for d, n in sorted(backlog.items())
                ],
                "backlog",
            )
            if backlog
            else "<p>Nothing is waiting for delivery.</p>"
        )
        if oldest is not None:
            message_id, accepted_at, destination = oldest
            body += (
                "<p>Oldest pending: "
                + link(f"/console/messages/{segment(message_id)}", message_id)
                + f" to {e(destination)}, accepted <time>{e(accepted_at)}</time></p>"
            )
        body += "<h2>Worker leases</h2>" + (
            table(
                ("Worker", "Jobs leased", "First lease ends"),
                [
                    [
                        e(lease.owner),
                        str(lease.jobs),
                        f"<time>{e(epoch_time(lease.first_expiry))}</time>",
                    ]
                    for lease in leases
                ],
                "leases",
            )
            if leases
            else "<p>No lease is held.</p>"
        )
    worker = ctx.worker
    if worker is not None:
        states = [
            [e(d), e(worker.health.state(d, now)), str(worker.health.in_flight(d))]
            for d in worker.health.destinations()
        ]
        body += (
            f"<h2>This process</h2><p>Worker <code>{e(worker.owner)}</code> holds "
            f"{worker.leases_held} deliveries.</p>"
            + table(("Destination", "Circuit breaker", "In flight"), states, "breakers")
        )
    body += (
        "<p class='links'>Probes: <a href='/healthz'>/healthz</a> · <a href='/readyz'>/readyz</a>"
        " · <a href='/metrics'>/metrics</a> (Prometheus)</p>"
    )
    return page(request, "Health", body, session.csrf, 200 if ready else 503)
