"""The admin listener (SPEC §7): health, readiness, metrics, routing and message operations.

Plain HTTP bound to loopback by default; anyone who can reach it is an operator.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from broker import clock
from broker.config import KEYS_NOT_RELOADED
from broker.http.intake import GATEWAY, urn_uuid
from broker.http.openapi import DESCRIPTION
from broker.intake import Gateway
from broker.metrics import Metrics
from broker.operator import gost_status, request_retry
from broker.store.base import JobState

METRICS = web.AppKey("metrics", Metrics)
READY = web.AppKey("ready", list)


def _json(data: object, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, indent=2))


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    ready = bool(request.app[READY][0]) and await request.app[GATEWAY].store.ping()
    # GOST is optional: its absence is said, and does not make the gateway unready.
    text = ("ready\n" if ready else "not ready\n") + gost_status() + "\n"
    return web.Response(text=text, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        body=generate_latest(request.app[METRICS].registry),
        headers={"Content-Type": CONTENT_TYPE_LATEST},
    )


async def openapi(request: web.Request) -> web.Response:
    return _json(DESCRIPTION)


async def routing(request: web.Request) -> web.Response:
    table = request.app[GATEWAY].config.table
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


async def reload(request: web.Request) -> web.Response:
    """Reload routing, catalog and certs as one set (in a thread: compiling schemas and reading
    certificates must not block the event loop); 422 with every error when refused."""
    holder = request.app[GATEWAY].config
    result = await asyncio.get_running_loop().run_in_executor(None, holder.reload)
    body = {
        "reloaded": result.configuration is not None,
        "digest": holder.table.digest,
        "digests": holder.current.digests,
        "errors": result.errors,
        "warnings": result.warnings,
        "not_reloaded": KEYS_NOT_RELOADED,
    }
    return _json(body, 200 if result.configuration is not None else 422)


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
    text = request.query.get("limit", "100")
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        return _json(
            {"code": "BAD_REQUEST", "message": f"limit {text!r} is not a number from 1 to 1000"},
            400,
        )
    limit = int(text)
    since = request.query.get("since")
    if since is not None:
        try:
            since = clock.format_time(clock.parse_rfc3339(since))
        except ValueError as exc:
            return _json({"code": "BAD_REQUEST", "message": f"since: {exc}"}, 400)
    views = await request.app[GATEWAY].store.messages(
        states[state], request.query.get("sender"), since, limit
    )
    return _json([{**v.as_json(), "state": v.state, "accepted_at": v.accepted_at} for v in views])


async def retry_message(request: web.Request) -> web.Response:
    message_id = urn_uuid(request.match_info["message_id"]) or request.match_info["message_id"]
    gateway = request.app[GATEWAY]
    destination = request.query.get("destination")
    who = request.headers.get("X-Operator") or f"admin API from {request.remote}"
    count = await request_retry(gateway.store, message_id, destination, who)
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
        header = request.headers.get("Authorization", "")
        # Only `Bearer <token>`: a bare token, a query parameter or a cookie is refused.
        given = header[len("Bearer ") :] if header.startswith("Bearer ") else ""
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            return _json({"code": "UNAUTHORIZED", "message": "operator token required"}, 401)
    return await handler(request)


HOSTS = web.AppKey("admin_hosts", tuple)
LOOPBACK = web.AppKey("admin_loopback", bool)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@web.middleware
async def same_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
    """SPEC §7 against DNS rebinding and cross-site forms: 421 for a Host that is neither an
    IP literal, nor ``localhost`` on a loopback listener, nor a configured name; 403 for a POST
    whose Origin is another origin."""
    host = request.host
    name = host[1:].split("]", 1)[0] if host.startswith("[") else host.rsplit(":", 1)[0]
    allowed = (
        _is_ip(name)
        or (name == "localhost" and request.app.get(LOOPBACK, True))
        or name in request.app.get(HOSTS, ())
    )
    if not allowed:
        return _json(
            {"code": "MISDIRECTED", "message": f"Host {host!r} is not this admin listener's"},
            421,
        )
    origin = request.headers.get("Origin")
    if request.method == "POST" and origin not in (None, f"{request.scheme}://{host}"):
        return _json({"code": "FORBIDDEN", "message": f"cross-origin POST from {origin}"}, 403)
    return await handler(request)


def admin_app(gateway: Gateway, metrics_: Metrics, ready: list[bool]) -> web.Application:
    app = web.Application(middlewares=[same_origin, operator_token])
    app[GATEWAY] = gateway
    app[METRICS] = metrics_
    app[READY] = ready
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/admin/routing", routing)
    app.router.add_post("/admin/reload", reload)
    app.router.add_post("/admin/routing/reload", reload)  # the v1 address, kept
    app.router.add_get("/admin/messages", list_messages)
    app.router.add_post("/admin/messages/{message_id}/retry", retry_message)
    return app
