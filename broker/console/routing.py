"""Routing: the table in force (digest, load time, every `routing check` warning at its line),
an explain box, and a reload button that shows the check's errors when the table is refused.
The console never writes routing.yaml: editing stays in the operator's editor and git."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiohttp import web

from broker import xmlsafe
from broker.console.auth import checked, refused, session_of
from broker.console.context import audit, context
from broker.console.layout import csrf_field, e, epoch_time, page, table
from broker.envelope import parse_envelope
from broker.errors import RefusalError
from broker.routing.explain import Explanation, explain
from broker.routing.table import RouteFacts, RoutingTable


def _rules(routing: RoutingTable) -> str:
    rows = []
    for rule in routing.rules:
        match = "<br>".join(f"{e(k)}: {e(v)}" for k, v in rule.match.items()) or "(any)"
        if rule.reject is not None:
            outcome = f"<span class='bad'>reject</span>: {e(rule.reject)}"
        elif rule.deliver == "addressee":
            outcome = "deliver to the addressee"
        else:
            outcome = "deliver to " + e(", ".join(g.text for g in rule.deliver or ()))
        rows.append(
            [
                str(rule.line),
                f"<strong>{e(rule.name)}</strong>",
                match,
                outcome,
                e(rule.retry.describe()),
                e(rule.retention.describe()) if rule.retention else "the table's",
            ]
        )
    return table(("Line", "Rule", "Match", "Outcome", "Retry", "Retention"), rows, "rules")


def explanation_html(result: Explanation) -> str:
    """The facts, every rule tried with why it did not match, and the outcome: the routing
    page's explain box and a message's detail both show this."""
    facts = result.facts
    verdicts = "".join(
        f"<li>rule <strong>{e(v.rule.name)}</strong> (line {v.rule.line}): "
        + ("<strong>matches</strong>" if v.mismatch is None else f"no — {e(v.mismatch)}")
        + "</li>"
        for v in result.verdicts
    )
    outcome = (
        f"<p class='bad'>refused: {e(result.refusal)}</p>"
        if result.refusal
        else "<p class='good'>deliver to "
        + e(", ".join(f"{p.id} ({p.endpoint})" for p in result.destinations))
        + "</p>"
    )
    return (
        f"<p>action {e(facts.action)}, document {e(facts.document or '(none)')}, "
        f"from {e(facts.sender)}, to {e(facts.to)}</p><ol>{verdicts}</ol>{outcome}"
    )


def _explanation(result: Explanation) -> str:
    return (
        "<section class='explanation'><h2>Explanation</h2>"
        + explanation_html(result)
        + "</section>"
    )


def _explain_form(csrf: str, given: Mapping[str, str]) -> str:
    fields = "".join(
        f"<label>{label} <input name='{name}' value='{e(given.get(name, ''))}' size='40'></label>"
        for name, label in (
            ("action", "Action"),
            ("document", "Document"),
            ("from", "From"),
            ("to", "To"),
        )
    )
    return (
        "<h2>Explain</h2><div class='explain-forms'>"
        f"<form method='get' action='/console/routing' class='filters'>{fields}"
        "<button name='explain' value='1'>Explain</button></form>"
        "<form method='post' action='/console/routing/explain' class='paste'>"
        f"{csrf_field(csrf)}<label>or paste an envelope<br>"
        "<textarea name='envelope' rows='6' cols='80'></textarea></label><br>"
        "<label>From (if its ReplyTo does not name one) <input name='from' size='12'></label> "
        "<button>Explain this envelope</button></form></div>"
    )


async def routing_page(
    request: web.Request,
    extra: str = "",
    status: int = 200,
    given: Mapping[str, str] | None = None,
) -> web.Response:
    session = session_of(request)
    current = context(request).gateway.config.current
    routing = current.table
    query = dict(request.query) if given is None else dict(given)
    if query.get("explain"):
        facts = RouteFacts(
            query.get("action", ""), query.get("document", ""), query.get("from", ""),
            query.get("to", ""),
        )  # fmt: skip
        extra = _explanation(explain(routing, facts)) + extra
    warnings = (
        "<ul class='warnings'>" + "".join(f"<li>{e(w)}</li>" for w in current.warnings) + "</ul>"
        if current.warnings
        else "<p><code>broker routing check</code> has no warning for this table.</p>"
    )
    body = (
        extra
        + "<dl class='facts'>"
        f"<dt>Source</dt><dd>{e(routing.source)}</dd>"
        f"<dt>Digest</dt><dd><code class='digest'>{e(routing.digest)}</code></dd>"
        f"<dt>Loaded</dt><dd><time>{e(epoch_time(current.loaded_at))}</time></dd>"
        f"<dt>Gateway</dt><dd>{e(routing.gateway_id)}</dd>"
        f"<dt>Retention</dt><dd>{e(routing.retention.describe())}</dd></dl>"
        "<form method='post' action='/console/routing/reload' class='reload'>"
        f"{csrf_field(session.csrf)}<button>Reload routing, catalog and certificates</button>"
        "</form>"
        "<h2>Warnings</h2>" + warnings + "<h2>Rules</h2>" + _rules(routing)
        + "<p>Participants, their endpoints, pins and delivery health: "
        "<a href='/console/certificates'>Participants &amp; certificates</a>.</p>"
        + _explain_form(session.csrf, query)
    )  # fmt: skip
    return page(request, "Routing", body, session.csrf, status)


async def explain_envelope(request: web.Request) -> web.Response:
    posted = await checked(request)
    if posted is None:
        return refused()
    _, form = posted
    routing = context(request).gateway.config.table
    try:
        envelope = parse_envelope(xmlsafe.parse(form.get("envelope", "").encode()))
    except RefusalError as exc:
        problem = f"<p class='error'>The envelope: {e(exc.code)}: {e(exc.message)}</p>"
        return await routing_page(request, problem, 400, {})
    sender = form.get("from") or None
    if sender is None:
        guessed = routing.participant_for_address(envelope.reply_address.text)
        sender = guessed.id if guessed else ""
    facts = RouteFacts(
        envelope.action.value, envelope.document.code or "", sender, envelope.to.value
    )
    return await routing_page(request, _explanation(explain(routing, facts)), 200, {})


async def reload(request: web.Request) -> web.Response:
    posted = await checked(request)
    if posted is None:
        return refused()
    session, _ = posted
    holder = context(request).gateway.config
    result = await asyncio.get_running_loop().run_in_executor(None, holder.reload)
    done = result.configuration is not None
    await audit(
        request,
        session.who,
        "console_reload",
        detail={"reloaded": done, "digest": holder.table.digest, "errors": result.errors},
    )
    if done:
        box = "<p class='good' role='status'>Reloaded: the new table is in force.</p>"
    else:
        box = (
            "<div class='error' role='alert'><p>Reload refused; the table in force stays.</p><ul>"
            + "".join(f"<li><code>{e(error)}</code></li>" for error in result.errors)
            + "</ul></div>"
        )
    # 200 either way: the page says what happened (a browser logs a 4xx page as an error);
    # scripts that need the status use POST /admin/reload, which answers 422.
    return await routing_page(request, box, 200, {})
