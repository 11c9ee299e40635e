"""`broker bench --console`: the console's queries on a store of a million messages.

The store is filled by SQL (``fixture_*`` in each dialect's queries.sql): ``--messages``
messages over the last 30 days, one destination each (5 % failed, 5 % pending), an Accepted
receipt each, a Failed receipt per failure and a rejection per 100 messages. Each console query
then runs through the ledger, as the pages call it, and its median of five runs is reported
against the issue's budget of one second. A fresh SQLite file, or a fresh schema of the given
PostgreSQL database (dropped afterwards): never the gateway's own store.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from broker import clock
from broker.store import open_store
from broker.store.base import MessageQuery
from broker.store.connector import Tx
from broker.store.ledger import Ledger, cursor_of
from broker.store.postgres import create_schema, drop_schema

Query = Callable[[], Awaitable[Sequence[object]]]
BUDGET = 1.0
"""Seconds: the issue's bound for the matrix and a filtered search."""
SPAN = dt.timedelta(days=30)
RUNS = 5
PAGE = 51  # the console's page of 50, and one more to know there is a next page


@dataclass(frozen=True)
class Timing:
    name: str
    seconds: float
    rows: int

    def line(self) -> str:
        verdict = "ok" if self.seconds < BUDGET else "OVER 1 s"
        return f"  {self.name:<52} {self.seconds * 1000:8.1f} ms  {self.rows:>7} rows  {verdict}"


async def _fill(store: Ledger, count: int) -> float:
    """Insert the fixture; seconds taken."""
    now = time.time()
    start = now - SPAN.total_seconds()
    params = {"count": count, "start": start, "step": SPAN.total_seconds() / count}
    began = time.perf_counter()
    for name in ("fixture_messages", "fixture_jobs", "fixture_receipts"):

        async def op(tx: Tx, name: str = name) -> None:
            await tx.execute(name, params)

        await store.db.write(op)
    if store.db.dialect == "postgresql":
        # What autovacuum does on a live server once this much has changed; SQLite is left
        # as the gateway leaves it (never analysed).
        async def analyse(tx: Tx) -> None:
            await tx.execute("analyse")

        await store.db.write(analyse)
    return time.perf_counter() - began


async def _time(name: str, run: Query) -> Timing:
    seconds: list[float] = []
    rows = 0
    for _ in range(RUNS):
        began = time.perf_counter()
        rows = len(await run())
        seconds.append(time.perf_counter() - began)
    return Timing(name, statistics.median(seconds), rows)


async def _measure(store: Ledger, count: int) -> list[Timing]:
    now = clock.now()

    def ago(delta: dt.timedelta) -> str:
        return clock.format_time(now - delta)

    until = clock.format_time(now)
    day, week, month = ago(dt.timedelta(days=1)), ago(dt.timedelta(days=7)), ago(SPAN)
    some_id = f"urn:uuid:10000000-0000-4000-8000-{count // 2:012d}"
    cases: list[tuple[str, Query]] = [
        ("matrix, last 24 h (the home page)",
         lambda: store.matrix(day, until, merge_processes=True)),
        ("matrix, last 7 days", lambda: store.matrix(week, until, merge_processes=True)),
        ("matrix, all 30 days, per process (CSV)", lambda: store.matrix(month, until)),
        ("matrix, last 24 h, P.TS.02, failed only",
         lambda: store.matrix(day, until, "P.TS.02", state="failed", merge_processes=True)),
        ("time-series strip, last 24 h",
         lambda: store.series(day, until, (now - dt.timedelta(days=1)).timestamp(), 1800)),
        ("search: newest page, no filter", lambda: store.search(MessageQuery(), PAGE)),
        ("search: state failed", lambda: store.search(MessageQuery(state="failed"), PAGE)),
        ("search: sender KZ-SW, destination RU-SW",
         lambda: store.search(MessageQuery(sender="KZ-SW", destination="RU-SW"), PAGE)),
        ("search: sender, process, document, last 7 days",
         lambda: store.search(
             MessageQuery(sender="BY-SW", process="P.TS.01", document="R.031", since=week), PAGE
         )),
        ("search: error code DESTINATION_REJECTED",
         lambda: store.search(MessageQuery(code="DESTINATION_REJECTED"), PAGE)),
        ("search: rejected", lambda: store.search(MessageQuery(state="rejected"), PAGE)),
        ("search: one MessageID", lambda: store.search(MessageQuery(message_id=some_id), PAGE)),
        ("search: rule rule-1, pending, 2nd page",
         lambda: _second_page(store, MessageQuery(route="rule-1", state="pending"))),
    ]  # fmt: skip
    return [await _time(name, run) for name, run in cases]


async def _second_page(store: Ledger, query: MessageQuery) -> Sequence[object]:
    first = await store.search(query, PAGE)
    return await store.search(query, PAGE, cursor_of(first[-2])) if len(first) > 1 else []


async def run(count: int, store_url: str | None, folder: Path) -> list[str]:
    schema = None
    if store_url and store_url.startswith("postgresql://"):
        schema, url = await create_schema(store_url, "bench_console")
    else:
        url = f"sqlite:///{folder / 'console-bench.sqlite3'}"
    store = open_store(url, create=True)
    await store.open()
    try:
        filled = await _fill(store, count)
        timings = await _measure(store, count)
    finally:
        await store.close()
        if schema is not None and store_url is not None:
            await drop_schema(store_url, schema)
    dialect = "PostgreSQL" if schema else "SQLite"
    lines = [
        f"console queries on {dialect}, {count:,} messages over 30 days "
        f"(filled in {filled:.1f} s); median of {RUNS} runs, budget 1 s each:",
        *(t.line() for t in timings),
    ]
    over = [t for t in timings if t.seconds >= BUDGET]
    lines.append("every query within 1 s" if not over else f"{len(over)} query(ies) over 1 s")
    return lines


def run_console_bench(count: int, store_url: str | None, folder: Path) -> list[str]:
    return asyncio.run(run(count, store_url, folder))
