"""Serve a Bolt app (or any WSGI app) over real HTTP on ``127.0.0.1`` for a test.

Why this exists: HTTP-mode integration tests must send signed requests over a real socket
so the app's request parsing and signature verification run exactly as in production.
The stdlib ``wsgiref`` server plus Bolt's own WSGI adapter
(``slack_bolt.adapter.wsgi.SlackRequestHandler``) is the smallest real stack for that:
no extra dependencies, one thread per request (Bolt acks and lazy listeners overlap).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

    from slack_bolt import App

__all__ = ["serve_bolt", "serve_wsgi"]

logger = logging.getLogger(__name__)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = False


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("app http %s", format % args)


@contextmanager
def serve_wsgi(app: WSGIApplication, host: str = "127.0.0.1") -> Iterator[str]:
    """Run ``app`` on ``host:<random port>`` in a background thread; yield ``http://host:port``."""
    server = make_server(host, 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="wsgi-app", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def serve_bolt(app: App, path: str = "/slack/events") -> Iterator[str]:
    """Serve a Bolt ``App`` through its WSGI adapter; yield the full Request URL
    (``http://127.0.0.1:<port>/slack/events``) to post signed bodies to."""
    from slack_bolt.adapter.wsgi import SlackRequestHandler

    with serve_wsgi(SlackRequestHandler(app, path=path)) as root:
        yield root + path
