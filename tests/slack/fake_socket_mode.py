"""A local Socket Mode peer, so tests drive the app through Bolt's real ``SocketModeHandler``.

Why this exists: in Socket Mode Slack does not call the app; the app calls
``apps.connections.open`` with its ``xapp-`` token, opens the returned WebSocket URL and
then receives *envelopes* (``slash_commands``, ``interactive``, ``events_api``) that it
must acknowledge by sending ``{"envelope_id": …}`` back (optionally with a response
``payload``).  Testing that path with the real ``slack_sdk.socket_mode`` client needs a
real WebSocket server speaking Slack's message protocol; this is it.

Wiring: attach it to a :class:`tests.slack.fake_slack.FakeSlack` (the ``fake_socket_mode``
fixture does this), so ``apps.connections.open`` returns
``ws://127.0.0.1:<port>/link/?ticket=<uuid>&app_id=<app id>`` — the same shape as Slack's
``wss://wss-primary.slack.com/link/?ticket=…&app_id=…``.

Client compatibility (checked against slack_sdk 3.48 sources):

* ``slack_sdk.socket_mode.builtin`` (what ``slack_bolt.adapter.socket_mode.SocketModeHandler``
  uses) accepts ``ws://``: it only wraps the socket in TLS when the port is 443 (and a
  ``wss://`` URL with another port is also connected *without* TLS).  Its frame parser
  handles unfragmented, uncompressed text frames only, which is what this server sends
  (compression is disabled).
* the ``websockets`` and ``aiohttp`` based clients also accept ``ws://`` URLs.

The server is implemented with the ``websockets`` library's threaded server (a project
dependency), so the WebSocket protocol itself is not hand-rolled.

Teardown order matters: the builtin client reconnects when the server goes away, so
close the app's handler first (see :func:`close_socket_mode_client`), then stop this
server, then the FakeSlack.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol, Self

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

__all__ = [
    "Ack",
    "ConnectionInfo",
    "EnvelopeType",
    "FakeSocketMode",
    "close_socket_mode_client",
]

logger = logging.getLogger(__name__)

EnvelopeType = Literal["slash_commands", "interactive", "events_api"]


@dataclass(frozen=True)
class Ack:
    """What the app sent back for one envelope.

    ``payload`` is the response body the app attached to its ack (Bolt sends the
    ``ack(...)`` arguments here, e.g. ``{"text": …}`` or ``{"response_action": …}``),
    ``None`` for a bare ack.
    """

    envelope_id: str
    payload: dict[str, Any] | None
    raw: str
    time: float


@dataclass
class ConnectionInfo:
    """One WebSocket connection the app opened."""

    number: int
    path: str
    ticket: str | None
    ticket_issued: bool
    opened_at: float
    closed_at: float | None = None

    @property
    def open(self) -> bool:
        """True until the connection closes."""
        return self.closed_at is None


class _ClosableClient(Protocol):
    auto_reconnect_enabled: bool

    def close(self) -> None: ...


class FakeSocketMode:
    """Threaded Socket Mode server on ``127.0.0.1:<random port>``.

    It greets every connection with Slack's ``hello`` message, sends envelopes on demand
    to the newest open connection, and records every message the app sends back.
    """

    def __init__(self, *, app_id: str = "A0XENBOT", host: str = "127.0.0.1") -> None:
        """``app_id`` appears in the connection URL and the ``hello`` message."""
        self.app_id = app_id
        self._host = host
        self._cond = threading.Condition()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._numbers = itertools.count(1)
        self._tickets: set[str] = set()
        self._open: dict[int, ServerConnection] = {}
        self._retiring: set[int] = set()
        self._connections: list[ConnectionInfo] = []
        self._acks: dict[str, Ack] = {}
        self._received: list[str] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Bind ``host:0`` and serve in a background thread.  Idempotent."""
        if self._server is not None:
            return self
        self._server = serve(
            self._handle,
            self._host,
            0,
            process_request=self._check_request,
            compression=None,  # the builtin client cannot inflate permessage-deflate frames
            ping_interval=None,  # the client pings us; no server pings, no timing on slow CI
            open_timeout=10,
            close_timeout=2,
            logger=logging.getLogger(f"{__name__}.websockets"),
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="FakeSocketMode", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close all connections (code 1001) and stop serving.  Idempotent."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The TCP port the server is bound to (only while started)."""
        if self._server is None:
            raise RuntimeError("FakeSocketMode is not started")
        return int(self._server.socket.getsockname()[1])

    @property
    def url(self) -> str:
        """Root URL, e.g. ``ws://127.0.0.1:40123``."""
        return f"ws://{self._host}:{self.port}"

    def new_connection_url(self) -> str:
        """A fresh connection URL with a new ticket, as ``apps.connections.open`` returns."""
        ticket = str(uuid.uuid4())
        with self._cond:
            self._tickets.add(ticket)
        return f"{self.url}/link/?ticket={ticket}&app_id={self.app_id}"

    # ------------------------------------------------------------------ driving the app

    def send_envelope(
        self,
        type: EnvelopeType | str,
        payload: dict[str, Any],
        envelope_id: str | None = None,
        *,
        retry_attempt: int | None = None,
        retry_reason: str | None = None,
        accepts_response_payload: bool | None = None,
        timeout: float = 5.0,
    ) -> str:
        """Send one envelope to the newest open connection and return its ``envelope_id``.

        Envelope shape as Slack sends it: ``envelope_id``, ``type``, ``payload``,
        ``accepts_response_payload`` (true for ``slash_commands`` and ``interactive``
        unless overridden), and for ``events_api`` only ``retry_attempt``/``retry_reason``
        (default ``0``/``""``; Bolt turns them into ``X-Slack-Retry-*`` headers, so they
        are left out of other types unless given).  ``payload`` is the decoded dict —
        build it with the ``*_payload`` helpers in :mod:`tests.slack.signing`.  Waits up
        to ``timeout`` for the app to be connected.
        """
        eid = envelope_id if envelope_id is not None else str(uuid.uuid4())
        envelope: dict[str, Any] = {"envelope_id": eid, "payload": payload, "type": type}
        if accepts_response_payload is None:
            accepts_response_payload = type in ("slash_commands", "interactive")
        envelope["accepts_response_payload"] = accepts_response_payload
        if type == "events_api" or retry_attempt is not None or retry_reason is not None:
            envelope["retry_attempt"] = retry_attempt if retry_attempt is not None else 0
            envelope["retry_reason"] = retry_reason if retry_reason is not None else ""
        self._send(json.dumps(envelope), timeout)
        return eid

    def send_slash_command(self, payload: dict[str, Any], **kwargs: Any) -> str:
        """Shorthand for ``send_envelope("slash_commands", payload, ...)``."""
        return self.send_envelope("slash_commands", payload, **kwargs)

    def send_interactive(self, payload: dict[str, Any], **kwargs: Any) -> str:
        """Shorthand for ``send_envelope("interactive", payload, ...)``."""
        return self.send_envelope("interactive", payload, **kwargs)

    def send_event(self, payload: dict[str, Any], **kwargs: Any) -> str:
        """Shorthand for ``send_envelope("events_api", payload, ...)`` (an event_callback)."""
        return self.send_envelope("events_api", payload, **kwargs)

    def disconnect(self, reason: str = "refresh_requested", *, timeout: float = 5.0) -> None:
        """Send Slack's ``disconnect`` message to the newest connection.

        The SDK clients react by calling ``apps.connections.open`` and opening a new
        connection.  Like Slack, the server then closes the old connection once the
        new one is up (without that, the builtin client keeps reading the old socket
        until its 3 s receive timeout before it switches over).  Follow with
        ``wait_for_connection(count=n + 1)`` before sending more envelopes.
        """
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}}
        number = self._send(json.dumps(message), timeout)
        with self._cond:
            self._retiring.add(number)

    def close_connections(self, code: int = 1001, reason: str = "") -> None:
        """Close every open connection with a WebSocket close frame."""
        with self._cond:
            connections = list(self._open.values())
        for connection in connections:
            connection.close(code, reason)

    # ------------------------------------------------------------------ queries

    def connections(self) -> list[ConnectionInfo]:
        """Every connection opened so far, oldest first."""
        with self._cond:
            return list(self._connections)

    def wait_for_connection(self, count: int = 1, timeout: float = 5.0) -> ConnectionInfo:
        """Block until ``count`` connections have been opened and exactly one is open
        (a replaced connection has closed); return that one."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                live = [c for c in self._connections if c.open]
                if len(self._connections) >= count and len(live) == 1:
                    return live[-1]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"timed out after {timeout:.1f}s waiting for {count} Socket Mode connection(s); "
                        f"seen: {self._connections!r}"
                    )
                self._cond.wait(remaining)

    def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> Ack:
        """Block until the app acknowledges ``envelope_id``; AssertionError with what
        was received otherwise.  Slack expects the ack within 3 seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while envelope_id not in self._acks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = "\n".join(f"  {m[:200]}" for m in self._received) or "  (nothing)"
                    raise AssertionError(
                        f"no ack for envelope {envelope_id} within {timeout:.1f}s; the app sent:\n{seen}"
                    )
                self._cond.wait(remaining)
            return self._acks[envelope_id]

    def acks(self) -> list[Ack]:
        """All acks received, in arrival order."""
        with self._cond:
            return sorted(self._acks.values(), key=lambda a: a.time)

    def received(self) -> list[str]:
        """Every text message the app sent, raw."""
        with self._cond:
            return list(self._received)

    # ------------------------------------------------------------------ internals

    def _send(self, text: str, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (live := [n for n in self._open if n not in self._retiring]):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no open Socket Mode connection within {timeout:.1f}s")
                self._cond.wait(remaining)
            number = max(live)
            connection = self._open[number]
        connection.send(text)
        return number

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urllib.parse.urlsplit(request.path).path
        if path.rstrip("/") != "/link":
            return connection.respond(404, "Not Found\n")
        return None

    def _handle(self, connection: ServerConnection) -> None:
        parts = urllib.parse.urlsplit(connection.request.path if connection.request else "")
        ticket = urllib.parse.parse_qs(parts.query).get("ticket", [None])[0]
        with self._cond:
            number = next(self._numbers)
            info = ConnectionInfo(
                number=number,
                path=connection.request.path if connection.request else "",
                ticket=ticket,
                ticket_issued=ticket in self._tickets,
                opened_at=time.time(),
            )
            self._connections.append(info)
            self._open[number] = connection
            open_count = len(self._open)
            retired = [self._open[n] for n in self._retiring if n in self._open]
            self._retiring.clear()
            self._cond.notify_all()
        for old in retired:
            # close() waits for the closing handshake; do not hold up the new connection.
            threading.Thread(target=old.close, args=(1001, "replaced"), daemon=True).start()
        hello = {
            "type": "hello",
            "num_connections": open_count,
            "debug_info": {"host": "applink-fake", "build_number": 1, "approximate_connection_time": 18060},
            "connection_info": {"app_id": self.app_id},
        }
        try:
            connection.send(json.dumps(hello))
            for message in connection:
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                self._on_message(text)
        except ConnectionClosed:
            pass
        finally:
            with self._cond:
                self._open.pop(number, None)
                info.closed_at = time.time()
                self._cond.notify_all()

    def _on_message(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        with self._cond:
            self._received.append(text)
            if isinstance(message, dict) and "envelope_id" in message:
                payload = message.get("payload")
                eid = str(message["envelope_id"])
                self._acks[eid] = Ack(
                    envelope_id=eid,
                    payload=payload if isinstance(payload, dict) else None,
                    raw=text,
                    time=time.time(),
                )
            self._cond.notify_all()


def close_socket_mode_client(client: _ClosableClient, fake: FakeSocketMode | None = None) -> None:
    """Shut a Socket Mode client (``handler.client``) down quickly and without reconnecting.

    The builtin client's receive loop holds a lock during a blocking ``recv`` with a 3 s
    socket timeout, so ``close()`` alone can stall that long; and if the server closes
    first, the client reconnects.  Disabling auto-reconnect, then letting the server send
    a close frame, unblocks the receive loop at once.
    """
    client.auto_reconnect_enabled = False
    if fake is not None and fake._server is not None:
        fake.close_connections()
    client.close()
