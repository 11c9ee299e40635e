"""Retention (SPEC §6): what a routing table's ``retention`` periods mean for the store now.

A purge empties the stored envelopes (received and forwarded) of messages finished longer ago
than ``bodies``, and deletes the receipts and status of those finished longer ago than
``receipts``; a rule's own periods override the table's. The audit chain stays, and each
purge is an audit event in it. ``broker store purge`` runs one; ``broker serve`` runs one a day.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from broker.routing.table import RoutingTable
from broker.store import Store
from broker.store.base import StoreUnavailable
from broker.store.ledger import PurgeCutoffs, Purged

log = logging.getLogger("broker.retention")
DAY = 86_400.0


def cutoffs(table: RoutingTable, now: float) -> PurgeCutoffs:
    """The moments before which a message must have finished for each purge, per rule
    (messages of a rule no longer in the table follow the table's own periods)."""

    def before(period: float | None) -> float | None:
        return None if period is None else now - period

    rules = {
        rule.name: rule.retention.over(table.retention) if rule.retention else table.retention
        for rule in table.rules
    }
    return PurgeCutoffs(
        bodies={name: before(r.bodies) for name, r in rules.items()},
        receipts={name: before(r.receipts) for name, r in rules.items()},
        default_bodies=before(table.retention.bodies),
        default_receipts=before(table.retention.receipts),
    )


def keeps_everything(table: RoutingTable) -> bool:
    periods = [table.retention, *(r.retention for r in table.rules if r.retention is not None)]
    return all(p.bodies is None and p.receipts is None for p in periods)


async def purge(store: Store, table: RoutingTable, *, dry_run: bool = False) -> Purged:
    return await store.purge(cutoffs(table, time.time()), dry_run=dry_run)


async def _wait(stopped: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stopped`` is set first; True if it was."""
    try:
        await asyncio.wait_for(stopped.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def purge_daily(
    store: Store,
    table: Callable[[], RoutingTable],
    stopped: asyncio.Event,
    every: float = DAY,
    first: float = 60.0,
) -> None:
    """``broker serve``'s purge: ``first`` seconds after the start, then every ``every``
    seconds, with the table in force at that moment, until ``stopped``. A store that is down
    is tried again at the next run; the gateway keeps serving meanwhile."""
    if await _wait(stopped, first):
        return
    while True:
        current = table()
        if not keeps_everything(current):
            try:
                done = await purge(store, current)
            except StoreUnavailable as exc:
                log.warning("retention purge skipped: %s", exc, extra={"event": "purge_failed"})
            else:
                log.info(
                    "retention purge: bodies of %d message(s) (%d bytes), records of %d",
                    done.bodies,
                    done.bytes,
                    done.records,
                    extra={"event": "purged", "bodies": done.bodies, "records": done.records},
                )
        if await _wait(stopped, every):
            return
