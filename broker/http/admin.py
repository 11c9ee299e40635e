"""The admin listener (SPEC §7): health, readiness, metrics, routing and message operations.

Plain HTTP bound to loopback by default; anyone who can reach it is an operator.
"""

from __future__ import annotations

import hmac
import json
import time

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from broker.audit import AuditEvent
from broker.http.intake import GATEWAY, _uuid
from broker.intake import Gateway
from broker.metrics import Metrics
from broker.store.base import JobState

METRICS = web.AppKey("metrics", Metrics)
READY = web.AppKey("ready", list)
RETRY_TTL = 86_400.0


def _json(data: object, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, indent=2))


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    ready = bool(request.app[READY][0]) and await request.app[GATEWAY].store.ping()
    return web.Response(text="ready\n" if ready else "not ready\n", status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        body=generate_latest(request.app[METRICS].registry),
        headers={"Content-Type": CONTENT_TYPE_LATEST},
    )


async def routing(request: web.Request) -> web.Response:
    table = request.app[GATEWAY].routing.table
    return _json(
        {
            "source": table.source,
            "digest": table.digest,
            "gateway": table.gateway_id,
            "participants": {
                p.id: {
                    "country": p.country,
                    "addresses": [g.text for g in p.addresses.globs],
                    "endpoint": p.endpoint,
                    "receipts": p.receipts,
                    "pins": sorted(p.pins),
                }
                for p in table.participants.values()
            },
            "rules": [
                {
                    "name": r.name,
                    "line": r.line,
                    "match": {k: [g.text for g in v.globs] for k, v in r.match.items()},
                    "deliver": r.deliver
                    if r.deliver in ("addressee", None)
                    else [g.text for g in r.deliver],  # type: ignore[union-attr]
                    "reject": r.reject,
                    "retry": r.retry.describe(),
                }
                for r in table.rules
            ],
        }
    )


async def reload_routing(request: web.Request) -> web.Response:
    holder = request.app[GATEWAY].routing
    result = holder.reload()
    body = {
        "digest": holder.table.digest,
        "errors": [str(p) for p in result.errors],
        "warnings": [str(p) for p in result.warnings],
    }
    return _json(body, 200 if result.table is not None else 422)


async def list_messages(request: web.Request) -> web.Response:
    states: dict[str | None, JobState | None] = {
        None: None,
        "pending": "pending",
        "delivered": "delivered",
        "failed": "failed",
    }
    state = request.query.get("state")
    if state not in states:
        return _json(
            {"code": "BAD_REQUEST", "message": "state is pending, delivered or failed"}, 400
        )
    limit = min(int(request.query.get("limit", "100")), 1000)
    views = await request.app[GATEWAY].store.messages(
        states[state], request.query.get("sender"), request.query.get("since"), limit
    )
    return _json([{**v.as_json(), "state": v.state, "accepted_at": v.accepted_at} for v in views])


async def retry_message(request: web.Request) -> web.Response:
    message_id = _uuid(request.match_info["message_id"]) or request.match_info["message_id"]
    gateway = request.app[GATEWAY]
    now = time.time()
    destination = request.query.get("destination")
    who = request.headers.get("X-Operator") or f"admin API from {request.remote}"
    count = await gateway.store.retry(
        message_id,
        destination,
        now,
        now + RETRY_TTL,
        [AuditEvent("retry_requested", message_id, destination=destination, detail={"by": who})],
    )
    if count:
        gateway.wake_delivery()
    return _json({"message_id": message_id, "retried": count}, 200 if count else 404)


TOKEN = web.AppKey("admin_token", str)


@web.middleware
async def operator_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With a token configured, /admin/* needs ``Authorization: Bearer <token>``; health,
    readiness and metrics stay open for probes and scrapers."""
    token = request.app.get(TOKEN)
    if token and request.path.startswith("/admin/"):
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), token.encode()):
            return _json({"code": "UNAUTHORIZED", "message": "operator token required"}, 401)
    return await handler(request)


def admin_app(gateway: Gateway, metrics_: Metrics, ready: list[bool]) -> web.Application:
    app = web.Application(middlewares=[operator_token])
    app[GATEWAY] = gateway
    app[METRICS] = metrics_
    app[READY] = ready
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/admin/routing", routing)
    app.router.add_post("/admin/routing/reload", reload_routing)
    app.router.add_get("/admin/messages", list_messages)
    app.router.add_post("/admin/messages/{message_id}/retry", retry_message)
    return app
