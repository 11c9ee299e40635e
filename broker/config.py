"""What an operator edits, in force as one set: routing.yaml, the schema catalog, and certs/
(trust, CRLs, known certificates, and the TLS contexts built from them) — SPEC §7 reload.

The set is loaded whole at start-up and on every reload (SIGHUP, ``POST /admin/reload``,
``POST /admin/routing/reload``). A set with any error is refused as a whole and the one in force
stays; a good one is swapped in with one assignment, so a message is judged by one consistent
set (intake reads :attr:`ConfigHolder.current` once per message). Each part's SHA-256 is in the
set, for the audit log and the receipts.

The gateway's own signing key and TLS identity (``certs/gateway/``, ``certs/tls/``) are **not**
reloaded: changing the identity a running gateway signs with takes a restart, and the reload
says so. (The TLS server context is rebuilt, so new client CAs and CRL-free trust take effect
on new connections; its certificate and key are re-read from the same files.)
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import signal
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from broker.errors import ConfigError
from broker.routing.load import load_routing
from broker.routing.table import RoutingTable
from broker.schemas import Catalog
from broker.signing.trust import TrustStore
from broker.tls import ClientContexts, server_context

log = logging.getLogger("broker.config")

KEYS_NOT_RELOADED = (
    "the gateway's signing key and TLS identity (certs/gateway/, certs/tls/) are not reloaded; "
    "restart the gateway to change them"
)


def _digest(paths: Iterable[Path], root: Path) -> str:
    """SHA-256 over the files' names (relative to ``root``) and bytes, in name order."""
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def _files(folder: Path, pattern: str) -> list[Path]:
    return [p for p in folder.rglob(pattern) if p.is_file()] if folder.is_dir() else []


@dataclass(frozen=True)
class Configuration:
    """One consistent set of everything a message is judged by."""

    table: RoutingTable
    catalog: Catalog
    trust: TrustStore
    client_contexts: ClientContexts
    """TLS client contexts for delivery, per destination country (built on first use)."""
    server_context: ssl.SSLContext | None
    """The intake TLS context (None with --insecure-http)."""
    digests: dict[str, str]
    """SHA-256 of each part: routing (the file bytes), catalog (catalog.yaml and every schema),
    certs (trust/, crl/, known/)."""
    loaded_at: float = field(default_factory=time.time)
    warnings: tuple[str, ...] = ()
    """What `broker routing check` warns of in the routing table, each at its line."""


@dataclass(frozen=True)
class Sources:
    routing: Path
    xsd: Path
    certs: Path
    tls: bool = True


@dataclass(frozen=True)
class ReloadResult:
    configuration: Configuration | None
    errors: list[str]
    warnings: list[str]

    @property
    def table(self) -> RoutingTable | None:
        return self.configuration.table if self.configuration else None


def load_configuration(sources: Sources) -> ReloadResult:
    """Load the whole set; errors of every part are collected, none is raised."""
    errors: list[str] = []
    routing = load_routing(sources.routing)
    errors.extend(str(p) for p in routing.errors)
    warnings = [str(p) for p in routing.warnings]
    catalog = trust = contexts = None
    context: ssl.SSLContext | None = None
    digests: dict[str, str] = {}
    try:
        catalog = Catalog.load(sources.xsd)
        schemas = [*_files(sources.xsd, "*.xsd"), sources.xsd / "catalog.yaml"]
        digests["catalog"] = _digest(schemas, sources.xsd)
    except (ConfigError, OSError) as exc:
        errors.append(f"schema catalog: {getattr(exc, 'message', exc)}")
    try:
        trust = TrustStore.load(sources.certs)
        contexts = ClientContexts(sources.certs)
        context = server_context(sources.certs) if sources.tls else None
        parts = [sources.certs / d for d in ("trust", "crl", "known")]
        digests["certs"] = _digest(
            [p for part in parts for p in _files(part, "*.pem")], sources.certs
        )
    except (ConfigError, OSError) as exc:
        errors.append(f"certificates: {getattr(exc, 'message', exc)}")
    if errors or routing.table is None or catalog is None or trust is None or contexts is None:
        return ReloadResult(None, errors, warnings)
    digests["routing"] = routing.table.digest
    return ReloadResult(
        Configuration(
            routing.table, catalog, trust, contexts, context, digests, warnings=tuple(warnings)
        ),
        [],
        warnings,
    )


class ConfigHolder:
    """The set in force; :meth:`reload` swaps in a new one or keeps the old."""

    def __init__(self, sources: Sources, current: Configuration) -> None:
        self.sources = sources
        self.current = current
        self._lock = threading.Lock()  # one reload at a time; reads need no lock
        self.reload_failures = 0
        self.listeners: list[Callable[[ReloadResult], None]] = []
        """Called after every reload attempt, from the reloading thread (audit, metrics)."""

    @classmethod
    def load(cls, sources: Sources) -> ConfigHolder:
        """Load at start-up; any error is a ConfigError listing every problem."""
        result = load_configuration(sources)
        for warning in result.warnings:
            log.warning("%s", warning)
        if result.configuration is None:
            raise ConfigError("configuration has errors:\n" + "\n".join(result.errors))
        return cls(sources, result.configuration)

    @property
    def table(self) -> RoutingTable:
        return self.current.table

    def reload(self) -> ReloadResult:
        """Re-read routing, catalog and certs; swap them in together if none has an error."""
        with self._lock:
            result = load_configuration(self.sources)
            if result.configuration is None:
                self.reload_failures += 1
                log.error(
                    "reload refused; the configuration in force stays (routing %s): %s",
                    self.current.table.digest[:12],
                    "; ".join(result.errors),
                )
            else:
                for warning in result.warnings:
                    log.warning("%s", warning)
                old, self.current = self.current, result.configuration
                log.info(
                    "reloaded routing %s → %s, catalog %s, certs %s; %s",
                    old.digests["routing"][:12],
                    self.current.digests["routing"][:12],
                    self.current.digests["catalog"][:12],
                    self.current.digests["certs"][:12],
                    KEYS_NOT_RELOADED,
                )
            for listener in self.listeners:
                listener(result)
            return result

    def select_server_context(self, tls: ssl.SSLSocket | ssl.SSLObject, *_: object) -> None:
        """SNI callback of the intake context: every new TLS connection uses the context of the
        set in force, so a reloaded CA or CRL applies without a restart."""
        context = self.current.server_context
        if context is not None:
            tls.context = context

    def install_sighup(self, loop: asyncio.AbstractEventLoop) -> None:
        """Reload on SIGHUP (in a thread: reading and compiling must not block I/O)."""
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(None, self.reload))
