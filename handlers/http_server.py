"""HTTP transport: ``POST /slack/events`` for commands, interactivity and events, plus health.

A threaded stdlib server in front of ``App.dispatch``: every connection gets its
own thread, the listener acks inside it and hands the slow work to the work
pool (``handlers/work.py``) — so a slow pool never delays another person's ack.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST
from slack_bolt import App, BoltRequest

from bot import metrics

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
MAX_BODY = 1 << 20  # Slack payloads are far smaller; refuse anything absurd before reading it

ReadyCheck = Callable[[], tuple[bool, dict[str, object]]]


def make_server(app: App, host: str, port: int, ready: ReadyCheck | None = None) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "xenbot"

        def do_POST(self) -> None:
            path = urlsplit(self.path)
            if path.path != EVENTS_PATH:
                self._send(404, b"not found", "text/plain")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._send(413, b"payload too large", "text/plain")
                return
            started = time.perf_counter()
            body = self.rfile.read(length).decode("utf-8")
            headers: dict[str, str | Sequence[str]] = {k.lower(): [v] for k, v in self.headers.items()}
            response = app.dispatch(BoltRequest(body=body, query=path.query, headers=headers))
            metrics.ACK_SECONDS.observe(time.perf_counter() - started)
            payload = (response.body or "").encode("utf-8")
            self.send_response(response.status)
            for name, values in response.headers.items():
                if name.lower() == "content-length":
                    continue
                for value in values:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == "/healthz":
                self._send(200, b'{"status":"ok"}', "application/json")
            elif path == "/readyz" and ready is not None:
                ok, details = ready()
                self._send(200 if ok else 503, json.dumps(details).encode(), "application/json")
            elif path == "/metrics":
                self._send(200, metrics.exposition(), CONTENT_TYPE_LATEST)
            else:
                self._send(404, b"not found", "text/plain")

        def _send(self, status: int, payload: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("http %s", format % args)

    server = _Server((host, port), Handler)
    server.daemon_threads = True
    return server


class _Server(ThreadingHTTPServer):
    # The stdlib default backlog of 5 resets connections when Slack (or a load balancer)
    # opens dozens at once; acks must not fail because the accept queue was short.
    request_queue_size = 256


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="xenbot-http", daemon=True)
    thread.start()
    return thread
