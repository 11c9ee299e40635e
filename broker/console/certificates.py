"""Participants (country, addresses, endpoint, pins, signature coverage, recent traffic and
delivery health) and every certificate in certs/ with its days to expiry."""

from __future__ import annotations

import datetime as dt
import time

from aiohttp import web

from broker import clock
from broker.console.auth import session_of
from broker.console.context import context
from broker.console.layout import e, epoch_time, link, page, table
from broker.operator import EXPIRY_WARNING_DAYS, certificates
from broker.signing.trust import common_name, fingerprint


async def _participants(request: web.Request) -> str:
    ctx = context(request)
    store = ctx.gateway.store
    routing = ctx.gateway.config.table
    now = clock.now()
    since = clock.format_time(now - dt.timedelta(hours=24))
    rows = await store.matrix(since, clock.format_time(now), merge_processes=True)
    sent: dict[str, int] = {}
    received: dict[str, int] = {}
    for row in rows:
        sent[row.sender] = sent.get(row.sender, 0) + row.messages
        received[row.destination] = received.get(row.destination, 0) + row.messages
    health = ctx.worker.health if ctx.worker else None
    lines = []
    for p in routing.participants.values():
        last, failed_since = await store.destination_health(p.id)
        breaker = health.state(p.id, time.time()) if health else "—"
        lines.append(
            [
                f"<strong>{e(p.id)}</strong>",
                e(p.country),
                e(", ".join(g.text for g in p.addresses.globs)),
                f"<code>{e(p.endpoint)}</code>",
                "<br>".join(f"<code>{e(pin[:16])}…</code>" for pin in sorted(p.pins))
                or "subject CN = id",
                e(p.signature),
                link("/console/messages", f"{sent.get(p.id, 0)} sent", sender=p.id)
                + " · "
                + link("/console/messages", f"{received.get(p.id, 0)} received", destination=p.id),
                f"<time>{e(epoch_time(last))}</time>" if last else "never",
                f"<span class='{'bad' if failed_since else 'good'}'>{failed_since}</span>",
                e(breaker),
            ]
        )
    return table(
        (
            "Participant",
            "Country",
            "Addresses",
            "Endpoint",
            "Pins",
            "Signature",
            "Last 24 h",
            "Last delivery",
            "Failed since",
            "Breaker",
        ),
        lines,
        "participants",
    )


def _certificates(request: web.Request) -> str:
    certs = context(request).gateway.config.sources.certs
    now = clock.now()
    lines = []
    for item in certificates(certs):
        # The verdict of `broker certs check`, in the console's words.
        status, days = item.status(now), item.days_left(now)
        if status == "EXPIRED":
            css, text = "expired", f"expired {-days:.0f} days ago"
        elif status.startswith("EXPIRES"):
            css, text = "expiring", f"expires in {days:.0f} days"
        elif status == "valid":
            css, text = "valid", f"{days:.0f} days left"
        else:
            css, text = "not-yet-valid", status.lower()
        cert = item.certificate
        lines.append(
            (
                css,
                [
                    e(item.role),
                    e(common_name(cert)),
                    e(cert.issuer.rfc4514_string()),
                    f"<time>{e(clock.format_time(cert.not_valid_after_utc))}</time>",
                    f"<span class='days'>{e(text)}</span>",
                    f"<code>{e(fingerprint(cert)[:16])}…</code>",
                    f"<code>{e(item.path.relative_to(certs))}</code>",
                ],
            )
        )
    head = "".join(
        f"<th scope='col'>{h}</th>"
        for h in ("Role", "Subject CN", "Issuer", "Not after", "Expiry", "SHA-256", "File")
    )
    body = "".join(
        f"<tr class='cert {css}'>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
        for css, cells in lines
    )
    return (
        f"<table class='certificates'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


async def certificates_page(request: web.Request) -> web.Response:
    session = session_of(request)
    body = (
        "<h2>Participants</h2>"
        + await _participants(request)
        + f"<h2>Certificates</h2><p>A certificate with {EXPIRY_WARNING_DAYS} days or less left "
        "is marked <span class='expiring'>expiring</span>; renew it and reload.</p>"
        + _certificates(request)
    )
    return page(request, "Participants and certificates", body, session.csrf)
