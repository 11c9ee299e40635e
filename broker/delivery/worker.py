"""The delivery worker: lease due jobs → POST → record the outcome (SPEC §6, §7, §9).

Each job is one destination of one message (or one receipt push). 2xx is delivered;
connection errors, timeouts, 408, 425, 429 and 5xx are retried per the rule's policy; any other
status fails at once (DESTINATION_REJECTED); running out of attempts or ttl fails with
DELIVERY_EXPIRED. A message destination's final outcome issues its Delivered or Failed receipt,
stored (and queued for push to the sender's ``receipts`` URL) in the same transaction that
records the outcome. Leases expire, so another worker — in this process after a restart, or in
another process — takes over the jobs of one that crashed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from concurrent.futures import Executor
from dataclasses import dataclass, field

import aiohttp

from broker import clock
from broker.audit import AuditEvent
from broker.config import ConfigHolder
from broker.errors import ConfigError, DeliveryExpired, DestinationRejected, plain
from broker.metrics import Metrics
from broker.receipts import Kind, Receipt, build_receipt, sha256_b64
from broker.signing.trust import GatewayIdentity
from broker.store import Store
from broker.store.base import Job, NewJob, StoredReceipt, StoreUnavailable
from broker.tasks import TaskGroup

from . import retry
from .breaker import STATE_VALUES, BreakerPolicy, DestinationHealth

log = logging.getLogger("broker.delivery")

MAX_ACK_BYTES = 1024 * 1024
RECEIPT_PUSH_TTL = 86_400.0


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 32
    """Deliveries in flight at once."""
    lease: float = 60.0
    """Seconds a claimed job is ours; a crashed holder's jobs are free after this."""
    poll: float = 0.5
    """Seconds between looks at the store when nothing wakes the worker."""
    timeout: float = 30.0
    """Seconds one POST may take."""
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    """Per-destination cap and circuit breaker: one destination never stalls the others."""


@dataclass(frozen=True)
class _Attempt:
    status: int | None
    error: str
    retry_after: float | None = None
    body: bytes = b""


class DeliveryWorker:
    def __init__(
        self,
        store: Store,
        config: ConfigHolder,
        identity: GatewayIdentity,
        settings: WorkerSettings = WorkerSettings(),
        owner: str | None = None,
        cpu: Executor | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.cpu = cpu
        """Where receipts are signed: CPU work stays off the event loop."""
        self.store = store
        self.config = config
        self.identity = identity
        self.settings = settings
        self.owner = owner or f"worker-{uuid.uuid4()}"
        self._wake = asyncio.Event()
        self._stopping = False
        self._deliveries = TaskGroup()
        self._session: aiohttp.ClientSession | None = None
        self.attempts_made = 0
        self.health = DestinationHealth(settings.breaker)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Claim and deliver until :meth:`stop` is called."""
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
            connector=aiohttp.TCPConnector(limit=self.settings.concurrency),
        )
        await self.store.subscribe(self.wake)
        try:
            while not self._stopping:
                free = self.settings.concurrency - len(self._deliveries)
                jobs = []
                if free > 0:
                    now = time.time()
                    try:
                        jobs = await self.store.claim(
                            self.owner,
                            now,
                            self.settings.lease,
                            free,
                            rooms=self.health.rooms(now),
                            room_default=self.settings.breaker.per_destination,
                        )
                    except Exception:
                        log.exception("claiming jobs failed; will try again")
                for job in jobs:
                    self.health.started(job.destination, time.time())
                    self._deliveries.start(self._deliver(job), f"deliver-{job.id}")
                self._gauges()
                if jobs and len(jobs) == free:
                    await asyncio.sleep(0)  # more may be due: look again at once
                    continue
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.poll)
        finally:
            await self._deliveries.drain(timeout=self.settings.timeout)
            await self._session.close()

    async def stop(self) -> None:
        """Stop claiming, let deliveries in flight finish, release every lease we hold."""
        self._stopping = True
        self._wake.set()
        await self._deliveries.drain(timeout=self.settings.timeout)
        released = await self.store.release(self.owner)
        log.info("delivery stopped", extra={"event": "worker_stopped", "released": released})

    # -- one job -----------------------------------------------------------------------------
    async def _post(self, job: Job) -> _Attempt:
        participant = self.config.table.participants.get(job.destination)
        if participant is None:
            return _Attempt(None, f"{job.destination} is no longer in the routing table")
        content_type = "application/soap+xml" if job.kind == "message" else "application/xml"
        try:
            ssl = (
                self.config.current.client_contexts.for_country(participant.country)
                if job.endpoint.startswith("https:")
                else False
            )
        except ConfigError as exc:  # e.g. no CA for its country: retried like any failure
            return _Attempt(None, exc.message)
        assert self._session is not None
        try:
            async with self._session.post(
                job.endpoint,
                data=job.payload,
                ssl=ssl,
                headers={"Content-Type": f"{content_type}; charset=utf-8"},
            ) as response:
                body = await response.content.read(MAX_ACK_BYTES)
                return _Attempt(
                    response.status,
                    f"HTTP {response.status}",
                    retry.parse_retry_after(response.headers.get("Retry-After"), time.time()),
                    body,
                )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return _Attempt(None, plain(exc))

    def _gauges(self) -> None:
        now = time.time()
        for destination in self.health.destinations():
            state = self.health.state(destination, now)
            self.metrics.destination_breaker.labels(destination).set(STATE_VALUES[state])
            self.metrics.destination_in_flight.labels(destination).set(
                self.health.in_flight(destination)
            )

    async def _deliver(self, job: Job) -> None:
        answered: bool | None = None  # no attempt made (or its outcome not recorded)
        try:
            attempt = await self._attempt(job)
            answered = None if attempt is None else attempt.status is not None
        except StoreUnavailable as exc:
            # The outcome could not be recorded. The lease is still ours on paper, so when it
            # expires the job is claimed again: delivered at least once, never lost.
            log.warning(
                "store unavailable after delivering; the job will be retried",
                extra={
                    "event": "store_unavailable",
                    "track_id": job.track_id,
                    "destination": job.destination,
                    "reason": str(exc),
                },
            )
        finally:
            before = self.health.state(job.destination, time.time())
            self.health.finished(job.destination, answered, time.time())
            after = self.health.state(job.destination, time.time())
            if after != before:
                log.warning(
                    "destination %s: circuit breaker %s",
                    job.destination,
                    after,
                    extra={"event": "breaker", "destination": job.destination, "state": after},
                )
            self._gauges()
            # A slot is free again (and a destination's breaker may have closed): claim now,
            # rather than at the next poll — with a per-destination cap the claim often fills
            # fewer slots than are free, and the loop then waits to be woken.
            self.wake()

    async def _attempt(self, job: Job) -> _Attempt | None:
        """One attempt and its outcome recorded; None when the ttl ran out before it."""
        if time.time() > job.deadline:
            await self._fail(
                job,
                job.attempts,
                DeliveryExpired(f"the ttl ran out before attempt {job.attempts + 1}"),
            )
            return None
        attempt = await self._post(job)
        attempts = job.attempts + 1
        self.attempts_made += 1
        self.metrics.attempts.labels(job.destination, job.kind).inc()
        log.info(
            "delivery attempt",
            extra={
                "event": "delivery_attempt",
                "track_id": job.track_id,
                "message_id": job.message_id,
                "destination": job.destination,
                "kind": job.kind,
                "attempt": attempts,
                "result": attempt.error,
            },
        )
        tried = self._attempt_event(job, attempts, attempt.error)
        if attempt.status is not None and 200 <= attempt.status < 300:
            await self._delivered(job, attempts, attempt.body, tried)
            return attempt
        if attempt.status is not None and not retry.is_retryable(attempt.status):
            await self._fail(
                job,
                attempts,
                DestinationRejected(f"{job.destination} answered {attempt.error}"),
                tried,
            )
            return attempt
        decision = retry.next_attempt(
            attempts=attempts,
            max_attempts=job.max_attempts,
            initial=job.initial_delay,
            max_delay=job.max_delay,
            deadline=job.deadline,
            now=time.time(),
            retry_after=attempt.retry_after,
        )
        if decision.at is None:
            await self._fail(
                job,
                attempts,
                DeliveryExpired(f"{decision.reason}; last error: {attempt.error}"),
                tried,
            )
            return attempt
        await self.store.reschedule(job, self.owner, attempts, decision.at, attempt.error, [tried])
        return attempt

    def _count(self, job: Job, outcome: str) -> None:
        if job.kind == "receipt":
            self.metrics.receipts_pushed.labels(outcome).inc()
            return
        self.metrics.deliveries.labels(outcome, job.destination).inc()
        if outcome == "delivered":
            with contextlib.suppress(ValueError):
                accepted = clock.parse_time(job.accepted_at)
                self.metrics.delivery_seconds.observe((clock.now() - accepted).total_seconds())

    @property
    def leases_held(self) -> int:
        return len(self._deliveries)

    @staticmethod
    def _attempt_event(job: Job, attempt: int, result: str) -> AuditEvent:
        return AuditEvent(
            "delivery_attempt",
            job.message_id,
            job.track_id,
            job.destination,
            {"kind": job.kind, "attempt": attempt, "result": result},
        )

    @staticmethod
    def _outcome_events(
        job: Job, outcome: str, receipt: StoredReceipt | None, detail: dict[str, object]
    ) -> list[AuditEvent]:
        events = [
            AuditEvent(
                outcome if job.kind == "message" else f"receipt_push_{outcome}",
                job.message_id,
                job.track_id,
                job.destination,
                detail,
            )
        ]
        if receipt is not None:
            events.append(
                AuditEvent(
                    "receipt_issued",
                    job.message_id,
                    job.track_id,
                    job.destination,
                    {"receipt_id": receipt.receipt_id, "kind": receipt.kind},
                )
            )
        return events

    async def _receipt(
        self,
        job: Job,
        kind: Kind,
        attempts: int,
        acknowledgement_digest: str | None = None,
        errors: tuple[tuple[str, str], ...] = (),
    ) -> StoredReceipt:
        receipt = Receipt(
            kind=kind,
            gateway=self.config.table.gateway_id,
            message_digest=job.digest,
            message_id=job.message_id,
            track_id=job.track_id,
            sender=job.sender,
            route=job.route,
            table_digest=job.table_digest,
            destinations=(job.destination,),
            attempts=attempts,
            acknowledgement_digest=acknowledgement_digest,
            errors=errors,
        )
        return StoredReceipt(
            receipt_id=receipt.receipt_id,
            kind=kind,
            issued_at=receipt.issued_at,
            body=await asyncio.get_running_loop().run_in_executor(
                self.cpu, build_receipt, receipt, self.identity
            ),
            track_id=job.track_id,
            message_id=job.message_id,
            sender=job.sender,
            destination=job.destination,
            code=errors[0][0] if errors else None,
        )

    def _push_job(self, job: Job, receipt: StoredReceipt) -> NewJob | None:
        sender = self.config.table.participants.get(job.sender)
        if sender is None or sender.receipts is None:
            return None
        now = time.time()
        return NewJob(
            track_id=job.track_id,
            kind="receipt",
            destination=sender.id,
            endpoint=sender.receipts,
            max_attempts=job.max_attempts,
            initial_delay=job.initial_delay,
            max_delay=job.max_delay,
            deadline=now + RECEIPT_PUSH_TTL,
            next_attempt=now,
            receipt_id=receipt.receipt_id,
        )

    async def _delivered(self, job: Job, attempts: int, body: bytes, tried: AuditEvent) -> None:
        receipt = push = None
        if job.kind == "message":
            receipt = await self._receipt(
                job,
                "Delivered",
                attempts,
                acknowledgement_digest=sha256_b64(body) if body else None,
            )
            push = self._push_job(job, receipt)
        events = [tried, *self._outcome_events(job, "delivered", receipt, {"attempts": attempts})]
        if await self.store.finish(
            job, self.owner, "delivered", attempts, None, receipt, push, events
        ):
            self._count(job, "delivered")
            log.info(
                "delivered",
                extra={
                    "event": "delivered",
                    "track_id": job.track_id,
                    "message_id": job.message_id,
                    "kind": job.kind,
                    "destination": job.destination,
                    "attempts": attempts,
                },
            )
            if push is not None:
                self.wake()

    async def _fail(
        self,
        job: Job,
        attempts: int,
        error: DestinationRejected | DeliveryExpired,
        tried: AuditEvent | None = None,
    ) -> None:
        receipt = push = None
        if job.kind == "message":
            receipt = await self._receipt(
                job, "Failed", attempts, errors=((error.code, error.message),)
            )
            push = self._push_job(job, receipt)
        events = [
            *([tried] if tried else []),
            *self._outcome_events(
                job, "failed", receipt, {"code": error.code, "reason": error.message}
            ),
        ]
        if await self.store.finish(
            job,
            self.owner,
            "failed",
            attempts,
            f"{error.code}: {error.message}",
            receipt,
            push,
            events,
        ):
            self._count(job, "failed")
            log.warning(
                "failed",
                extra={
                    "event": "failed",
                    "track_id": job.track_id,
                    "message_id": job.message_id,
                    "kind": job.kind,
                    "destination": job.destination,
                    "code": error.code,
                    "reason": error.message,
                },
            )
            if push is not None:
                self.wake()
