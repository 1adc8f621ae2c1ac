"""What a slow or greedy HTTP client may hold: a deadline for its headers, and a cap on connections.

uvicorn has a keep-alive time-out between requests but none while a request's headers
arrive: 400 connections each sending a partial header line were held for good, and near
the file-descriptor limit (about 1,200 here) accepts failed and every request with them,
with nothing logged. :func:`guarded_protocol` gives uvicorn's httptools protocol a header
deadline (from the connection, or from a keep-alive request's first byte, to its last
header) and refuses connections past ``max_connections`` at once, before they cost more
than their descriptor; both are logged, at most once per ``LOG_EVERY_SECONDS`` with counts.
The body's deadline is kept where the body is read (``http_server._read_body``).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import threading
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

LOG_EVERY_SECONDS = 10.0
# Descriptors kept for everything but client connections: the listening socket, database and
# XAPI connections, Slack calls, log files, apply processes' pipes.
FD_RESERVE = 128


def connection_limit(wanted: int) -> int:
    """``wanted``, or less when the process may not open that many descriptors (plus the reserve)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or wanted + FD_RESERVE <= soft:
        return wanted
    limit = max(1, soft - FD_RESERVE)
    log.warning("serving at most %d connections, not %d: the file-descriptor limit is %d (raise LimitNOFILE / "
                "ulimit -n to allow more)", limit, wanted, soft)
    return limit


class Tally:
    """Counts events and logs them at most once per period: a flood is one line, not thousands."""

    def __init__(self, message: str, level: int = logging.WARNING, every: float = LOG_EVERY_SECONDS) -> None:
        self._message = message
        self._level = level
        self._every = every
        self._count = 0
        self._last = float("-inf")
        self._lock = threading.Lock()

    def add(self, *args: object) -> None:
        with self._lock:
            self._count += 1
            now = time.monotonic()
            if now - self._last < self._every:
                return
            count, self._count, self._last = self._count, 0, now
        log.log(self._level, self._message, count, *args)


def guarded_protocol(header_timeout: float, max_connections: int) -> type[HttpToolsProtocol]:
    refused = Tally("refused %d connection(s): %d are open, the limit (serving.max_connections)")
    too_slow = Tally("closed %d connection(s) that did not send their request headers within %g s",
                     level=logging.INFO)

    class GuardedProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None
        _refused = False

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            if len(self.connections) >= max_connections:
                self._refused = True
                self.transport = transport  # type: ignore[assignment]  # connection_lost closes it
                refused.add(len(self.connections))
                transport.abort()  # type: ignore[attr-defined]  # the descriptor goes back at once
                return
            super().connection_made(transport)  # type: ignore[arg-type]
            self._arm()

        def data_received(self, data: bytes) -> None:
            if not self._refused:
                super().data_received(data)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._header_timer is None:
                self._arm()  # a keep-alive connection's next request: its own deadline

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._refused:
                self.parser = None  # type: ignore[assignment]
                return
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._header_timer = self.loop.call_later(header_timeout, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                too_slow.add(header_timeout)
                self.transport.close()

    return GuardedProtocol


def protocol_options(header_timeout: float, max_connections: int) -> dict[str, Any]:
    """uvicorn.Config keywords for the guarded protocol."""
    return {"http": guarded_protocol(header_timeout, connection_limit(max_connections))}
