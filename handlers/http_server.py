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
from bot.settings import ServingSettings
from handlers.http_guard import Tally, protocol_options
from handlers.middleware import SlackSignature

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
        self,
        app: App,
        host: str,
        port: int,
        ready: ReadyCheck | None = None,
        sock: socket.socket | None = None,
        *,
        signing_secret: str,
        limits: ServingSettings | None = None,
        routes: Routes | None = None,
    ) -> None:
        limits = limits or ServingSettings()
        # Bound here (or by bind(), earlier), not by uvicorn, so port 0 is known before serving
        # and callers can print it.
        self._socket = sock if sock is not None else bind(host, port)
        self._socket.listen(1024)
        self.server_address: tuple[str, int] = self._socket.getsockname()[:2]
        config = uvicorn.Config(
            asgi_app(app, ready, SlackSignature(signing_secret), limits.body_timeout_seconds, routes),
            **protocol_options(limits.header_timeout_seconds, limits.max_connections),
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


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, not listening yet (``HttpServer`` listens).

    ``serve`` binds before anything else (Slack, pools, apply processes), so a port another
    process listens on is one line at once, not a failure after start-up; it listens only once
    it serves, so Slack's requests are refused (and retried by Slack) rather than queued during
    start-up. (Two xenbots binding the same port at the same moment both succeed here, as
    SO_REUSEADDR lets a restart reuse a port in TIME_WAIT; the second then fails to listen.)"""
    family, kind, proto, _name, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as socket.create_server does
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def asgi_app(
    app: App,
    ready: ReadyCheck | None,
    signature: SlackSignature,
    body_timeout: float = 10.0,
    routes: Routes | None = None,
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    extra = dict(routes or {})  # more POST endpoints (handlers/alert_webhooks.py)

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == EVENTS_PATH and method == "POST":
            await _slack_request(app, signature, body_timeout, scope, receive, send)
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


async def _slack_request(
    app: App, signature: SlackSignature, body_timeout: float, scope: Scope, receive: Receive, send: Send
) -> None:
    headers: dict[str, str | Sequence[str]] = {}
    for name, value in scope["headers"]:
        key = name.decode("latin-1")
        headers[key] = [*headers.get(key, ()), value.decode("latin-1")]
    declared = next(iter(headers.get("content-length", ["0"])), "0")
    if not declared.isdigit() or int(declared) > MAX_BODY:
        await _send(send, 413, b"payload too large", "text/plain")
        return
    try:
        async with asyncio.timeout(body_timeout):  # no extra task on the ack path, unlike wait_for
            body = await _read_body(receive)
    except _Disconnected:
        return  # nobody to answer; Slack retries what it did not see acked
    except TimeoutError:
        _SLOW_BODIES.add(body_timeout)
        await _send(send, 408, b"request timeout", "text/plain", close=True)
        return
    if body is None:
        await _send(send, 413, b"payload too large", "text/plain")
        return
    started = time.perf_counter()
    # The signature first, on the raw bytes: nothing from an unsigned request is parsed.
    problem = signature.problem(headers, body)
    if problem is not None:
        log.info("refused an unsigned request from %s: %s", _peer(scope), problem)
        await _send(send, 401, b"invalid request", "text/plain")
        return
    request = _parse(body, scope, headers)
    if request is None:
        await _send(send, 400, b"malformed request", "text/plain")
        return
    # Inline on the loop: dispatch verifies the signature again and runs a listener that acks
    # and hands the work on (handlers/work.py); nothing in it waits on the network.
    response = app.dispatch(request)
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


def _parse(body: bytes, scope: Scope, headers: dict[str, str | Sequence[str]]) -> BoltRequest | None:
    """Bolt's request, or None (logged) when a signed body is not what Slack sends.

    Bolt parses in its constructor: a JSON content type with a form body, a ``payload=``
    that is not JSON, or JSON that is not an object raise from there (or later, from the
    listeners' matchers), so anything but an object is refused here."""
    try:
        request = BoltRequest(
            body=body.decode("utf-8"), query=scope.get("query_string", b"").decode("latin-1"), headers=headers
        )
        if not isinstance(request.body, dict):
            raise ValueError(f"body is a {type(request.body).__name__}, not an object")
        _check_shape(request.body)
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:  # only parsing ran
        log.info("refused a malformed signed request from %s: %s", _peer(scope), _short(exc))
        return None
    return request


# Parts Bolt's matchers and context builders read as objects (``.get``, ``["action_id"]``):
# signed or not, a body where they are something else made dispatch raise, a 500 and a traceback.
_OBJECTS = ("user", "channel", "container", "team", "event", "message", "view", "enterprise", "state")


def _check_shape(body: dict[str, Any]) -> None:
    for key in _OBJECTS:
        if body.get(key) is not None and not isinstance(body[key], dict):
            raise ValueError(f"{key} is not an object")
    actions = body.get("actions")
    if actions is not None and not (
        isinstance(actions, list) and all(isinstance(a, dict) and isinstance(a.get("action_id"), str) for a in actions)
    ):
        raise ValueError("actions are not a list of actions")
    if body.get("type") == "event_callback" and not isinstance(body.get("event"), dict):
        raise ValueError("event_callback without an event")


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "an unknown peer"


def _short(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc)[:120]}"


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


_SLOW_BODIES = Tally("closed %d connection(s) that did not send their request body within %g s", level=logging.INFO)


class _Disconnected(Exception):
    """The client went away before sending its whole request."""


async def _send(send: Send, status: int, payload: bytes, content_type: str, *, close: bool = False) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(payload)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
