"""HTTP/XML-RPC front end: one listener per host, keep-alive, faults, call counting.

A real pool is N hosts on N IP addresses, all on port 443/80, and only the master
answers; members answer ``HOST_IS_SLAVE`` with the master's *address*. The
simulator copies that shape on loopback: host *k* listens on ``127.0.0.k`` and
every host shares one port, so ``host.address`` is a bare IP exactly as a client
sees it in production. When that is impossible (``--host`` is not a 127.x
address, or the port is taken on one of the IPs) each host gets its own port on
the given IP and ``host.address`` becomes ``"ip:port"``.

One acceptor thread watches every listening socket; each accepted connection gets
a thread that serves requests until the client closes it (HTTP/1.1 keep-alive —
``XenAPI.Session`` keeps a single connection). Each answer is written with a
single ``send`` and ``TCP_NODELAY`` so Nagle's algorithm and delayed ACKs cannot
add 40 ms per call.

Per call: ``sim.*`` control methods bypass everything below. Otherwise the call
is counted, then the fault plan is applied — hang until released, latency, drop
before executing, injected failure — then the dispatcher runs it, and a drop
after executing may still swallow the answer.
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import selectors
import socket
import socketserver
import ssl
import threading
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, cast

from bot.xen.sim import errors
from bot.xen.sim.api import Dispatcher
from bot.xen.sim.errors import XapiError
from bot.xen.sim.faults import Faults

RPC_PATHS = ("/", "/RPC2")
SimHandler = Callable[[str, tuple[Any, ...]], Any]


@dataclass
class Endpoint:
    """Where one host listens and the address XAPI reports for it."""

    host_ref: str
    ip: str
    port: int
    address: str  # host.address: bare IP (shared port) or "ip:port" (fallback)
    sock: socket.socket
    scheme: str = "http"  # "https" once the host serves its certificate (tls.py)

    @property
    def url(self) -> str:
        """``http(s)://ip:port/`` for this host."""
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{self.scheme}://{host}:{self.port}/"


class CallCounter:
    """Calls received per XAPI method name (``Async.`` variants counted separately)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()

    def add(self, method: str) -> None:
        """Count one call."""
        with self._lock:
            self._counts[method] += 1

    def snapshot(self) -> dict[str, int]:
        """A copy of the counts."""
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        """Zero every count."""
        with self._lock:
            self._counts.clear()


def _listen(ip: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ip, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def loopback_series(ip: str, count: int) -> list[str] | None:
    """``count`` consecutive loopback IPv4 addresses starting at ``ip``, or None if impossible."""
    try:
        start = ipaddress.IPv4Address(ip)
    except ValueError:
        return None
    if not start.is_loopback:
        return None
    series = [start + i for i in range(count)]
    if not all(a.is_loopback and int(a) & 0xFF not in (0, 255) for a in series):
        return None
    return [str(a) for a in series]


class XapiServer:
    """Serves the pool's hosts over HTTP and applies faults and latency."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        faults: Faults,
        *,
        latency_ms: float = 0.0,
        sim_handler: SimHandler | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.faults = faults
        self.latency_s = latency_ms / 1000.0
        self.sim_handler = sim_handler
        self.counts = CallCounter()
        self.endpoints: list[Endpoint] = []
        self.shared_port = False
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._acceptor: threading.Thread | None = None
        self._tls: dict[str, ssl.SSLContext] = {}  # host ref -> its server context

    def enable_tls(self, contexts: dict[str, ssl.SSLContext]) -> None:
        """Serve each host over HTTPS with its own context (before :meth:`start`)."""
        self._tls = dict(contexts)
        for ep in self.endpoints:
            ep.scheme = "https" if ep.host_ref in self._tls else "http"

    # ------------------------------------------------------------------ setup
    def bind(self, host_refs: list[str], ip: str = "127.0.0.1", port: int = 0) -> list[Endpoint]:
        """Open one listener per host: same port on consecutive 127.x IPs, else one port each."""
        series = loopback_series(ip, len(host_refs))
        if series is not None:
            for _attempt in range(20 if port == 0 else 1):
                socks: list[socket.socket] = []
                try:
                    socks.append(_listen(series[0], port))
                    chosen = socks[0].getsockname()[1]
                    for other in series[1:]:
                        socks.append(_listen(other, chosen))
                except OSError:
                    for s in socks:
                        s.close()
                    continue
                self.shared_port = True
                self.endpoints = [
                    Endpoint(ref, addr, chosen, addr, s) for ref, addr, s in zip(host_refs, series, socks, strict=True)
                ]
                return self.endpoints
        advertised = "127.0.0.1" if ip in ("0.0.0.0", "") else ("::1" if ip == "::" else ip)  # noqa: S104
        self.endpoints = []
        try:
            for index, ref in enumerate(host_refs):
                sock = _listen(ip, port if index == 0 else 0)
                chosen = sock.getsockname()[1]
                bracketed = f"[{advertised}]" if ":" in advertised else advertised
                self.endpoints.append(Endpoint(ref, advertised, chosen, f"{bracketed}:{chosen}", sock))
        except OSError:
            for ep in self.endpoints:
                ep.sock.close()
            raise
        self.shared_port = False
        return self.endpoints

    def start(self) -> None:
        """Start accepting connections (after :meth:`bind`)."""
        self._acceptor = threading.Thread(target=self._accept_loop, name="xapi-sim-accept", daemon=True)
        self._acceptor.start()

    def stop(self) -> None:
        """Close listeners and every open connection; hung calls give up."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
        for ep in self.endpoints:
            ep.sock.close()
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._wake_r.close()
        self._wake_w.close()

    # --------------------------------------------------------------- plumbing
    def _accept_loop(self) -> None:
        selector = selectors.DefaultSelector()
        for ep in self.endpoints:
            ep.sock.setblocking(False)
            selector.register(ep.sock, selectors.EVENT_READ, ep)
        selector.register(self._wake_r, selectors.EVENT_READ, None)
        try:
            while not self._stopping.is_set():
                for key, _mask in selector.select():
                    endpoint = key.data
                    if endpoint is None:
                        return
                    try:
                        conn, addr = cast(socket.socket, key.fileobj).accept()
                    except OSError:
                        continue
                    conn.setblocking(True)
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    threading.Thread(
                        target=self._serve_connection, args=(conn, addr, endpoint), name="xapi-sim-conn", daemon=True
                    ).start()
        finally:
            selector.close()

    def _serve_connection(self, conn: socket.socket, addr: Any, endpoint: Endpoint) -> None:
        context = self._tls.get(endpoint.host_ref)
        if context is not None:
            try:  # the handshake runs here, on the connection's thread, not in the acceptor
                conn = context.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                conn.close()  # e.g. a client that does not trust this host's certificate
                return
        with self._conns_lock:
            self._conns.add(conn)
        try:
            _Handler(conn, addr, _Context(self, endpoint))
        except OSError:
            pass  # client went away or we are stopping
        finally:
            with self._conns_lock:
                self._conns.discard(conn)
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    # ---------------------------------------------------------------- calls
    def respond(self, endpoint: Endpoint, method: str, params: tuple[Any, ...]) -> bytes | None:
        """The XML-RPC answer to one call, or None to drop the connection unanswered."""
        if method.startswith("sim."):
            return self._respond_sim(method, params)
        self.counts.add(method)
        if self.dispatcher.emergency.is_down(endpoint.host_ref):
            return None  # a host that is down answers nothing (sim.stop_master)
        plan = self.faults.plan(method)
        if plan.hang is not None:
            while not plan.hang.wait(0.05):
                if self._stopping.is_set():
                    return None
        delay = self.latency_s + plan.latency_s
        if delay > 0:
            time.sleep(delay)
        if plan.drop_before:
            return None
        if plan.failure is not None:
            envelope: dict[str, Any] = {"Status": "Failure", "ErrorDescription": plan.failure.description}
        else:
            try:
                value = self.dispatcher.call(endpoint.host_ref, method, params)
                envelope = {"Status": "Success", "Value": value}
            except XapiError as exc:
                envelope = {"Status": "Failure", "ErrorDescription": exc.description}
            except Exception as exc:  # noqa: BLE001 - a simulator bug must answer like XAPI does
                envelope = {"Status": "Failure", "ErrorDescription": [errors.INTERNAL_ERROR, repr(exc)]}
        if plan.drop_after:
            return None
        try:
            return xmlrpc.client.dumps((envelope,), methodresponse=True).encode()
        except TypeError as exc:  # e.g. a None slipped into a value: XAPI never sends nil
            envelope = {"Status": "Failure", "ErrorDescription": [errors.INTERNAL_ERROR, repr(exc)]}
            return xmlrpc.client.dumps((envelope,), methodresponse=True).encode()

    def _respond_sim(self, method: str, params: tuple[Any, ...]) -> bytes:
        if self.sim_handler is None:
            fault = xmlrpc.client.Fault(1, f"{method}: no simulator control handler")
            return xmlrpc.client.dumps(fault, methodresponse=True).encode()
        try:
            value = self.sim_handler(method, params)
            return xmlrpc.client.dumps((value,), methodresponse=True, allow_none=True).encode()
        except Exception as exc:  # noqa: BLE001 - reported to the caller as an XML-RPC fault
            fault = xmlrpc.client.Fault(1, f"{type(exc).__name__}: {exc}")
            return xmlrpc.client.dumps(fault, methodresponse=True).encode()


@dataclass
class _Context:
    server: XapiServer
    endpoint: Endpoint


class _Handler(BaseHTTPRequestHandler):
    """Minimal XML-RPC over HTTP/1.1 handler; one instance serves one connection."""

    protocol_version = "HTTP/1.1"
    server_version = "xapi"
    sys_version = ""

    def __init__(self, request: socket.socket, client_address: Any, context: _Context) -> None:
        self.context = context
        super().__init__(request, client_address, cast(socketserver.BaseServer, context))

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: a test run makes thousands of calls."""

    def do_GET(self) -> None:
        """XAPI's HTTP handlers on GET: ``/rrd_updates`` (bot/xen/sim/rrd.py); others answer 404."""
        from bot.xen.sim import rrd

        answer = rrd.respond(self.context.server.dispatcher, self.context.endpoint.host_ref, self.path,
                             self.headers.get("Accept"))
        if answer is None:
            self.close_connection = True  # a host that is down answers nothing
            return
        self._send(*answer)

    def do_POST(self) -> None:
        """One XML-RPC call."""
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path.split("?", 1)[0] not in RPC_PATHS:
            self._send(404, b"Not found\n", "text/plain")
            return
        try:
            params, method = xmlrpc.client.loads(body)
        except Exception:  # noqa: BLE001 - malformed body from the client
            self._send(400, b"Malformed XML-RPC request\n", "text/plain")
            return
        if method is None:
            self._send(400, b"Missing methodName\n", "text/plain")
            return
        answer = self.context.server.respond(self.context.endpoint, method, params)
        if answer is None:
            self.close_connection = True  # drop: close without answering
            return
        self._send(200, answer, "text/xml")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        reason = self.responses.get(code, ("",))[0]
        head = (
            f"HTTP/1.1 {code} {reason}\r\n"
            f"Server: {self.server_version}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            + ("Connection: close\r\n" if self.close_connection else "")
            + "\r\n"
        ).encode("latin-1")
        self.wfile.write(head + body)
