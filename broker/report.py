"""The exchange matrix (`broker report`): which state's system sends to which, how much, how
fast, how often failing. It is the EEC's "data matrix" of foreign-trade data flows. The numbers
come from one aggregate query (``exchange_matrix``), as CSV, or as an SVG to paste into a
working group's document."""

from __future__ import annotations

import csv
import html
import io
from collections import defaultdict
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


def _colour(delivered_share: float) -> str:
    """Red (nothing delivered) through amber to green (all delivered)."""
    red = int(220 * (1 - delivered_share) + 40 * delivered_share)
    green = int(60 * (1 - delivered_share) + 170 * delivered_share)
    return f"rgb({red},{green},80)"


def as_svg(rows: Sequence[MatrixRow], title: str) -> str:
    """Sender rows × destination columns, all processes summed: messages, share delivered
    (the colour), failed and pending."""
    cells: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for r in rows:
        cell = cells[r.sender, r.destination]
        cell[0] += r.messages
        cell[1] += r.delivered
        cell[2] += r.failed
        cell[3] += r.pending
    senders = sorted({s for s, _ in cells})
    destinations = sorted({d for _, d in cells})
    width, height, left, top = 110, 46, 90, 60
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
            counts = cells.get((sender, destination))
            if counts is None:
                continue
            messages, delivered, failed, pending = counts
            x = left + j * width
            parts.append(
                f'<rect x="{x}" y="{y}" width="{width - 4}" height="{height - 4}" '
                f'fill="{_colour(delivered / messages if messages else 0)}"/>'
                f'<text x="{x + 6}" y="{y + 18}" fill="white">{messages} msg, '
                f"{delivered / messages:.0%}</text>"
                f'<text x="{x + 6}" y="{y + 34}" fill="white">{failed} failed, {pending} pending'
                "</text>"
            )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
