"""`broker serve`: load everything, start the intake and admin listeners and the delivery worker,
and stop cleanly (SPEC §7, §9).

SIGTERM/SIGINT: stop accepting (listeners close), finish requests in flight, let deliveries in
flight finish, release the leases this process holds, close the store, exit 0. SIGHUP reloads
routing.yaml, the schema catalog and certs/ as one set (a set with an error is refused and the one
in force stays; see broker/config.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import signal
import socket
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from broker import clock
from broker.audit import AuditEvent, Auditor
from broker.config import KEYS_NOT_RELOADED, ConfigHolder, ReloadResult, Sources
from broker.console.app import add_console
from broker.console.context import ConsoleContext
from broker.delivery.worker import DeliveryWorker, WorkerSettings
from broker.errors import ConfigError
from broker.http.admin import HOSTS, LOOPBACK, TOKEN, admin_app
from broker.http.intake import IntakeSettings, intake_app
from broker.http.listener import Listener, ListenerBounds
from broker.intake import Gateway
from broker.metrics import Metrics
from broker.operator import EXPIRY_WARNING_DAYS, certificates
from broker.retention import purge_daily
from broker.signing.trust import GatewayIdentity, fingerprint
from broker.store import open_store
from broker.store.base import StoreUnavailable, redact
from broker.tasks import TaskGroup

log = logging.getLogger("broker.server")
GAUGE_INTERVAL = 5.0
CERTIFICATE_WARNING_INTERVAL = 86_400.0


@dataclass
class ServeSettings:
    routing: Path = Path("routing.yaml")
    certs: Path = Path("certs")
    xsd: Path = Path("xsd")
    store: str = "sqlite:///var/broker.sqlite3"
    listen: str = "127.0.0.1:8443"
    admin: str = "127.0.0.1:8081"
    insecure_http: bool = False
    admin_token: str | None = None
    """Operator token for /admin/*; required for the admin listener to leave loopback."""
    audit: bool = True
    """Keep the audit log (turned off only to measure what it costs)."""
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    intake: IntakeSettings = field(default_factory=IntakeSettings)
    shutdown_timeout: float = 30.0
    admin_hosts: tuple[str, ...] = ()
    """Host names the admin listener answers to besides IP literals (and ``localhost`` on
    loopback): a request with another Host is refused (421), against DNS rebinding."""
    create_store: bool = False
    """Create the SQLite store's missing folders (else only a file in an existing folder)."""
    purge_every: float = 86_400.0
    """Seconds between retention purges (SPEC §6); the first runs a minute after start."""
    purge_first: float = 60.0
    reuse_port: bool = False
    """SO_REUSEPORT on both listeners: only for several processes of one gateway sharing one
    (PostgreSQL) store; otherwise a second gateway on a busy port must fail, not split traffic."""


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``); a malformed one is a ConfigError naming it."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{text!r} is not HOST:PORT with a port from 0 to 65535")
    return host.strip("[]") or "127.0.0.1", int(port)


class _Site(web.SockSite):
    """aiohttp's SockSite accepting through our :class:`Listener`: connection caps, handshake
    and header timeouts, accept errors rate-limited in the log."""

    def __init__(
        self,
        runner: web.AppRunner,
        sock: socket.socket,
        ssl_context: ssl.SSLContext | None,
        bounds: ListenerBounds,
        on_refused: Callable[[str], None],
    ) -> None:
        super().__init__(runner, sock, ssl_context=ssl_context)
        self._bounds = bounds
        self._on_refused = on_refused
        self.listener: Listener | None = None

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        self.listener = Listener(
            self._sock, server, self._ssl_context, self._bounds, self._on_refused
        )
        self.listener.start(self._backlog)
        self._server = self.listener  # type: ignore[assignment]  # aiohttp only calls close()


class GatewayServer:
    """One gateway process: listeners, worker, store. ``start`` then ``stop``."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.ready = [False]
        self.tasks = TaskGroup()
        self._runners: list[web.AppRunner] = []
        self.intake_port = 0
        self.admin_port = 0
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        s = self.settings
        if not s.admin_token and not _is_loopback(_host_port(s.admin)[0]):
            raise ConfigError(
                f"admin listener {s.admin} is not on loopback: set an operator token "
                "(--admin-token / BROKER_ADMIN_TOKEN) or bind it to 127.0.0.1"
            )
        config = ConfigHolder.load(Sources(s.routing, s.xsd, s.certs, tls=not s.insecure_http))
        identity = GatewayIdentity.load(s.certs)
        # Without an auditor the stores write no audit entries (--no-audit, to measure it).
        store = open_store(
            s.store, Auditor(identity) if s.audit else None, create=True, folders=s.create_store
        )
        await store.open()
        current = config.current
        await store.audit(
            [
                AuditEvent(
                    "gateway_started",
                    detail={
                        **current.digests,
                        "trust": sorted(
                            f"{cc}:{fingerprint(c)}" for cc, c in current.trust.certificates()
                        ),
                        "gateway_certificate": fingerprint(identity.certificate),
                    },
                )
            ]
        )
        loop = asyncio.get_running_loop()

        def on_reload(result: ReloadResult) -> None:  # called from the reloading thread
            loop.call_soon_threadsafe(self._audit_reload, result)

        config.listeners.append(on_reload)
        self.gateway = Gateway(
            config,
            identity,
            store,
            cpu=ThreadPoolExecutor(max_workers=2, thread_name_prefix="intake-cpu"),
            metrics=Metrics(),
        )
        self.worker = DeliveryWorker(
            store,
            config,
            identity,
            s.worker,
            cpu=self.gateway.cpu,
            metrics=self.gateway.metrics,
        )
        self.gateway.metrics.routing_digest(config.table.digest)
        self.gateway.wake_delivery = self.worker.wake
        s.intake.insecure = s.insecure_http
        ssl_context = current.server_context
        if ssl_context is not None:
            # Each new connection takes the TLS context of the configuration in force.
            ssl_context.sni_callback = config.select_server_context
        if s.insecure_http:
            log.warning(
                "INSECURE: intake over plain HTTP without client certificates — local "
                "development only, never in production",
                extra={"event": "insecure_http"},
            )
        self.intake_port = await self._start_site(
            intake_app(self.gateway, s.intake), "intake", s.listen, ssl_context
        )
        admin = admin_app(self.gateway, self.gateway.metrics, self.ready)
        if s.admin_token:
            admin[TOKEN] = s.admin_token
        admin[HOSTS] = s.admin_hosts
        add_console(admin, ConsoleContext(self.gateway, self.ready, self.worker), s.admin_token)
        admin[LOOPBACK] = _is_loopback(_host_port(s.admin)[0])
        self.admin_port = await self._start_site(admin, "admin", s.admin, None)
        self.tasks.start(self.worker.run(), "delivery-worker")
        self.tasks.start(self._watch(), "gauges-and-certificates")
        self.tasks.start(
            purge_daily(
                self.gateway.store,
                lambda: self.gateway.config.table,
                self._stopped,
                s.purge_every,
                s.purge_first,
            ),
            "retention-purge",
        )
        self.ready[0] = True
        log.info(
            "gateway started",
            extra={
                "event": "started",
                "intake": f"{_host_port(s.listen)[0]}:{self.intake_port}",
                "admin": f"{_host_port(s.admin)[0]}:{self.admin_port}",
                "routing_digest": config.table.digest,
                "store": redact(s.store),
            },
        )

    async def _watch(self) -> None:
        """Refresh the store and certificate gauges; warn of expiring certificates at start-up
        and then daily."""
        metrics = self.gateway.metrics
        last_warning: float | None = None  # None: warn at start-up, then daily
        seen_backlog: set[str] = set()
        # certs/ is read once at start-up, like the trust store: only the days left change.
        watched = list(certificates(self.settings.certs))
        while not self._stopped.is_set():
            try:
                counts = await self.gateway.store.counts()
                metrics.jobs_pending.set(counts.pending)
                metrics.oldest_pending.set(
                    max(0.0, time.time() - counts.oldest_pending) if counts.oldest_pending else 0
                )
                backlog = await self.gateway.store.pending_by_destination()
                for destination in set(backlog) | set(seen_backlog):
                    metrics.destination_backlog.labels(destination).set(backlog.get(destination, 0))
                seen_backlog = set(backlog) | set(seen_backlog)
            except StoreUnavailable:
                pass
            metrics.leases_held.set(self.worker.leases_held)
            now = clock.now()
            warn = (
                last_warning is None
                or time.monotonic() - last_warning > CERTIFICATE_WARNING_INTERVAL
            )
            for item in watched:
                days = item.days_left(now)
                subject = item.certificate.subject.rfc4514_string()
                metrics.certificate_days.labels(item.role, subject).set(round(days, 2))
                if warn and days <= EXPIRY_WARNING_DAYS:
                    log.warning(
                        "certificate %s %s (%s)",
                        item.path,
                        item.status(now),
                        f"{days:.0f} days left" if days > 0 else "expired",
                        extra={
                            "event": "certificate_expiring",
                            "path": str(item.path),
                            "subject": subject,
                            "days": round(days, 1),
                        },
                    )
            if warn:
                last_warning = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), GAUGE_INTERVAL)

    def _audit_reload(self, result: ReloadResult) -> None:
        metrics = self.gateway.metrics
        if result.configuration is not None:
            metrics.routing_digest(result.configuration.table.digest)
            event = AuditEvent(
                "configuration_reloaded",
                detail={**result.configuration.digests, "not_reloaded": KEYS_NOT_RELOADED},
            )
        else:
            metrics.reload_failures.inc()
            event = AuditEvent("configuration_refused", detail={"errors": result.errors})
        self.tasks.start(self.gateway.store.audit([event]), "audit-reload")

    async def _start_site(
        self, app: web.Application, name: str, address: str, ssl_context: ssl.SSLContext | None
    ) -> int:
        intake = self.settings.intake
        runner = web.AppRunner(
            app,
            shutdown_timeout=self.settings.shutdown_timeout,
            access_log=None,
            # Idle connections close, before their first request as between requests.
            keepalive_timeout=intake.keepalive_timeout,
        )
        await runner.setup()
        host, port = _host_port(address)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.settings.reuse_port:  # several `broker serve` of one gateway on one store
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            await runner.cleanup()
            reason = (
                "the port is in use (another gateway or program listens there; "
                "--reuse-port shares it between processes of one gateway)"
                if exc.errno == errno.EADDRINUSE
                else exc.strerror
            )
            raise ConfigError(f"{name} listener {host}:{port}: cannot listen: {reason}") from exc
        bounds = ListenerBounds(
            intake.max_connections,
            intake.per_address,
            intake.handshake_timeout,
            intake.header_timeout,
        )
        refused = self.gateway.metrics.connections_refused.labels(name)
        site = _Site(runner, sock, ssl_context, bounds, lambda _: refused.inc())
        await site.start()
        listener = site.listener
        assert listener is not None
        self.gateway.metrics.connections_open.labels(name).set_function(lambda: listener.open)
        self._runners.append(runner)
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        self.ready[0] = False
        self._stopped.set()
        log.info("gateway stopping", extra={"event": "stopping"})
        for runner in self._runners:  # stop accepting, finish requests in flight
            await runner.cleanup()
        await self.worker.stop()
        await self.tasks.drain(timeout=self.settings.shutdown_timeout)
        await self.gateway.store.close()
        if self.gateway.cpu is not None:
            self.gateway.cpu.shutdown(wait=True)
        log.info("gateway stopped", extra={"event": "stopped"})


async def serve(settings: ServeSettings) -> int:
    """Run until SIGTERM or SIGINT; 0 on a clean stop."""
    server = GatewayServer(settings)
    await server.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server.gateway.config.install_sighup(loop)
    await stop.wait()
    await server.stop()
    return 0
