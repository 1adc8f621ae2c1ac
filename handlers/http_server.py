"""HTTP transport: ``POST /slack/events`` for commands, interactivity and events, plus health.

Acks are sent from one event loop (uvicorn, with the httptools parser), and Bolt's
dispatch runs right there: our listeners only ack and hand the work to the work pool
(``handlers/work.py``), so dispatch takes well under a millisecond. The stdlib threaded
server this replaces gave every connection a thread of its own; under one GIL each of
those threads had to win the lock several times per request (accept, start, read,
write) against the threads doing the work, and with 50 concurrent commands during a
pool-wide apply acks took 90 ms at the median (``tests/benchmarks/bench_ack.py``).
The loop is uvloop's rather than asyncio's for the same reason: asyncio's loop, in
Python, lets go of the GIL around every accept, recv, send and close and must win it
back from a busy work thread each time; libuv makes those calls in C and takes the GIL
only to run the Python callbacks, so a request waits for it fewer times and costs less
CPU in between (bench_ack.py during a pool-wide apply: p99 about a third lower).
Health and metrics answers may be slow (``/readyz`` asks every pool), so they run on
a thread and never hold up an ack.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST
from slack_bolt import App, BoltRequest

from bot import metrics

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
MAX_BODY = 1 << 20  # Slack payloads are far smaller; refuse anything absurd before reading it
GRACE_SECONDS = 10  # on shutdown, open requests get this long to finish
KEEP_ALIVE_SECONDS = 75  # longer than the usual load balancer idle timeout (60 s), so the balancer closes first

ReadyCheck = Callable[[], tuple[bool, dict[str, object]]]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Routes = Mapping[str, Callable[[Scope, Receive, Send], Awaitable[None]]]


class HttpServer:
    """The bound socket and the uvicorn server; ``serve_forever`` blocks until ``shutdown``."""

    def __init__(
        self, app: App, host: str, port: int, ready: ReadyCheck | None = None, routes: Routes | None = None
    ) -> None:
        # Bound here, not by uvicorn, so port 0 is known before serving and callers can print it.
        self._socket = socket.create_server((host, port), backlog=1024)
        self.server_address: tuple[str, int] = self._socket.getsockname()[:2]
        config = uvicorn.Config(
            asgi_app(app, ready, routes),
            http="httptools",
            loop="uvloop",
            lifespan="off",
            log_config=None,  # xenbot's own logging (bot/logs.py), not uvicorn's
            access_log=False,
            server_header=False,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            timeout_graceful_shutdown=GRACE_SECONDS,
        )
        self._server = uvicorn.Server(config)
        self._stopped = threading.Event()

    def serve_forever(self) -> None:
        """In the main thread, SIGINT/SIGTERM stop it gracefully and are raised again afterwards."""
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._stopped.set()

    def shutdown(self, timeout: float = GRACE_SECONDS + 5) -> None:
        self._server.should_exit = True
        self._stopped.wait(timeout)

    def server_close(self) -> None:
        self._socket.close()


def asgi_app(
    app: App, ready: ReadyCheck | None, routes: Routes | None = None
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    extra = dict(routes or {})  # more POST endpoints (handlers/alert_webhooks.py)

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == EVENTS_PATH and method == "POST":
            await _slack_request(app, scope, receive, send)
        elif method == "POST" and path in extra:
            await extra[path](scope, receive, send)
        elif method == "POST":
            await _send(send, 404, b"not found", "text/plain")
        elif path == "/healthz":
            await _send(send, 200, b'{"status":"ok"}', "application/json")
        elif path == "/readyz" and ready is not None:
            ok, details = await asyncio.to_thread(ready)
            await _send(send, 200 if ok else 503, json.dumps(details).encode(), "application/json")
        elif path == "/metrics":
            await _send(send, 200, await asyncio.to_thread(metrics.exposition), CONTENT_TYPE_LATEST)
        else:
            await _send(send, 404, b"not found", "text/plain")

    return application


async def _slack_request(app: App, scope: Scope, receive: Receive, send: Send) -> None:
    headers: dict[str, str | Sequence[str]] = {}
    for name, value in scope["headers"]:
        key = name.decode("latin-1")
        headers[key] = [*headers.get(key, ()), value.decode("latin-1")]
    declared = next(iter(headers.get("content-length", ["0"])), "0")
    if not declared.isdigit() or int(declared) > MAX_BODY:
        await _send(send, 413, b"payload too large", "text/plain")
        return
    try:
        body = await _read_body(receive)
    except _Disconnected:
        return  # nobody to answer; Slack retries what it did not see acked
    if body is None:
        await _send(send, 413, b"payload too large", "text/plain")
        return
    started = time.perf_counter()
    query = scope.get("query_string", b"").decode("latin-1")
    # Inline on the loop: dispatch verifies the signature and runs a listener that acks and
    # hands the work on (handlers/work.py); nothing in it waits on the network.
    response = app.dispatch(BoltRequest(body=body.decode("utf-8"), query=query, headers=headers))
    metrics.ACK_SECONDS.observe(time.perf_counter() - started)
    payload = (response.body or "").encode("utf-8")
    extra = [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, values in response.headers.items()
        if name.lower() != "content-length"
        for value in values
    ]
    await send({"type": "http.response.start", "status": response.status,
                "headers": [*extra, (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body, or None past MAX_BODY (a client that lied about its Content-Length)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class _Disconnected(Exception):
    """The client went away before sending its whole request."""


async def _send(send: Send, status: int, payload: bytes, content_type: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
