"""The operator console under /console/ on the admin listener (issue 12, first part: sign-in,
sessions, CSRF, and the exchange matrix with its CSV).

* **Sign-in.** With an operator token (``--admin-token``), ``POST /console/login`` takes the
  form field ``token`` and answers 303 with a session cookie: HttpOnly, SameSite=Strict, Path
  /console, and Secure when served over TLS. Without a valid session, every other /console/
  path answers 303 to the login page, or 401 for the CSV. Without a token, the admin listener
  is on loopback (``serve`` enforces it) and no sign-in is asked.
* **CSRF.** Every state-changing form carries a hidden ``csrf`` field tied to the session; a
  POST without it, or with another value, answers 403 and changes nothing.
* **Audit.** Console actions are audited with ``by: console session <8 hex digits>``, the
  first 8 hex digits of the SHA-256 of the session id, never the id itself.
* Every page is server-rendered HTML with every value escaped. Nothing is loaded from
  elsewhere, because these networks are closed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import html
import secrets
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from broker import clock, report
from broker.audit import AuditEvent
from broker.intake import Gateway

COOKIE = "broker_console"
SESSION_SECONDS = 8 * 3600
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#222}
nav{background:#1f3b5a;padding:.6em 1em}nav a{color:#fff;margin-right:1.2em}
main{padding:1em 1.5em;max-width:1250px}table{border-collapse:collapse}
td,th{border:1px solid #bbb;padding:.3em .6em;text-align:right}th{background:#eef}
td.empty{background:#fafafa}form.inline{display:inline}
"""


@dataclass
class Session:
    csrf: str
    expires: float


@dataclass
class Sessions:
    """Console sessions of this process (a restart signs everyone out)."""

    token: str | None
    by_id: dict[str, Session] = field(default_factory=dict)

    def open(self) -> tuple[str, Session]:
        session_id = secrets.token_urlsafe(32)
        session = Session(secrets.token_urlsafe(24), time.time() + SESSION_SECONDS)
        self.by_id[session_id] = session
        return session_id, session

    def find(self, request: web.Request) -> tuple[str, Session] | None:
        session_id = request.cookies.get(COOKIE, "")
        session = self.by_id.get(session_id)
        if session is None or session.expires < time.time():
            self.by_id.pop(session_id, None)
            return None
        return session_id, session


def who(session_id: str) -> str:
    """How the audit log names a console session."""
    return f"console session {hashlib.sha256(session_id.encode()).hexdigest()[:8]}"


SESSIONS = web.AppKey("console_sessions", Sessions)
CONSOLE_GATEWAY = web.AppKey("console_gateway", Gateway)


def _page(title: str, body: str, csrf: str | None = None) -> web.Response:
    logout = (
        f"<form class='inline' method='post' action='/console/logout'>"
        f"<input type='hidden' name='csrf' value='{html.escape(csrf)}'>"
        "<button>Sign out</button></form>"
        if csrf
        else ""
    )
    return web.Response(
        text=(
            "<!doctype html><html lang='en'><meta charset='utf-8'>"
            f"<title>{html.escape(title)} · EAEU gateway</title><style>{STYLE}</style>"
            f"<nav><a href='/console/'>Exchange matrix</a>"
            f"<a href='/console/matrix.csv'>matrix.csv</a>{logout}</nav>"
            f"<main><h1>{html.escape(title)}</h1>{body}</main></html>"
        ),
        content_type="text/html",
        headers={"Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'"},
    )


@web.middleware
async def console_session(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With a token: no /console/ page without a valid session (the login page aside)."""
    if not request.path.startswith("/console") or request.path == "/console/login":
        return await handler(request)
    sessions = request.app[SESSIONS]
    if sessions.token is None:
        return await handler(request)
    if sessions.find(request) is None:
        if request.path.endswith(".csv"):
            return web.Response(status=401, text="sign in at /console/login\n")
        raise web.HTTPSeeOther("/console/login")
    return await handler(request)


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


async def login_form(request: web.Request) -> web.Response:
    return _login(status=200)


def _login(status: int, problem: str = "") -> web.Response:
    body = (
        (f"<p role='alert'>{html.escape(problem)}</p>" if problem else "")
        + "<form method='post' action='/console/login'><label>Operator token "
        "<input type='password' name='token' autocomplete='current-password' required>"
        "</label> <button>Sign in</button></form>"
    )
    response = _page("Sign in", body)
    response.set_status(status)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    sessions = request.app[SESSIONS]
    form = await request.post()
    given = str(form.get("token", ""))
    if sessions.token is None or not hmac.compare_digest(given.encode(), sessions.token.encode()):
        return _login(401, "That is not the operator token.")
    session_id, _ = sessions.open()
    await request.app[CONSOLE_GATEWAY].store.audit(
        [AuditEvent("console_login", detail={"by": who(session_id)})]
    )
    response = _see_other("/console/")
    response.set_cookie(
        COOKIE,
        session_id,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/console",
        max_age=SESSION_SECONDS,
    )
    return response


def _checked_session(request: web.Request, form: dict[str, str]) -> tuple[str, Session] | None:
    """The session of a state-changing POST, if its csrf field is the session's."""
    found = request.app[SESSIONS].find(request)
    if found is None:
        return None
    if not hmac.compare_digest(form.get("csrf", "").encode(), found[1].csrf.encode()):
        return None
    return found


async def logout(request: web.Request) -> web.StreamResponse:
    form = {k: str(v) for k, v in (await request.post()).items()}
    found = _checked_session(request, form)
    if found is None:
        return web.Response(status=403, text="refused: no session or a wrong csrf field\n")
    request.app[SESSIONS].by_id.pop(found[0], None)
    await request.app[CONSOLE_GATEWAY].store.audit(
        [AuditEvent("console_logout", detail={"by": who(found[0])})]
    )
    response = _see_other("/console/login")
    response.del_cookie(COOKIE, path="/console")
    return response


def _window(request: web.Request) -> tuple[str, str]:
    """since/until as the store writes times; the last 24 hours by default."""
    now = clock.now()
    since = request.query.get("since")
    until = request.query.get("until")
    return (
        clock.format_time(clock.parse_rfc3339(since))
        if since
        else clock.format_time(now - dt.timedelta(hours=24)),
        clock.format_time(clock.parse_rfc3339(until)) if until else clock.format_time(now),
    )


async def matrix_csv(request: web.Request) -> web.Response:
    try:
        since, until = _window(request)
    except ValueError as exc:
        return web.Response(status=400, text=f"since/until: {exc}\n")
    rows = await request.app[CONSOLE_GATEWAY].store.matrix(
        since, until, request.query.get("process") or None
    )
    return web.Response(text=report.as_csv(rows), content_type="text/csv")


async def matrix_page(request: web.Request) -> web.Response:
    try:
        since, until = _window(request)
    except ValueError as exc:
        return web.Response(status=400, text=f"since/until: {exc}\n")
    process = request.query.get("process") or None
    rows = await request.app[CONSOLE_GATEWAY].store.matrix(since, until, process)
    cells: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for row in rows:
        cell = cells[row.sender, row.destination]
        for index, value in enumerate((row.messages, row.delivered, row.failed, row.pending)):
            cell[index] += value
    senders = sorted({s for s, _ in cells})
    destinations = sorted({d for _, d in cells})
    head = "".join(f"<th scope='col'>{html.escape(d)}</th>" for d in destinations)
    lines = []
    for sender in senders:
        tds = []
        for destination in destinations:
            counts = cells.get((sender, destination))
            if counts is None:
                tds.append("<td class='empty'></td>")
                continue
            messages, delivered, failed, pending = counts
            tds.append(
                f"<td data-sender='{html.escape(sender)}' "
                f"data-destination='{html.escape(destination)}'>{messages} messages<br>"
                f"{delivered / messages:.0%} delivered, {failed} failed, {pending} pending</td>"
            )
        lines.append(f"<tr><th scope='row'>{html.escape(sender)}</th>{''.join(tds)}</tr>")
    table = (
        f"<table><tr><th>from ↓ to →</th>{head}</tr>{''.join(lines)}</table>"
        if lines
        else "<p>No message was accepted in this window.</p>"
    )
    found = request.app[SESSIONS].find(request)
    body = (
        f"<p>Accepted from {html.escape(since)} to {html.escape(until)} (UTC)"
        + (f", process {html.escape(process)}" if process else "")
        + "</p>"
        + table
    )
    return _page("Exchange matrix", body, found[1].csrf if found else None)


def add_console(app: web.Application, gateway: Gateway, token: str | None) -> None:
    app[SESSIONS] = Sessions(token)
    app[CONSOLE_GATEWAY] = gateway
    app.middlewares.append(console_session)
    app.router.add_get("/console/login", login_form)
    app.router.add_post("/console/login", login)
    app.router.add_post("/console/logout", logout)
    app.router.add_get("/console/", matrix_page)
    app.router.add_get("/console/matrix.csv", matrix_csv)
