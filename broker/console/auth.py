"""Console sign-in, sessions and CSRF (issue 12, SPEC §7).

* With an operator token (``--admin-token``), ``POST /console/login`` takes the form field
  ``token`` and answers 303 with a session cookie: HttpOnly, SameSite=Strict, Path /console,
  Secure when served over TLS. Without a valid session every other /console/ path answers 303
  to the login page, or 401 for a CSV or JSON address.
* Without a token the admin listener is on loopback (``serve`` enforces it): a session is
  created on the first visit, so forms still carry a CSRF value.
* Every state-changing form carries a hidden ``csrf`` field tied to the session; a POST
  without it, or with another value, answers 403 and changes nothing.
* Sessions live in this process: a restart, or another gateway (another token), knows none.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from broker.console.context import audit
from broker.console.layout import e, page, see_other
from broker.store.base import StoreUnavailable

COOKIE = "broker_console"
SESSION_SECONDS = 8 * 3600
MAX_SESSIONS = 10_000
"""Open sessions kept at most: without a token every cookie-less visit opens one, so a loop of
them must not grow the process without bound; the oldest goes first."""
LOGIN = "/console/login"
"""The one console address that answers without a session (SPEC §7; issue 12)."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Session:
    id: str
    csrf: str
    expires: float

    @property
    def who(self) -> str:
        """How the audit log names this session: never the id itself."""
        return f"console session {hashlib.sha256(self.id.encode()).hexdigest()[:8]}"


@dataclass
class Sessions:
    token: str | None
    by_id: dict[str, Session] = field(default_factory=dict)

    def open(self) -> Session:
        now = time.time()
        for stale in [k for k, s in self.by_id.items() if s.expires < now]:
            del self.by_id[stale]
        while len(self.by_id) >= MAX_SESSIONS:  # insertion order: the oldest first
            del self.by_id[next(iter(self.by_id))]
        session = Session(
            secrets.token_urlsafe(32), secrets.token_urlsafe(24), now + SESSION_SECONDS
        )
        self.by_id[session.id] = session
        return session

    def find(self, request: web.Request) -> Session | None:
        session_id = request.cookies.get(COOKIE, "")
        session = self.by_id.get(session_id)
        if session is None or session.expires < time.time():
            self.by_id.pop(session_id, None)
            return None
        return session


SESSIONS = web.AppKey("console_sessions", Sessions)
SESSION = web.RequestKey("console_session", Session)
"""The request key under which the middleware leaves the caller's :class:`Session`."""


def set_cookie(request: web.Request, response: web.StreamResponse, session: Session) -> None:
    response.set_cookie(
        COOKIE,
        session.id,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/console",
        max_age=SESSION_SECONDS,
    )


def session_of(request: web.Request) -> Session:
    return request[SESSION]


@web.middleware
async def console_session(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/console") or request.path == LOGIN:
        return await handler(request)
    sessions = request.app[SESSIONS]
    session = sessions.find(request)
    if session is not None:
        request[SESSION] = session
        return await _answered(request, handler, session)
    if sessions.token is not None:
        if request.path.endswith((".csv", ".json", ".svg")):
            return web.Response(status=401, text="sign in at /console/login\n")
        return see_other("/console/login")
    # No token: the loopback console opens a session on the first visit.
    session = sessions.open()
    request[SESSION] = session
    response = await _answered(request, handler, session)
    set_cookie(request, response, session)
    return response


async def _answered(request: web.Request, handler: Handler, session: Session) -> web.StreamResponse:
    """The page, or — when the store cannot be reached — a 503 page that says so (the health
    page still answers: it pings)."""
    try:
        return await handler(request)
    except StoreUnavailable as exc:
        body = (
            f"<p class='error' role='alert'>The store is unavailable: {e(exc)}. Nothing was "
            "changed; try again, and see <a href='/console/health'>Health</a>.</p>"
        )
        return page(request, "Store unavailable", body, session.csrf, 503)


async def checked(request: web.Request) -> tuple[Session, dict[str, str]] | None:
    """The session and form of a state-changing POST, if its csrf field is the session's;
    None otherwise (answer :func:`refused`, change nothing)."""
    form = {k: str(v) for k, v in (await request.post()).items()}
    session = request.app[SESSIONS].find(request)
    if session is None:
        return None
    if not hmac.compare_digest(form.get("csrf", "").encode(), session.csrf.encode()):
        return None
    return session, form


def refused() -> web.Response:
    return web.Response(status=403, text="refused: no session, or a wrong csrf field\n")


async def login_form(request: web.Request) -> web.Response:
    return _login(request, 200)


def _login(request: web.Request, status: int, problem: str = "") -> web.Response:
    body = (
        (f"<p role='alert' class='error'>{e(problem)}</p>" if problem else "")
        + "<form method='post' action='/console/login' class='login'><label>Operator token "
        "<input type='password' name='token' autocomplete='current-password' required>"
        "</label> <button>Sign in</button></form>"
    )
    return page(request, "Sign in", body, None, status)


async def login(request: web.Request) -> web.StreamResponse:
    sessions = request.app[SESSIONS]
    form = await request.post()
    given = str(form.get("token", ""))
    if sessions.token is None or not hmac.compare_digest(given.encode(), sessions.token.encode()):
        return _login(request, 401, "That is not the operator token.")
    session = sessions.open()
    await audit(request, session.who, "console_login")
    response = see_other("/console/")
    set_cookie(request, response, session)
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    posted = await checked(request)
    if posted is None:
        return refused()
    session, _ = posted
    request.app[SESSIONS].by_id.pop(session.id, None)
    await audit(request, session.who, "console_logout")
    response = see_other("/console/login")
    response.del_cookie(COOKIE, path="/console")
    return response
