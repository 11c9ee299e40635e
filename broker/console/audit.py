"""Audit: the head hash to record elsewhere, the result of the last chain verification and a
button to run one now (in the background, with progress: a long log takes time), and the
export of a range that `broker audit verify --file` checks on its own."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from broker import clock
from broker.console.auth import checked, refused, session_of
from broker.console.context import AuditRun, ConsoleContext, audit, context
from broker.console.layout import attachment, csrf_field, e, page, see_other
from broker.operator import export_range, verify_store

RUNS = web.AppKey("console_audit_tasks", set)


async def _verify(ctx: ConsoleContext, run: AuditRun) -> None:
    gateway = ctx.gateway

    def progress(count: int) -> None:
        run.checked = count

    try:
        result = await verify_store(
            gateway.store, gateway.identity.certificate.public_key(), progress, gateway.cpu
        )
    except Exception as exc:  # the store went away: say so on the page, keep the console up
        run.error = f"{type(exc).__name__}: {exc}"
    else:
        run.checked, run.head, run.problem = result.entries, result.head, result.problem
    finally:
        run.finished_at = clock.format_time(clock.now())


def _run_json(run: AuditRun) -> dict[str, object]:
    return {
        "running": run.running,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "checked": run.checked,
        "total": run.total,
        "head": run.head,
        "problem": run.problem,
        "error": run.error,
    }


def _run_html(run: AuditRun) -> str:
    if run.started_at is None:
        return "<p class='audit-run'>No verification has run from this console yet.</p>"
    if run.running:
        state = "<span class='running'>running</span>"
    elif run.error:
        state = f"<span class='bad'>could not finish</span>: {e(run.error)}"
    elif run.problem:
        state = f"<span class='bad'>BROKEN</span>: {e(run.problem)}"
    else:
        state = "<span class='good'>intact</span>: every entry and signature checks"
    return (
        "<div class='audit-run' data-progress='/console/audit/progress.json'>"
        f"<p>Verification started <time>{e(run.started_at)}</time> by {e(run.by)}: "
        f"<span class='verdict'>{state}</span></p>"
        f"<p><progress max='{run.total or 1}' value='{run.checked}'></progress> "
        f"<span class='checked'>{run.checked}</span> of {run.total} entries"
        + (f", finished <time>{e(run.finished_at)}</time>" if run.finished_at else "")
        + "</p>"
        + (f"<p>Chain head checked: <code>{e(run.head)}</code></p>" if run.head else "")
        + "</div>"
    )


async def audit_page(request: web.Request) -> web.Response:
    session = session_of(request)
    ctx = context(request)
    head = await ctx.gateway.store.audit_head()
    seq, digest = head if head else (0, "")
    body = (
        "<dl class='facts'>"
        f"<dt>Entries</dt><dd>{seq}</dd>"
        f"<dt>Head hash</dt><dd><code class='head'>{e(digest)}</code></dd></dl>"
        "<p>Record the head hash elsewhere (a ticket, a letter): it pins every entry up to it.</p>"
        "<h2>Chain verification</h2>"
        + _run_html(ctx.audit_run)
        + "<form method='post' action='/console/audit/verify'>"
        f"{csrf_field(session.csrf)}<button"
        + (" disabled" if ctx.audit_run.running else "")
        + ">Verify the chain now</button></form>"
        "<h2>Export</h2><form method='get' action='/console/audit/export' class='filters'>"
        "<label>First entry <input name='first' value='1' inputmode='numeric'></label>"
        f"<label>Last entry <input name='last' value='{seq}' inputmode='numeric'></label>"
        "<button>Download JSON</button></form>"
        "<p>Check an export on its own with <code>broker audit verify --file FILE</code>.</p>"
    )
    return page(request, "Audit", body, session.csrf)


async def start_verification(request: web.Request) -> web.StreamResponse:
    posted = await checked(request)
    if posted is None:
        return refused()
    session, _ = posted
    ctx = context(request)
    if not ctx.audit_run.running:
        head = await ctx.gateway.store.audit_head()
        await audit(request, session.who, "console_audit_verify")
        ctx.audit_run = AuditRun(
            started_at=clock.format_time(clock.now()),
            total=(head[0] + 1) if head else 1,  # this request's own entry included
            by=session.who,
        )
        task = asyncio.create_task(_verify(ctx, ctx.audit_run))
        tasks: set[asyncio.Task[None]] = request.app[RUNS]
        tasks.add(task)  # keep a reference until it ends
        task.add_done_callback(tasks.discard)
    return see_other("/console/audit")


async def progress(request: web.Request) -> web.Response:
    return web.json_response(_run_json(context(request).audit_run))


async def export(request: web.Request) -> web.Response:
    first_text = request.query.get("first", "1") or "1"
    last_text = request.query.get("last", "") or ""
    if not first_text.isdigit() or (last_text and not last_text.isdigit()):
        return web.Response(status=400, text="first and last are entry numbers\n")
    first, last = max(1, int(first_text)), int(last_text) if last_text else None
    data = await export_range(context(request).gateway.store, first, last)
    name = f"audit-{first}-{last or 'head'}.json"
    return attachment(json.dumps(data, indent=1).encode(), name, "application/json")
