"""The listening socket, with what must hold before a peer's identity is known (docs/operations.md
"Bounds and timeouts").

asyncio's own ``create_server`` accepts every connection it can, logs every failed accept (out of
file descriptors: thousands of lines a second), and gives a TLS handshake 60 s. Here:

* **a cap on open connections**, and one per source address, counting those still in their TLS
  handshake: beyond either, the connection is closed at once (TCP FIN, nothing read), so a flood
  costs one accept and one close per connection instead of a socket, memory and a handshake;
* **a TLS handshake timeout**;
* **a header timeout**: a connection that has not completed its first request head within it is
  closed (later requests on a kept-alive connection are bounded by the keep-alive timeout, which
  aiohttp measures from the last response and dribbled bytes do not reset);
* **accept errors rate-limited in the log**, and accepting paused for a moment while the process is
  out of file descriptors, instead of spinning.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("broker.http")

ACCEPT_BATCH = 64
"""Connections accepted per wake-up (then other work gets the loop)."""
ACCEPT_PAUSE = 0.25
"""Seconds accepting pauses after an accept failed for want of resources."""
LOG_EVERY = 10.0
"""At most one log line per this many seconds for each kind of refusal or accept error."""
OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def default_max_connections() -> int:
    """Half the process's file descriptors (the rest is for deliveries, the store and logs), at
    most 4096 and at least 16."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, min(4096, soft // 2))


@dataclass(frozen=True)
class ListenerBounds:
    max_connections: int = field(default_factory=default_max_connections)
    """Connections open at once, those in their TLS handshake included."""
    per_address: int = 0
    """Of which from one source address; 0: a quarter of ``max_connections``."""
    handshake_timeout: float = 10.0
    header_timeout: float = 30.0
    """Seconds from the end of the handshake to the end of the first request head."""

    @property
    def address_cap(self) -> int:
        return self.per_address or max(1, self.max_connections // 4)


class _RateLimitedLog:
    """Say what happened at most once per LOG_EVERY seconds per kind, with how many times."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._since: Counter[str] = Counter()

    def __call__(self, kind: str, message: str) -> None:
        self._since[kind] += 1
        now = time.monotonic()
        if now - self._last.get(kind, -LOG_EVERY) < LOG_EVERY:
            return
        count = self._since.pop(kind)
        self._last[kind] = now
        log.warning(
            "%s (%d time(s) in the last %.0f s)", message, count, LOG_EVERY, extra={"event": kind}
        )


class _Guard(asyncio.Protocol):
    """Sits between the transport and aiohttp's protocol: forwards everything, ends the header
    timeout when the first request head is in, and tells the listener when the connection ends."""

    def __init__(self, inner: asyncio.Protocol, listener: Listener, address: str) -> None:
        self.inner = inner
        self.listener = listener
        self.address = address
        self.released = False
        self._head = b""
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.BaseTransport | None = None

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.listener._closed(self.address)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._timer = asyncio.get_running_loop().call_later(
            self.listener.bounds.header_timeout, self._head_too_slow
        )
        self.inner.connection_made(transport)

    def _head_too_slow(self) -> None:
        self._timer = None
        self.listener.note("header_timeout", "request head not complete in time: closed")
        if isinstance(self._transport, asyncio.Transport):
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._timer is not None:
            # Only the end of the head matters; the last 3 bytes are kept to find a
            # "\r\n\r\n" split across reads.
            window = self._head + data
            if b"\r\n\r\n" in window:
                self._timer.cancel()
                self._timer = None
            else:
                self._head = window[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            self.inner.connection_lost(exc)
        finally:
            self.release()


class Listener:
    """Accepts on ``sock`` for ``factory`` (aiohttp's web.Server) within ``bounds``. Has the
    ``close()`` aiohttp's sites call when they stop."""

    def __init__(
        self,
        sock: socket.socket,
        factory: Callable[[], asyncio.Protocol],
        ssl_context: ssl.SSLContext | None,
        bounds: ListenerBounds,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.sock = sock
        self.factory = factory
        self.ssl_context = ssl_context
        self.bounds = bounds
        self.on_refused = on_refused
        self.open = 0
        self.by_address: Counter[str] = Counter()
        self.note = _RateLimitedLog()
        self._loop = asyncio.get_running_loop()
        self._accepting = False
        self._starting: set[asyncio.Task[None]] = set()

    def start(self, backlog: int = 128) -> None:
        self.sock.setblocking(False)
        self.sock.listen(backlog)
        self._resume()

    def close(self) -> None:
        self._pause()
        self.sock.close()
        for task in self._starting:
            task.cancel()

    def _resume(self) -> None:
        if not self._accepting and self.sock.fileno() >= 0:
            self._loop.add_reader(self.sock.fileno(), self._accept)
            self._accepting = True

    def _pause(self) -> None:
        if self._accepting:
            self._loop.remove_reader(self.sock.fileno())
            self._accepting = False

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.note("accept_failed", f"accept() failed: {exc.strerror}")
                if exc.errno in OUT_OF_RESOURCES:
                    self._pause()
                    self._loop.call_later(ACCEPT_PAUSE, self._resume)
                    return
                continue  # e.g. ECONNABORTED: that client gave up before we accepted it
            address = str(peer[0]) if isinstance(peer, tuple) else "local"
            reason = self._refusal(address)
            if reason is not None:
                conn.close()
                self.note("connection_refused", f"connection refused: {reason}")
                if self.on_refused is not None:
                    self.on_refused(reason)
                continue
            self.open += 1
            self.by_address[address] += 1
            task = self._loop.create_task(self._start(conn, address))
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    def _refusal(self, address: str) -> str | None:
        if self.open >= self.bounds.max_connections:
            return f"{self.open} connections open, the most allowed (--max-connections)"
        if self.by_address[address] >= self.bounds.address_cap:
            return (
                f"{self.by_address[address]} connections open from {address}, the most allowed "
                "from one address (--max-connections-per-address)"
            )
        return None

    async def _start(self, conn: socket.socket, address: str) -> None:
        guard = _Guard(self.factory(), self, address)
        try:
            await self._loop.connect_accepted_socket(
                lambda: guard,
                conn,
                ssl=self.ssl_context,
                ssl_handshake_timeout=self.bounds.handshake_timeout if self.ssl_context else None,
            )
        except (OSError, ssl.SSLError, TimeoutError, asyncio.CancelledError) as exc:
            # A failed or timed-out handshake never reaches the guard's connection_lost.
            conn.close()
            guard.release()
            if isinstance(exc, asyncio.CancelledError):
                raise

    def _closed(self, address: str) -> None:
        self.open -= 1
        self.by_address[address] -= 1
        if self.by_address[address] <= 0:
            del self.by_address[address]
