"""Messages: the search (every filter of the status JSON, keyset-paged), a message's detail
(timeline, receipts verified by the gateway's own verifier, routing decision and explain,
retry, the envelopes), and the downloads."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from urllib.parse import urlencode

from aiohttp import web
from cryptography import x509

from broker import clock
from broker.audit import Entry
from broker.console.auth import checked, refused, session_of
from broker.console.context import context
from broker.console.layout import (
    attachment,
    csrf_field,
    e,
    link,
    page,
    see_other,
    segment,
    table,
)
from broker.console.routing import explanation_html
from broker.errors import GatewayError
from broker.http.intake import urn_uuid
from broker.operator import request_retry
from broker.receipts import read_receipt, verify_receipt
from broker.routing.explain import explain
from broker.routing.table import RouteFacts
from broker.store.base import MessageQuery, MessageView, RejectedView
from broker.store.ledger import cursor_of

PAGE = 50
FIELDS = (
    ("message_id", "MessageID"),
    ("track_id", "TrackID"),
    ("upstream_track_id", "Upstream TrackID"),
    ("sender", "Sender"),
    ("destination", "Destination"),
    ("process", "Process"),
    ("document", "Document"),
    ("route", "Rule"),
    ("code", "Error code"),
)
ALIASES = {"participant": "destination", "rule": "route", "error_code": "code"}
STATES = ("pending", "delivered", "failed", "rejected")


class BadQuery(ValueError):
    pass


def _time(value: str | None, name: str) -> str | None:
    if not value:
        return None
    try:
        return clock.format_time(clock.parse_rfc3339(value))
    except ValueError as exc:
        raise BadQuery(f"{name}: {exc}") from exc


def query_of(request: web.Request) -> MessageQuery:
    """The search from the query string: names as in the status JSON (SPEC §7)."""
    given = {ALIASES.get(k, k): v.strip() for k, v in request.query.items() if v.strip()}
    state = given.get("state")
    if state is not None and state not in STATES:
        raise BadQuery(f"state {state!r} is one of {', '.join(STATES)}")
    for name in ("message_id", "track_id"):  # as `urn:uuid:…` or the bare uuid (SPEC §7)
        if name in given:
            given[name] = urn_uuid(given[name]) or given[name]
    return MessageQuery(
        **{k: given.get(k) for k, _ in FIELDS},
        state=state,  # type: ignore[arg-type]
        since=_time(given.get("since"), "since"),
        until=_time(given.get("until"), "until"),
    )


def _form(query: MessageQuery) -> str:
    inputs = "".join(
        f"<label>{e(label)} <input name='{name}' value='{e(getattr(query, name))}'></label>"
        for name, label in FIELDS
    )
    options = "<option value=''>any</option>" + "".join(
        f"<option{' selected' if query.state == s else ''}>{s}</option>" for s in STATES
    )
    return (
        "<form method='get' action='/console/messages' class='filters search'>"
        f"{inputs}<label>State <select name='state'>{options}</select></label>"
        f"<label>Since <input name='since' value='{e(query.since)}'></label>"
        f"<label>Until <input name='until' value='{e(query.until)}'></label>"
        "<button>Search</button> <a href='/console/messages'>clear</a></form>"
    )


def _destinations(view: MessageView) -> str:
    return "<br>".join(
        f"{e(d.participant)} <span class='state {e(d.state)}'>{e(d.state)}</span>"
        + (f" ({d.attempts} attempts)" if d.attempts > 1 else "")
        for d in view.destinations
    )


def _last_error(view: MessageView) -> str:
    errors = [f"{d.participant}: {d.last_error}" for d in view.destinations if d.last_error]
    return e(errors[-1]) if errors else ""


def _row(item: MessageView | RejectedView) -> list[str]:
    if isinstance(item, RejectedView):
        return [
            f"<time>{e(item.rejected_at)}</time>",
            link(f"/console/messages/{segment(item.message_id)}", item.message_id)
            if item.message_id
            else "(no MessageID)",
            "",
            e(item.sender),
            "",
            "<span class='state rejected'>rejected</span>",
            e(item.code),
        ]
    return [
        f"<time>{e(item.accepted_at)}</time>",
        link(f"/console/messages/{segment(item.message_id)}", item.message_id),
        f"<code>{e(item.track_id)}</code>",
        e(item.sender),
        e(item.route),
        _destinations(item),
        _last_error(item),
    ]


async def messages_page(request: web.Request) -> web.Response:
    session = session_of(request)
    try:
        query = query_of(request)
    except BadQuery as exc:
        return page(request, "Messages", f"<p class='error'>{e(exc)}</p>", session.csrf, 400)
    after = request.query.get("after") or None
    found = await context(request).gateway.store.search(query, PAGE + 1, after)
    shown, more = found[:PAGE], len(found) > PAGE
    headers = ("Time", "MessageID", "TrackID", "Sender", "Rule", "Destinations", "Last error")
    rows = [_row(item) for item in shown]
    body = _form(query) + (
        table(headers, rows, "messages") if rows else "<p class='empty'>No message matches.</p>"
    )
    if more:
        rest = {k: v for k, v in request.query.items() if k != "after" and v}
        rest["after"] = cursor_of(shown[-1])
        body += f"<p><a rel='next' href='/console/messages?{e(urlencode(rest))}'>Older →</a></p>"
    return page(request, "Messages", body, session.csrf)


# -- detail ----------------------------------------------------------------------------------
def _trusted(request: web.Request) -> Sequence[x509.Certificate]:
    return context(request).gateway.identity.ca


async def _verified(request: web.Request, body: bytes) -> str:
    """The word the auditor looks for, computed by the gateway's own verifier."""
    gateway = context(request).gateway
    try:
        await asyncio.get_running_loop().run_in_executor(
            gateway.cpu, verify_receipt, body, _trusted(request)
        )
    except GatewayError as exc:
        return f"<span class='bad'>NOT verified</span>: {e(exc.code)}: {e(exc.message)}"
    return "<span class='good'>verified</span>"


async def _receipts(request: web.Request, ids: Sequence[tuple[str, str, str | None]]) -> str:
    store = context(request).gateway.store
    rows = []
    for receipt_id, kind, destination in ids:
        stored = await store.receipt(receipt_id)
        verdict = "<span class='bad'>NOT verified</span>: not in the store (purged)"
        if stored is not None:
            verdict = await _verified(request, stored[1])
        rows.append(
            [
                e(kind),
                e(destination),
                f"<code>{e(receipt_id)}</code>",
                verdict,
                link(f"/console/receipts/{segment(receipt_id)}", "download"),
            ]
        )
    return table(("Kind", "Destination", "ReceiptID", "Verification", ""), rows, "receipts")


def _timeline(entries: Sequence[Entry], track_id: str | None) -> str:
    rows = []
    for entry in entries:
        if track_id is not None and entry.track_id not in (None, track_id):
            continue
        detail = json.loads(entry.detail)
        text = "; ".join(
            f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in detail.items()
            if v not in (None, "", [])
        )
        rows.append(
            [
                f"<time>{e(entry.at)}</time>",
                f"<span class='event {e(entry.event)}'>{e(entry.event)}</span>",
                e(entry.destination),
                e(text),
                str(entry.seq),
            ]
        )
    return table(("Time", "Event", "Destination", "Detail", "Audit #"), rows, "timeline")


def _retry_forms(view: MessageView, csrf: str) -> str:
    forms = [
        f"<form method='post' action='/console/messages/{e(segment(view.message_id))}/retry' "
        f"class='inline retry'>{csrf_field(csrf)}"
        f"<input type='hidden' name='destination' value='{e(d.participant)}'>"
        f"<input type='hidden' name='track_id' value='{e(view.track_id)}'>"
        f"<button>Retry {e(d.participant)}</button></form>"
        for d in view.destinations
        if d.state == "failed"
    ]
    return "<p class='actions'>" + " ".join(forms) + "</p>" if forms else ""


async def _explain(request: web.Request, view: MessageView) -> str:
    record = await context(request).gateway.store.record(view.track_id)
    if record is None:
        return ""
    table_now = context(request).gateway.config.table
    facts = RouteFacts(record.action, record.document, view.sender, record.recipient)
    explanation = explain(table_now, facts)
    same = record.table_digest == table_now.digest
    note = (
        "the table in force is the one that routed it"
        if same
        else f"explained against the table in force ({table_now.digest[:12]}…); the message "
        f"was routed by {record.table_digest[:12]}…"
    )
    downloads = (
        "<p class='downloads'>Envelopes: "
        + link(f"/console/envelopes/{view.track_id}/original", "as received")
        + " · "
        + link(f"/console/envelopes/{view.track_id}/forwarded", "as forwarded")
        + "</p>"
        if record.raw
        else "<p class='downloads'>Envelopes purged by retention"
        + (f" at {e(view.bodies_purged_at)}" if view.bodies_purged_at else "")
        + ".</p>"
    )
    return (
        "<dl class='facts'>"
        f"<dt>Rule</dt><dd>{e(view.route)}</dd>"
        f"<dt>Table digest</dt><dd><code>{e(record.table_digest)}</code></dd>"
        f"<dt>Action</dt><dd>{e(record.action)}</dd><dt>Document</dt><dd>{e(record.document)}</dd>"
        f"<dt>To</dt><dd>{e(record.recipient)}</dd></dl>"
        f"<details class='explain' open><summary>Explain</summary><p>{e(note)}:</p>"
        + explanation_html(explanation)
        + "</details>"
        + downloads
    )


async def _accepted_section(
    request: web.Request, view: MessageView, entries: Sequence[Entry], csrf: str
) -> str:
    receipts = [(r.id, r.kind, r.destination) for r in view.receipts]
    return (
        f"<section class='message' data-track-id='{e(view.track_id)}'>"
        f"<h2>From {e(view.sender)} — {e(view.state)}</h2>"
        "<dl class='facts'>"
        f"<dt>MessageID</dt><dd><code>{e(view.message_id)}</code></dd>"
        f"<dt>TrackID</dt><dd><code>{e(view.track_id)}</code></dd>"
        + (
            f"<dt>Upstream TrackID</dt><dd><code>{e(view.upstream_track_id)}</code></dd>"
            if view.upstream_track_id
            else ""
        )
        + f"<dt>Accepted</dt><dd><time>{e(view.accepted_at)}</time></dd></dl>"
        "<h3>Destinations</h3>"
        + table(
            ("Destination", "State", "Attempts", "Last error"),
            [
                [
                    e(d.participant),
                    f"<span class='state {e(d.state)}'>{e(d.state)}</span>",
                    str(d.attempts),
                    e(d.last_error),
                ]
                for d in view.destinations
            ],
            "destinations",
        )
        + _retry_forms(view, csrf)
        + "<h3>Timeline</h3>"
        + _timeline(entries, view.track_id)
        + "<h3>Receipts</h3>"
        + await _receipts(request, receipts)
        + "<h3>Routing decision</h3>"
        + await _explain(request, view)
        + "</section>"
    )


async def _rejected_section(request: web.Request, item: RejectedView) -> str:
    store = context(request).gateway.store
    stored = await store.receipt(item.receipt_id)
    reasons = ""
    if stored is not None:
        receipt = read_receipt(stored[1])
        reasons = "".join(f"<li>{e(code)}: {e(text)}</li>" for code, text in receipt.errors)
    return (
        f"<section class='rejection' data-receipt-id='{e(item.receipt_id)}'>"
        f"<h2>Rejected — {e(item.code)}</h2><dl class='facts'>"
        f"<dt>MessageID</dt><dd><code>{e(item.message_id)}</code></dd>"
        f"<dt>Sender</dt><dd>{e(item.sender)}</dd>"
        f"<dt>Rejected</dt><dd><time>{e(item.rejected_at)}</time></dd></dl>"
        f"<h3>Why</h3><ul class='reasons'>{reasons}</ul>"
        "<p>Nothing of a rejected message is stored but its Rejected receipt.</p>"
        "<h3>Receipt</h3>"
        + await _receipts(request, [(item.receipt_id, "Rejected", None)])
        + "</section>"
    )


async def message_page(request: web.Request) -> web.Response:
    session = session_of(request)
    raw_id = request.match_info["message_id"]
    message_id = urn_uuid(raw_id) or raw_id
    store = context(request).gateway.store
    views, rejections = await store.messages_with_id(message_id)
    if not views and not rejections:
        body = f"<p class='error'>No message {e(message_id)} is stored.</p>"
        return page(request, "Message", body, session.csrf, 404)
    entries = await store.timeline(message_id)
    sections = [await _accepted_section(request, v, entries, session.csrf) for v in views]
    sections += [await _rejected_section(request, r) for r in rejections]
    return page(request, f"Message {message_id}", "".join(sections), session.csrf)


async def retry(request: web.Request) -> web.StreamResponse:
    posted = await checked(request)
    if posted is None:
        return refused()
    session, form = posted
    raw_id = request.match_info["message_id"]
    message_id = urn_uuid(raw_id) or raw_id
    destination = form.get("destination") or None
    gateway = context(request).gateway
    count = await request_retry(gateway.store, message_id, destination, session.who)
    if count:
        gateway.wake_delivery()
    return see_other(f"/console/messages/{message_id}")


# -- downloads -------------------------------------------------------------------------------
async def receipt_download(request: web.Request) -> web.Response:
    receipt_id = urn_uuid(request.match_info["receipt_id"]) or request.match_info["receipt_id"]
    stored = await context(request).gateway.store.receipt(receipt_id)
    if stored is None:
        raise web.HTTPNotFound(text=f"no receipt {receipt_id}\n")
    name = receipt_id.removeprefix("urn:uuid:")
    return attachment(stored[1], f"receipt-{name}.xml", "application/xml")


async def envelope_download(request: web.Request) -> web.Response:
    track_id = request.match_info["track_id"]
    which = request.match_info["which"]
    record = await context(request).gateway.store.record(track_id)
    if record is None or not record.raw:
        raise web.HTTPNotFound(text=f"no stored envelope for {track_id}\n")
    body = record.raw if which == "original" else record.forwarded
    name = track_id.removeprefix("urn:uuid:")
    return attachment(body, f"{which}-{name}.xml", "application/soap+xml")
