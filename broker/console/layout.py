"""The console's page shell and the few helpers every page uses. Every value that reaches a
page goes through :func:`e` (HTML-escaped); nothing is loaded from elsewhere (closed networks):
the stylesheet and the one script are served under /console/assets/."""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable, Sequence
from urllib.parse import quote, urlencode

from aiohttp import web

from broker import clock

CSP = "default-src 'self'"
"""SPEC §7: every console page; no inline script or style, so the CSP needs no exception."""

NAV = (
    ("/console/", "Exchange matrix"),
    ("/console/messages", "Messages"),
    ("/console/routing", "Routing"),
    ("/console/certificates", "Participants & certificates"),
    ("/console/audit", "Audit"),
    ("/console/health", "Health"),
)


def e(value: object) -> str:
    """Escaped for an HTML text node or a quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def epoch_time(seconds: float | None) -> str:
    """Epoch seconds as the receipts write times: UTC with milliseconds."""
    if seconds is None:
        return ""
    return clock.format_time(dt.datetime.fromtimestamp(seconds, dt.UTC))


def segment(value: str) -> str:
    """One path segment, quoted (a MessageID may hold anything a sender wrote)."""
    return quote(value, safe=":@")


def link(path: str, text: object, **query: str | None) -> str:
    given = {k: v for k, v in query.items() if v}
    href = path + ("?" + urlencode(given) if given else "")
    return f"<a href='{e(href)}'>{e(text)}</a>"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], css: str = "") -> str:
    """A table whose cells are already HTML (escape values with :func:`e`)."""
    head = "".join(f"<th scope='col'>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table class='{e(css)}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def csrf_field(csrf: str) -> str:
    return f"<input type='hidden' name='csrf' value='{e(csrf)}'>"


def page(
    request: web.Request, title: str, body: str, csrf: str | None, status: int = 200
) -> web.Response:
    # Signed out (the login page), the navigation would only lead back to it.
    nav = "".join(
        f"<a href='{href}'"
        + (" aria-current='page'" if request.path == href else "")
        + f">{e(text)}</a>"
        for href, text in (NAV if csrf else ())
    )
    logout = (
        "<form class='inline signout' method='post' action='/console/logout'>"
        f"{csrf_field(csrf)}<button>Sign out</button></form>"
        if csrf
        else ""
    )
    text = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{e(title)} · EAEU gateway console</title>"
        # Signed out, nothing but the page itself is served (not even its stylesheet), so the
        # login page links no asset.
        + (
            "<link rel='icon' href='/console/assets/favicon.svg' type='image/svg+xml'>"
            "<link rel='stylesheet' href='/console/assets/console.css'>"
            "<script src='/console/assets/console.js' defer></script>"
            if csrf
            else ""
        )
        + "</head>"
        f"<body><nav><span class='brand'>EAEU gateway</span>{nav}{logout}</nav>"
        f"<main><h1>{e(title)}</h1>{body}</main>"
        "<footer>Times are UTC, as the receipts write them. Now "
        f"{e(clock.format_time(clock.now()))}</footer></body></html>"
    )
    return web.Response(
        text=text, status=status, content_type="text/html", headers={"Content-Security-Policy": CSP}
    )


def attachment(body: bytes, filename: str, content_type: str) -> web.Response:
    """A download, byte for byte (SPEC §7: attachment, nosniff)."""
    return web.Response(
        body=body,
        headers={
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": CSP,
        },
    )


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})
