"""The routing table in force: loaded once, swapped atomically on reload (SIGHUP or admin API).

A reload that finds an error keeps the old table and reports why; warnings do not block it.
Callers read ``holder.table`` once per message and route with that object, so one message is
always routed by one table, and its ``digest`` is the one written into the receipt.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from broker.errors import ConfigError
from broker.routing.load import LoadResult, load_routing
from broker.routing.table import RoutingTable

log = logging.getLogger("broker.routing")


class RoutingHolder:
    def __init__(self, path: Path, table: RoutingTable) -> None:
        self.path = path
        self._table = table
        self._lock = threading.Lock()  # one reload at a time; reads need no lock
        self.reload_failures = 0
        self.listeners: list[Callable[[LoadResult], None]] = []
        """Called after every reload attempt, from the reloading thread (the audit log)."""

    @classmethod
    def load(cls, path: Path) -> RoutingHolder:
        """Load the table at start-up; any error is a ConfigError listing every problem."""
        result = load_routing(path)
        for warning in result.warnings:
            log.warning("%s", warning)
        if result.table is None:
            raise ConfigError("routing table has errors:\n" + "\n".join(map(str, result.errors)))
        return cls(path, result.table)

    @property
    def table(self) -> RoutingTable:
        return self._table

    def reload(self) -> LoadResult:
        """Re-read the file; swap it in if it has no error, else keep the table in force."""
        with self._lock:
            result = load_routing(self.path)
            for listener in self.listeners:
                listener(result)
            if result.table is None:
                self.reload_failures += 1
                log.error(
                    "routing reload refused; table %s stays in force: %s",
                    self._table.digest[:12],
                    "; ".join(map(str, result.errors)),
                )
                return result
            for warning in result.warnings:
                log.warning("%s", warning)
            old, self._table = self._table, result.table
            log.info("routing reloaded: %s → %s", old.digest[:12], result.table.digest[:12])
            return result

    def install_sighup(self, loop: asyncio.AbstractEventLoop) -> None:
        """Reload on SIGHUP (in a thread: reading and checking the file must not block I/O)."""
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(None, self.reload))
