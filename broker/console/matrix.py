"""The exchange matrix, the console's home page: sender × destination, with counts, the share
delivered, failed and pending, p50/p95 from acceptance to delivery, a colour step per cell, a
time-series strip, and the same numbers as CSV and SVG (`broker report` gives them too)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from aiohttp import web

from broker import clock, report
from broker.console.auth import session_of
from broker.console.context import context
from broker.console.layout import e, epoch_time, link, page
from broker.store.base import JobState, MatrixRow, SeriesPoint

WINDOWS = {"1h": dt.timedelta(hours=1), "24h": dt.timedelta(hours=24), "7d": dt.timedelta(days=7)}
STATES: tuple[JobState, ...] = ("pending", "delivered", "failed")
STRIP_INTERVALS = 48


class BadFilter(ValueError):
    pass


@dataclass(frozen=True)
class MatrixFilter:
    since: str
    until: str
    window: str
    """1h, 24h, 7d or custom."""
    process: str | None
    document: str | None
    state: JobState | None

    @classmethod
    def of(cls, request: web.Request) -> MatrixFilter:
        """From the query string: the last 24 h by default; since/until make it custom."""
        q = request.query
        now = clock.now()
        window = q.get("window") or ("custom" if q.get("since") or q.get("until") else "24h")
        if window not in (*WINDOWS, "custom"):
            raise BadFilter(f"window {window!r} is 1h, 24h, 7d or custom")
        try:
            until = clock.parse_rfc3339(q["until"]) if q.get("until") else now
            since = clock.parse_rfc3339(q["since"]) if q.get("since") else None
        except ValueError as exc:
            raise BadFilter(f"since/until: {exc}") from exc
        if window != "custom" or since is None:  # a custom window without since: 24 h
            since = until - WINDOWS.get(window, WINDOWS["24h"])
        if since >= until:
            raise BadFilter("since must be before until")
        state = q.get("state") or None
        if state is not None and state not in STATES:
            raise BadFilter(f"state {state!r} is pending, delivered or failed")
        return cls(
            clock.format_time(since),
            clock.format_time(until),
            window,
            q.get("process") or None,
            q.get("document") or None,
            state,
        )

    async def rows(self, request: web.Request, merge: bool) -> list[MatrixRow]:
        return await context(request).gateway.store.matrix(
            self.since,
            self.until,
            self.process,
            document=self.document,
            state=self.state,
            merge_processes=merge,
        )


def _bad(exc: BadFilter) -> web.Response:
    return web.Response(status=400, text=f"{exc}\n")


async def matrix_csv(request: web.Request) -> web.Response:
    try:
        chosen = MatrixFilter.of(request)
    except BadFilter as exc:
        return _bad(exc)
    return web.Response(
        text=report.as_csv(await chosen.rows(request, False)), content_type="text/csv"
    )


async def matrix_svg(request: web.Request) -> web.Response:
    try:
        chosen = MatrixFilter.of(request)
    except BadFilter as exc:
        return _bad(exc)
    title = f"EAEU exchange {chosen.since} to {chosen.until}" + (
        f", {chosen.process}" if chosen.process else ""
    )
    svg = report.as_svg(await chosen.rows(request, True), title)
    return web.Response(
        text=svg,
        content_type="image/svg+xml",
        headers={"Content-Disposition": 'inline; filename="exchange-matrix.svg"'},
    )


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} ms"


def _cell(row: MatrixRow, chosen: MatrixFilter) -> str:
    share = row.delivered / row.messages
    href_link = link(
        "/console/messages",
        f"{row.messages} messages",
        sender=row.sender,
        destination=row.destination,
        since=chosen.since,
        until=chosen.until,
        process=chosen.process,
        document=chosen.document,
        state=chosen.state,
    )
    return (
        f"<td class='cell heat-{report.heat(row)}' data-sender='{e(row.sender)}' "
        f"data-destination='{e(row.destination)}' data-messages='{row.messages}'>"
        f"<strong>{href_link}</strong><br>"
        f"<span class='shares'>{share:.0%} delivered · {row.failed} failed · "
        f"{row.pending} pending</span><br>"
        f"<span class='times'>p50 {_ms(row.p50_ms)} · p95 {_ms(row.p95_ms)}</span></td>"
    )


def _grid(rows: list[MatrixRow], chosen: MatrixFilter) -> str:
    if not rows:
        return "<p class='empty'>No message was accepted in this window with these filters.</p>"
    cells = {(r.sender, r.destination): r for r in rows}
    senders = sorted({s for s, _ in cells})
    destinations = sorted({d for _, d in cells})
    head = "".join(f"<th scope='col'>{e(d)}</th>" for d in destinations)
    lines = []
    for sender in senders:
        tds = "".join(
            _cell(cells[sender, d], chosen) if (sender, d) in cells else "<td class='none'></td>"
            for d in destinations
        )
        lines.append(f"<tr><th scope='row'>{e(sender)}</th>{tds}</tr>")
    legend = "".join(
        f"<span class='swatch heat-{step}'>{label}</span>"
        for step, label in enumerate(
            ("all delivered", "&nbsp;", "&nbsp;", "&nbsp;", "&nbsp;", "none delivered")
        )
    )
    return (
        "<table class='matrix'><thead><tr><th>from ↓ to →</th>"
        f"{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"
        f"<p class='legend'>Colour: share not delivered (failures count double) {legend}</p>"
    )


def _strip(points: list[SeriesPoint], start: float, step: float) -> str:
    """Four rows of bars, one bar per interval: inline SVG, nothing scripted."""
    series = (("accepted", "#1f5f9a"), ("rejected", "#8a5a00"), ("delivered", "#2e8b57"),
              ("failed", "#b22222"))  # fmt: skip
    by_bucket = {round((p.start - start) / step): p for p in points}
    width, row_height, left = 14, 26, 90
    parts = [
        f"<svg class='strip' xmlns='http://www.w3.org/2000/svg' role='img' "
        f"width='{left + width * STRIP_INTERVALS}' height='{row_height * len(series) + 20}' "
        "aria-label='accepted, rejected, delivered and failed per interval'>"
    ]
    for index, (name, colour) in enumerate(series):
        top = index * row_height
        values = [
            getattr(by_bucket[b], name) if b in by_bucket else 0 for b in range(STRIP_INTERVALS)
        ]
        peak = max(values) or 1
        parts.append(f"<text x='0' y='{top + 17}' font-size='12'>{name} {sum(values)}</text>")
        for bucket, value in enumerate(values):
            if not value:
                continue
            height = max(1.0, (row_height - 6) * value / peak)
            parts.append(
                f"<rect x='{left + bucket * width}' y='{top + row_height - 3 - height:.1f}' "
                f"width='{width - 1}' height='{height:.1f}' fill='{colour}'>"
                f"<title>{e(epoch_time(start + bucket * step))}: {value} {name}</title></rect>"
            )
    bottom = row_height * len(series) + 14
    end = start + step * STRIP_INTERVALS
    parts.append(
        f"<text x='{left}' y='{bottom}' font-size='11'>{e(epoch_time(start))}</text>"
        f"<text x='{left + width * STRIP_INTERVALS}' y='{bottom}' font-size='11' "
        f"text-anchor='end'>{e(epoch_time(end))}</text></svg>"
    )
    return "".join(parts)


def _filters(chosen: MatrixFilter) -> str:
    def option(value: str, label: str, current: str | None) -> str:
        selected = " selected" if value == (current or "") else ""
        return f"<option value='{e(value)}'{selected}>{e(label)}</option>"

    windows = "".join(
        option(w, label, chosen.window)
        for w, label in (
            ("1h", "last hour"),
            ("24h", "last 24 h"),
            ("7d", "last 7 days"),
            ("custom", "custom (since/until)"),
        )
    )
    states = option("", "any", chosen.state) + "".join(option(s, s, chosen.state) for s in STATES)
    custom = chosen.window == "custom"
    return (
        "<form method='get' action='/console/' class='filters'>"
        f"<label>Process <input name='process' value='{e(chosen.process)}' placeholder='P.TS.01'"
        " size='10'></label>"
        f"<label>Document <input name='document' value='{e(chosen.document)}'"
        " placeholder='R.036' size='8'></label>"
        f"<label>Window <select name='window'>{windows}</select></label>"
        f"<label>Since <input name='since' value='{e(chosen.since if custom else '')}' size='24'"
        " placeholder='2026-12-01T00:00:00Z'></label>"
        f"<label>Until <input name='until' value='{e(chosen.until if custom else '')}' size='24'>"
        "</label>"
        f"<label>State <select name='state'>{states}</select></label>"
        "<button>Show</button></form>"
    )


async def matrix_page(request: web.Request) -> web.Response:
    session = session_of(request)
    try:
        chosen = MatrixFilter.of(request)
    except BadFilter as exc:
        return page(request, "Exchange matrix", f"<p class='error'>{e(exc)}</p>", session.csrf, 400)
    store = context(request).gateway.store
    rows = await chosen.rows(request, True)
    start = clock.parse_time(chosen.since).timestamp()
    step = (clock.parse_time(chosen.until).timestamp() - start) / STRIP_INTERVALS
    points = await store.series(chosen.since, chosen.until, start, step, chosen.process)
    query = request.query_string
    exports = (
        f"<p class='exports'>Export: <a href='/console/matrix.csv?{e(query)}'>CSV</a> · "
        f"<a href='/console/matrix.svg?{e(query)}'>SVG</a> (for a report)</p>"
    )
    body = (
        _filters(chosen)
        + f"<p>Destinations of messages accepted from <time>{e(chosen.since)}</time> to "
        f"<time>{e(chosen.until)}</time>"
        + (f", process {e(chosen.process)}" if chosen.process else "")
        + (f", document {e(chosen.document)}" if chosen.document else "")
        + (f", {e(chosen.state)} only" if chosen.state else "")
        + ".</p>"
        + _grid(rows, chosen)
        + f"<h2>Per interval ({e(round(step))} s each)</h2>"
        + _strip(points, start, step)
        + exports
    )
    return page(request, "Exchange matrix", body, session.csrf)
