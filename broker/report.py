"""The exchange matrix (`broker report`): which state's system sends to which, how much, how
fast, how often failing. It is the EEC's "data matrix" of foreign-trade data flows. The numbers
come from one aggregate query (``exchange_matrix``), as CSV, or as an SVG to paste into a
working group's document."""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Sequence

from broker.store.base import MatrixRow

CSV_HEADER = (
    "sender", "destination", "process", "messages", "delivered", "failed", "pending",
    "p50_ms", "p95_ms",
)  # fmt: skip


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"


def as_csv(rows: Sequence[MatrixRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for r in rows:
        writer.writerow(
            (
                r.sender, r.destination, r.process, r.messages, r.delivered, r.failed,
                r.pending, _ms(r.p50_ms), _ms(r.p95_ms),
            )
        )  # fmt: skip
    return out.getvalue()


def heat(row: MatrixRow) -> int:
    """0 (everything delivered) to 5 (nothing delivered): the colour step of a cell, by the
    share of its destinations not delivered, failures counting double against pending."""
    if not row.messages:
        return 0
    trouble = (2 * row.failed + row.pending) / (2 * row.messages)
    return min(5, int(trouble * 5 + 0.999))


COLOURS = ("#2e8b57", "#7aa843", "#c2b13a", "#d98c2b", "#d2572a", "#b22222")
"""Fill of each :func:`heat` step (the console's stylesheet uses the same)."""


def as_svg(rows: Sequence[MatrixRow], title: str) -> str:
    """Sender rows × destination columns, one cell per row (ask the store with
    ``merge_processes``): messages, share delivered, failed and pending, p50 and p95, and the
    colour of :func:`heat`."""
    cells = {(r.sender, r.destination): r for r in rows}
    senders = sorted({s for s, _ in cells})
    destinations = sorted({d for _, d in cells})
    width, height, left, top = 150, 62, 90, 60
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width * len(destinations) + 10}"'
        f' height="{top + height * len(senders) + 10}" font-family="sans-serif" font-size="12">',
        f'<text x="4" y="18" font-size="14" font-weight="bold">{html.escape(title)}</text>',
        '<text x="4" y="50">from ↓ to →</text>',
    ]
    for j, destination in enumerate(destinations):
        x = left + j * width + width / 2
        parts.append(f'<text x="{x}" y="50" text-anchor="middle">{html.escape(destination)}</text>')
    for i, sender in enumerate(senders):
        y = top + i * height
        parts.append(f'<text x="4" y="{y + height / 2 + 4}">{html.escape(sender)}</text>')
        for j, destination in enumerate(destinations):
            row = cells.get((sender, destination))
            if row is None:
                continue
            x = left + j * width
            parts.append(
                f'<rect x="{x}" y="{y}" width="{width - 4}" height="{height - 4}" '
                f'fill="{COLOURS[heat(row)]}"/>'
                f'<text x="{x + 6}" y="{y + 16}" fill="white">{row.messages} msg, '
                f"{row.delivered / row.messages:.0%} delivered</text>"
                f'<text x="{x + 6}" y="{y + 32}" fill="white">{row.failed} failed, '
                f"{row.pending} pending</text>"
                f'<text x="{x + 6}" y="{y + 48}" fill="white">p50 {_ms(row.p50_ms) or "–"} ms, '
                f"p95 {_ms(row.p95_ms) or '–'} ms</text>"
            )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
