"""The store contract, run against SQLite and PostgreSQL alike (STYLE: one seam, tested twice)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import Sequence

import pytest

from broker import clock
from broker.audit import AuditEvent
from broker.errors import DuplicateConflict
from broker.store import Store
from broker.store.base import (
    Job,
    JobState,
    MessageQuery,
    MessageView,
    NewJob,
    NewMessage,
    RejectedView,
    StoredReceipt,
)
from broker.store.ledger import PurgeCutoffs, Purged, cursor_of


def _message(n: int, digest: str = "d", sender: str = "KZ-SW") -> NewMessage:
    return NewMessage(
        track_id=f"urn:uuid:t-{n}",
        sender=sender,
        message_id=f"urn:uuid:m-{n}",
        digest=digest,
        accepted_at=f"2026-11-29T10:00:{n % 60:02d}.000Z",
        route="r",
        table_digest="0" * 64,
        action="int://CP/P.TS.01/x",
        document="R.006",
        recipient="EAEU://RU/CP/P.TS.01/P.ACT.001",
        raw=b"<raw/>",
        forwarded=f"<forwarded n='{n}'/>".encode(),
    )


def _jobs(
    n: int, destinations: tuple[str, ...] = ("RU-SW",), due: float | None = None, attempts: int = 5
) -> list[NewJob]:
    now = time.time() if due is None else due
    return [
        NewJob(
            f"urn:uuid:t-{n}",
            "message",
            d,
            f"https://{d.lower()}.example/in",
            attempts,
            0.1,
            1.0,
            now + 3600,
            now,
        )
        for d in destinations
    ]


def _receipt(n: int, kind: str = "Accepted", destination: str | None = None) -> StoredReceipt:
    rid = f"urn:uuid:r-{n}-{kind}-{destination}"
    return StoredReceipt(
        rid,
        kind,
        "2026-11-29T10:00:00.000Z",
        f"<{kind} n='{n}'/>".encode(),
        track_id=f"urn:uuid:t-{n}",
        message_id=f"urn:uuid:m-{n}",
        sender="KZ-SW",
        destination=destination,
    )


async def _accept(store: Store, n: int, destinations: tuple[str, ...] = ("RU-SW",)) -> None:
    outcome = await store.accept(_message(n), _jobs(n, destinations), _receipt(n))
    assert outcome.fresh


async def test_accept_stores_message_jobs_and_receipt(store: Store) -> None:
    """Accept commits the message, a job per destination and the receipt, byte for byte."""
    await _accept(store, 1, ("RU-SW", "BY-SW"))
    view = await store.message("urn:uuid:m-1", "KZ-SW")
    assert view is not None
    assert [(d.participant, d.state, d.attempts) for d in view.destinations] == [
        ("RU-SW", "pending", 0),
        ("BY-SW", "pending", 0),
    ]
    assert [r.kind for r in view.receipts] == ["Accepted"]
    assert await store.receipt(_receipt(1).receipt_id) == ("KZ-SW", b"<Accepted n='1'/>")
    assert await store.message("urn:uuid:m-1", "RU-SW") is None  # only for its sender


async def test_identical_resubmission_returns_the_original_receipt(store: Store) -> None:
    """Same sender, MessageID and digest: not fresh, the first receipt, no new jobs."""
    await _accept(store, 1)
    again = await store.accept(_message(1), _jobs(1), _receipt(2))
    assert not again.fresh
    assert again.receipt == b"<Accepted n='1'/>"
    view = await store.message("urn:uuid:m-1", "KZ-SW")
    assert view is not None
    assert len(view.destinations) == 1


async def test_same_message_id_with_another_digest_is_a_conflict(store: Store) -> None:
    """Same sender and MessageID, other digest: DUPLICATE_CONFLICT and nothing written."""
    await _accept(store, 1)
    with pytest.raises(DuplicateConflict):
        await store.accept(_message(1, digest="other"), _jobs(1), _receipt(3))
    assert await store.receipt(_receipt(3).receipt_id) is None


async def test_another_sender_may_reuse_a_message_id(store: Store) -> None:
    """MessageIDs are unique per sender only."""
    await _accept(store, 1)
    other = _message(1, sender="RU-SW")
    other = NewMessage(**{**vars(other), "track_id": "urn:uuid:t-x"})
    jobs = [NewJob(**{**vars(j), "track_id": "urn:uuid:t-x"}) for j in _jobs(1)]
    receipt = StoredReceipt(**{**vars(_receipt(9)), "track_id": "urn:uuid:t-x"})
    assert (await store.accept(other, jobs, receipt)).fresh


async def test_claim_leases_only_due_jobs_with_their_payload(store: Store) -> None:
    """Only due, unleased jobs are claimed, with the forwarded bytes as payload."""
    await _accept(store, 1)
    later = time.time() + 3600
    assert (await store.accept(_message(2), _jobs(2, due=later), _receipt(2))).fresh
    jobs = await store.claim("w1", time.time(), 60, 10)
    assert [(j.track_id, j.payload) for j in jobs] == [("urn:uuid:t-1", b"<forwarded n='1'/>")]
    assert await store.claim("w2", time.time(), 60, 10) == []  # leased, or not yet due


async def test_concurrent_claims_never_share_a_job(store: Store) -> None:
    """Several workers claiming at once get disjoint sets of jobs."""
    for n in range(30):
        await _accept(store, n)
    results = await asyncio.gather(*(store.claim(f"w{i}", time.time(), 60, 7) for i in range(6)))
    ids = [job.id for jobs in results for job in jobs]
    assert len(ids) == len(set(ids)) == 30


async def test_expired_lease_is_taken_over_and_the_old_holder_loses(store: Store) -> None:
    """After the lease expires another worker claims the job; the first one can no longer
    finish it."""
    await _accept(store, 1)
    now = time.time()
    (first,) = await store.claim("crashed", now, 1, 10)
    assert await store.claim("other", now + 0.5, 60, 10) == []
    (taken,) = await store.claim("other", now + 2, 60, 10)
    assert taken.id == first.id
    assert not await store.finish(first, "crashed", "delivered", 1, None, None, None)
    assert await store.finish(taken, "other", "delivered", 1, None, None, None)


async def test_finish_with_receipt_and_push_job(store: Store) -> None:
    """Delivered: state, receipt and a receipt-push job carrying the receipt, all at once."""
    await _accept(store, 1)
    (job,) = await store.claim("w", time.time(), 60, 10)
    delivered = _receipt(1, "Delivered", "RU-SW")
    push = NewJob(
        "urn:uuid:t-1",
        "receipt",
        "KZ-SW",
        "https://kz.example/receipts",
        3,
        0.1,
        1,
        time.time() + 60,
        time.time(),
        receipt_id=delivered.receipt_id,
    )
    assert await store.finish(job, "w", "delivered", 2, None, delivered, push)
    view = await store.message("urn:uuid:m-1", None)
    assert view is not None
    assert [(d.state, d.attempts) for d in view.destinations] == [("delivered", 2)]
    assert view.state == "delivered"
    assert sorted(r.kind for r in view.receipts) == ["Accepted", "Delivered"]
    (pushed,) = await store.claim("w", time.time(), 60, 10)
    assert (pushed.kind, pushed.payload) == ("receipt", delivered.body)


async def test_reschedule_and_release(store: Store) -> None:
    """A rescheduled job waits for its time; released leases are claimable at once."""
    await _accept(store, 1)
    now = time.time()
    (job,) = await store.claim("w", now, 60, 10)
    assert await store.reschedule(job, "w", 1, now + 30, "HTTP 503")
    assert await store.claim("w", now + 1, 60, 10) == []
    (again,) = await store.claim("w", now + 31, 60, 10)
    assert again.attempts == 1
    assert await store.release("w") == 1
    (third,) = await store.claim("x", now + 32, 60, 10)
    assert third.id == job.id


async def test_failed_destination_can_be_retried(store: Store) -> None:
    """retry puts a failed destination back to pending; listing by state follows."""
    await _accept(store, 1)
    (job,) = await store.claim("w", time.time(), 60, 10)
    assert await store.finish(job, "w", "failed", 1, "DESTINATION_REJECTED: 400", None, None)
    assert [v.message_id for v in await store.messages("failed", None, None, 10)] == [
        "urn:uuid:m-1"
    ]
    counts = await store.counts()
    assert (counts.pending, counts.failed) == (0, 1)
    assert await store.retry("urn:uuid:m-1", None, time.time(), time.time() + 60) == 1
    assert await store.messages("failed", None, None, 10) == []
    (again,) = await store.claim("w", time.time(), 60, 10)
    assert isinstance(again, Job)
    assert again.attempts == 0


async def test_rejected_receipts_are_stored_on_their_own(store: Store) -> None:
    """A Rejected receipt needs no message; it is served by its id."""
    rejected = StoredReceipt(
        "urn:uuid:rej",
        "Rejected",
        "2026-11-29T10:00:00.000Z",
        b"<R/>",
        sender="KZ-SW",
        message_id="urn:uuid:m-9",
    )
    await store.record_receipt(rejected)
    assert await store.receipt("urn:uuid:rej") == ("KZ-SW", b"<R/>")
    assert await store.ping()


async def test_listing_filters_by_state_in_full_pages_with_a_cursor(store: Store) -> None:
    """State is filtered in the store, so a page is full whenever enough messages match, and
    a cursor walks every match once, newest first."""
    for n in range(12):
        await _accept(store, n)
    jobs = {job.track_id: job for job in await store.claim("w", time.time(), 60, 100)}
    failed = {f"urn:uuid:m-{n}" for n in range(12) if n % 3 == 0}
    for n in range(12):
        state: JobState = "failed" if f"urn:uuid:m-{n}" in failed else "delivered"
        assert await store.finish(jobs[f"urn:uuid:t-{n}"], "w", state, 1, None, None, None)
    seen: list[str] = []
    after: str | None = None
    while True:
        page = await store.messages("delivered", None, None, 3, after)
        seen += [v.message_id for v in page]
        assert all(v.state == "delivered" for v in page)
        if len(page) < 3:
            break
        after = cursor_of(page[-1])
    assert sorted(seen) == sorted({f"urn:uuid:m-{n}" for n in range(12)} - failed)
    assert len(seen) == len(set(seen))
    accepted = [f"2026-11-29T10:00:{n:02d}.000Z" for n in range(12)]
    assert [v.accepted_at for v in await store.messages(None, None, None, 12)] == sorted(
        accepted, reverse=True
    )
    assert {v.message_id for v in await store.messages("failed", None, None, 10)} == failed


def _keep(bodies: float | None, receipts: float | None) -> PurgeCutoffs:
    return PurgeCutoffs({}, {}, bodies, receipts)


async def test_purge_empties_bodies_of_finished_messages_and_keeps_their_status(
    store: Store,
) -> None:
    """Bodies of finished messages go after their period; pending ones and the receipts stay;
    the purge is an audit event."""
    for n in (1, 2):
        await _accept(store, n)
    done, _ = sorted(await store.claim("w", time.time(), 60, 10), key=lambda j: j.track_id)
    assert await store.finish(done, "w", "delivered", 1, None, None, None)
    assert await store.purge(_keep(time.time() + 1, None), dry_run=True) == Purged(
        1, 0, len(b"<raw/>") + len(b"<forwarded n='1'/>")
    )
    purged = await store.purge(_keep(time.time() + 1, None))
    assert (purged.bodies, purged.records) == (1, 0)
    view = await store.message("urn:uuid:m-1", "KZ-SW")
    assert view is not None
    assert view.bodies_purged_at is not None
    assert [d.state for d in view.destinations] == ["delivered"]
    assert await store.receipt(_receipt(1).receipt_id) is not None
    still = await store.message("urn:uuid:m-2", "KZ-SW")
    assert still is not None
    assert still.bodies_purged_at is None
    assert await store.purge(_keep(time.time() + 1, None)) == Purged(0, 0, 0)


async def test_purge_of_records_removes_receipts_and_status(store: Store) -> None:
    """After the receipts period a finished message is gone but for the audit chain."""
    await _accept(store, 1)
    (job,) = await store.claim("w", time.time(), 60, 10)
    assert await store.finish(job, "w", "failed", 1, "x", None, None)
    assert await store.purge(_keep(None, time.time() - 3600)) == Purged(0, 0, 0)  # not yet
    assert (await store.purge(_keep(None, time.time() + 1))).records == 1
    assert await store.message("urn:uuid:m-1", None) is None
    assert await store.receipt(_receipt(1).receipt_id) is None


async def test_purge_follows_the_route_over_the_default(store: Store) -> None:
    """A route's own period wins over the table's."""
    await _accept(store, 1)
    (job,) = await store.claim("w", time.time(), 60, 10)
    assert await store.finish(job, "w", "delivered", 1, None, None, None)
    keep_route = PurgeCutoffs({"r": time.time() - 3600}, {}, time.time() + 1, None)
    assert (await store.purge(keep_route)).bodies == 0
    assert (await store.purge(PurgeCutoffs({"r": time.time() + 1}, {}, None, None))).bodies == 1


@pytest.mark.postgres
async def test_postgres_connections_ended_while_idle_are_replaced_not_reported() -> None:
    """The server ends every pooled connection while they sit idle (a failover, an admin's
    pg_terminate_backend): the next operations still succeed, on fresh connections, because
    a connection lost before COMMIT stored nothing and the operation is simply tried again."""
    import asyncpg

    from broker.store import open_store
    from broker.store.postgres import drop_schema
    from tests.store.conftest import new_schema, pg_dsn_or_skip

    dsn = pg_dsn_or_skip()
    name, scoped = await new_schema(dsn)
    store = open_store(f"{scoped}&application_name=idle-ended")
    await store.open()
    admin = await asyncpg.connect(dsn)
    try:
        await _accept(store, 1)
        ended = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'idle-ended'"
        )
        assert ended >= 1
        await _accept(store, 2)
        assert (await store.counts()).pending == 2
    finally:
        await admin.close()
        await store.close()
        await drop_schema(dsn, name)


async def test_the_exchange_matrix_counts_and_times_in_sql(store: Store) -> None:
    """Per sender × destination × process: counts by state and delivery percentiles, only for
    messages accepted in the window; a process filter narrows it."""
    now = dt.datetime.now(dt.UTC)
    for n in range(5):  # accepted n+1 seconds ago, delivered now: 1…5 s from acceptance
        at = clock.format_time(now - dt.timedelta(seconds=n + 1))
        message = NewMessage(**{**vars(_message(n)), "accepted_at": at})
        assert (await store.accept(message, _jobs(n, ("RU-SW", "BY-SW")), _receipt(n))).fresh
    old = NewMessage(**{**vars(_message(9)), "accepted_at": "2026-01-01T00:00:00.000Z"})
    assert (await store.accept(old, _jobs(9), _receipt(9))).fresh
    for job in await store.claim("w", time.time(), 60, 100):
        n = int(job.track_id.rsplit("-", 1)[1])
        if job.destination == "BY-SW" and n == 4:
            assert await store.finish(job, "w", "failed", 1, "x", None, None)
        elif job.destination == "RU-SW" or n < 2:
            assert await store.finish(job, "w", "delivered", 1, None, None, None)
    since = clock.format_time(now - dt.timedelta(hours=1))
    until = clock.format_time(now + dt.timedelta(hours=1))
    cells = {(r.sender, r.destination): r for r in await store.matrix(since, until)}
    assert set(cells) == {("KZ-SW", "RU-SW"), ("KZ-SW", "BY-SW")}
    ru, by = cells["KZ-SW", "RU-SW"], cells["KZ-SW", "BY-SW"]
    assert (ru.process, ru.messages, ru.delivered, ru.failed, ru.pending) == ("P.TS.01", 5, 5, 0, 0)
    assert ru.p50_ms is not None
    assert abs(ru.p50_ms - 3000) < 800
    assert ru.p95_ms is not None
    assert abs(ru.p95_ms - 5000) < 800
    assert (by.messages, by.delivered, by.failed, by.pending) == (5, 2, 1, 2)
    assert len(await store.matrix(since, until, "P.TS.01")) == 2
    assert await store.matrix(since, until, "P.ZZ.01") == []


async def _console_mix(store: Store) -> None:
    """Six messages KZ → RU (m-0 … m-5, m-5 also to BY): m-0 failed (DESTINATION_REJECTED),
    m-1 pending, the rest delivered; and two rejected submissions."""
    for n in range(6):
        await _accept(store, n, ("RU-SW", "BY-SW") if n == 5 else ("RU-SW",))
    for job in await store.claim("w", time.time(), 60, 100):
        n = int(job.track_id.rsplit("-", 1)[1])
        if n == 0:
            failed = dataclasses.replace(
                _receipt(0, "Failed", "RU-SW"), code="DESTINATION_REJECTED"
            )
            assert await store.finish(
                job, "w", "failed", 1, "DESTINATION_REJECTED: x", failed, None
            )
        elif n != 1:
            assert await store.finish(job, "w", "delivered", 1, None, None, None)
    for n, at in ((7, "2026-11-29T10:00:30.500Z"), (8, "2026-11-29T10:00:02.500Z")):
        await store.record_receipt(
            StoredReceipt(
                f"urn:uuid:rej-{n}",
                "Rejected",
                at,
                b"<R/>",
                message_id=f"urn:uuid:m-{n}",
                sender="BY-SW" if n == 7 else "KZ-SW",
                code="SCHEMA_INVALID",
            ),
            [AuditEvent("rejected", f"urn:uuid:m-{n}", detail={"code": "SCHEMA_INVALID"})],
        )


def _ids(found: Sequence[MessageView | RejectedView]) -> list[str | None]:
    return [f.message_id for f in found]


async def test_the_console_search_filters_and_pages_accepted_and_rejected(store: Store) -> None:
    """Every filter in SQL; accepted and rejected merged newest first; a cursor walks all."""
    await _console_mix(store)
    everything = await store.search(MessageQuery(), 100)
    assert _ids(everything) == [
        "urn:uuid:m-7", "urn:uuid:m-5", "urn:uuid:m-4", "urn:uuid:m-3", "urn:uuid:m-8",
        "urn:uuid:m-2", "urn:uuid:m-1", "urn:uuid:m-0",
    ]  # fmt: skip
    walked: list[str | None] = []
    after: str | None = None
    while page := await store.search(MessageQuery(), 3, after):
        walked += _ids(page)
        after = cursor_of(page[-1])
    assert walked == _ids(everything)
    cases: dict[MessageQuery, list[str]] = {
        MessageQuery(state="failed"): ["urn:uuid:m-0"],
        MessageQuery(state="pending"): ["urn:uuid:m-1"],
        MessageQuery(state="rejected"): ["urn:uuid:m-7", "urn:uuid:m-8"],
        MessageQuery(code="DESTINATION_REJECTED"): ["urn:uuid:m-0"],
        MessageQuery(code="SCHEMA_INVALID"): ["urn:uuid:m-7", "urn:uuid:m-8"],
        MessageQuery(destination="BY-SW"): ["urn:uuid:m-5"],
        MessageQuery(sender="BY-SW"): ["urn:uuid:m-7"],
        MessageQuery(message_id="urn:uuid:m-3"): ["urn:uuid:m-3"],
        MessageQuery(track_id="urn:uuid:t-4"): ["urn:uuid:m-4"],
        MessageQuery(message_id="urn:uuid:m-3", track_id="urn:uuid:t-4"): [],
        MessageQuery(process="P.TS.01", document="R.006", route="r", state="delivered"): [
            "urn:uuid:m-5",
            "urn:uuid:m-4",
            "urn:uuid:m-3",
            "urn:uuid:m-2",
        ],
        MessageQuery(process="P.TS.02"): [],
        MessageQuery(since="2026-11-29T10:00:03.000Z", until="2026-11-29T10:00:05.000Z"): [
            "urn:uuid:m-4",
            "urn:uuid:m-3",
        ],
    }
    for query, expected in cases.items():
        assert _ids(await store.search(query, 100)) == expected, query
    (view,) = await store.search(MessageQuery(message_id="urn:uuid:m-0"), 1)
    assert isinstance(view, MessageView)
    assert view.destinations[0].last_error == "DESTINATION_REJECTED: x"


async def test_the_console_detail_reads_records_timeline_and_health(store: Store) -> None:
    await _console_mix(store)
    views, rejected = await store.messages_with_id("urn:uuid:m-0")
    assert [v.track_id for v in views] == ["urn:uuid:t-0"]
    assert rejected == []
    views, rejected = await store.messages_with_id("urn:uuid:m-7")
    assert views == []
    assert [(r.receipt_id, r.code, r.sender) for r in rejected] == [
        ("urn:uuid:rej-7", "SCHEMA_INVALID", "BY-SW")
    ]
    record = await store.record("urn:uuid:t-3")
    assert record is not None
    assert (record.action, record.document, record.raw) == (
        "int://CP/P.TS.01/x",
        "R.006",
        b"<raw/>",
    )
    assert record.forwarded == b"<forwarded n='3'/>"
    assert await store.record("urn:uuid:nothing") is None
    # (This store has no auditor: tests/e2e/test_console.py reads timelines on both dialects.)
    assert await store.timeline("urn:uuid:m-7") == []
    last, failed_since = await store.destination_health("RU-SW")
    assert last is not None
    assert failed_since == 0  # m-0 failed before the later deliveries
    assert await store.destination_health("AM-SW") == (None, 0)
    oldest = await store.oldest_pending()
    assert oldest is not None
    assert oldest[0] == "urn:uuid:m-1"
    (lease,) = await store.leases(time.time())
    assert (lease.owner, lease.jobs) == ("w", 1)
    assert abs(lease.first_expiry - (time.time() + 60)) < 5


async def test_the_console_matrix_filters_merges_and_its_series(store: Store) -> None:
    now = dt.datetime.now(dt.UTC)
    for n in range(4):
        at = clock.format_time(now - dt.timedelta(minutes=10 * n))
        message = NewMessage(**{**vars(_message(n)), "accepted_at": at,
                                "document": "R.006" if n < 3 else "R.007"})  # fmt: skip
        assert (await store.accept(message, _jobs(n, ("RU-SW", "BY-SW")), _receipt(n))).fresh
    for job in await store.claim("w", time.time(), 60, 100):
        state: JobState = "failed" if job.destination == "BY-SW" else "delivered"
        assert await store.finish(job, "w", state, 1, None, None, None)
    since = clock.format_time(now - dt.timedelta(hours=1))
    until = clock.format_time(now + dt.timedelta(minutes=1))
    merged = await store.matrix(since, until, merge_processes=True)
    assert [(r.destination, r.process, r.messages) for r in merged] == [
        ("BY-SW", "*", 4), ("RU-SW", "*", 4),
    ]  # fmt: skip
    failed = await store.matrix(since, until, state="failed")
    assert [(r.destination, r.messages, r.failed) for r in failed] == [("BY-SW", 4, 4)]
    documents = await store.matrix(since, until, document="R.007")
    assert [r.messages for r in documents] == [1, 1]
    start = (now - dt.timedelta(hours=1)).timestamp()
    points = await store.series(since, until, start, 900.0)
    assert sum(p.accepted for p in points) == 4
    assert sum(p.delivered for p in points) == 4
    assert sum(p.failed for p in points) == 4
    assert all(start <= p.start < start + 3600 + 60 for p in points)
