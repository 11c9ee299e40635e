"""The console's routes on the admin listener (issue 12; SPEC §7). Pages live in their own
modules; this one says which address is which."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from broker.console import audit, auth, certificates, health, matrix, messages, routing
from broker.console.context import CONTEXT, ConsoleContext
from broker.console.layout import CSP

ASSETS = {
    "console.css": "text/css",
    "console.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
}


def _asset(name: str) -> web.Response:
    body = (resources.files("broker.console") / "assets" / name).read_bytes()
    return web.Response(
        body=body,
        headers={
            "Content-Type": f"{ASSETS[name]}; charset=utf-8",
            "Cache-Control": "max-age=300",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": CSP,
        },
    )


async def asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound()
    return _asset(name)


async def favicon(request: web.Request) -> web.Response:
    """The browser asks every origin for /favicon.ico (the login page links no icon, since
    nothing under /console/ is served before sign-in): the console's icon, not a 404."""
    return _asset("favicon.svg")


def add_console(app: web.Application, context: ConsoleContext, token: str | None) -> None:
    app[CONTEXT] = context
    app[auth.SESSIONS] = auth.Sessions(token)
    app[audit.RUNS] = set()
    app.middlewares.append(auth.console_session)
    get, post = app.router.add_get, app.router.add_post
    get("/favicon.ico", favicon)
    get("/console/assets/{name}", asset)
    get("/console/login", auth.login_form)
    post("/console/login", auth.login)
    post("/console/logout", auth.logout)
    get("/console/", matrix.matrix_page)
    get("/console/matrix.csv", matrix.matrix_csv)
    get("/console/matrix.svg", matrix.matrix_svg)
    get("/console/messages", messages.messages_page)
    get("/console/messages/{message_id}", messages.message_page)
    post("/console/messages/{message_id}/retry", messages.retry)
    get("/console/receipts/{receipt_id}", messages.receipt_download)
    get("/console/envelopes/{track_id}/{which:original|forwarded}", messages.envelope_download)
    get("/console/routing", routing.routing_page)
    post("/console/routing/explain", routing.explain_envelope)
    post("/console/routing/reload", routing.reload)
    get("/console/certificates", certificates.certificates_page)
    get("/console/audit", audit.audit_page)
    post("/console/audit/verify", audit.start_verification)
    get("/console/audit/progress.json", audit.progress)
    get("/console/audit/export", audit.export)
    get("/console/health", health.health_page)
