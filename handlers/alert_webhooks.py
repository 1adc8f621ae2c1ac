"""``POST /alerts/alertmanager`` and ``POST /alerts/grafana``: alerts as JSON, for tools that can send it.

Parsing Slack text is the fallback; Alertmanager's ``webhook_configs`` and
Grafana's webhook contact point send the labels themselves. The endpoints are
off until ``alerts.webhook_token`` is set; then every request must carry
``Authorization: Bearer <token>`` (compared in constant time), a JSON body no
larger than ``alerts.webhook_max_bytes``, and gets:

* 200 ``{"outcome": …}`` once the alerts are answered in Slack (the sender
  retries on anything else, and a retry is recognised by its body),
* 400 for a body that is not such a notification, 401 without the token,
  404 while the endpoints are off, 408 for a body trickled slower than
  ``serving.body_timeout_seconds``, 413 past the size limit, 503 when no
  channel is configured, 500 (with a reference in the log) otherwise.

Served by ``xenbot serve --http`` next to ``/slack/events``, and in Socket
Mode on the metrics port next to ``/metrics`` and ``/readyz``
(:func:`metrics_app`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import socket
import threading
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from bot import metrics
from bot.domain.alerts.webhook import WebhookError, WebhookSource, parse_json, read_webhook
from bot.wiring import Services

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Route = Callable[[Scope, Receive, Send], Awaitable[None]]

PATHS: Mapping[str, WebhookSource] = {"/alerts/alertmanager": "alertmanager", "/alerts/grafana": "grafana"}


def routes(services: Services) -> dict[str, Route]:
    """The POST routes to add to an HTTP server: path → ASGI handler."""
    return {path: _endpoint(services, source) for path, source in PATHS.items()}


def _endpoint(services: Services, source: WebhookSource) -> Route:
    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        status, answer = await _answer(services, source, scope, receive)
        extra = [(b"www-authenticate", b'Bearer realm="xenbot"')] if status == 401 else []
        await _send(send, status, json.dumps(answer).encode(), "application/json", extra)

    return handle


async def _answer(services: Services, source: WebhookSource, scope: Scope, receive: Receive) -> tuple[int, Any]:
    options = services.settings.alerts
    if options.webhook_token is None:
        return 404, {"error": "alert webhooks are off: set alerts.webhook_token"}
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
    if not authorised(headers.get("authorization", ""), options.webhook_token.get_secret_value()):
        return 401, {"error": "missing or wrong bearer token"}
    declared = headers.get("content-length", "0")
    if not declared.isdigit() or int(declared) > options.webhook_max_bytes:
        return 413, {"error": f"body larger than {options.webhook_max_bytes} bytes"}
    try:  # a client trickling its body is cut off, as on /slack/events ([serving] body_timeout_seconds)
        body = await asyncio.wait_for(_read(receive, options.webhook_max_bytes),
                                      services.settings.serving.body_timeout_seconds)
    except TimeoutError:
        return 408, {"error": "body not received in time"}
    if body is None:
        return 413, {"error": f"body larger than {options.webhook_max_bytes} bytes"}
    try:
        group = read_webhook(source, parse_json(body))
    except WebhookError as exc:
        return 400, {"error": str(exc)}
    delivery = hashlib.sha256(source.encode() + b"\0" + body).hexdigest()
    try:
        outcome = await asyncio.to_thread(services.alerts.intake.handle_webhook, group, delivery)
    except LookupError as exc:
        return 503, {"error": str(exc)}
    except Exception:
        reference = secrets.token_hex(4)
        log.exception("alert webhook from %s failed (reference %s)", source, reference)
        return 500, {"error": f"xenbot failed (reference {reference})"}
    log.info("alert webhook from %s: %s", source, outcome)
    return 200, {"outcome": outcome, "alerts": len(group.alerts), "ignored": group.ignored}


def authorised(header: str, token: str) -> bool:
    """``Bearer <token>``, compared in constant time (the scheme name in any case, as RFC 7235 allows)."""
    scheme, _, given = header.strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


async def _read(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(
    send: Send, status: int, payload: bytes, content_type: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, *(extra or [])]})
    await send({"type": "http.response.body", "body": payload})


# -- Socket Mode: the metrics port ---------------------------------------------------------


def metrics_app(services: Services, ready: Callable[[], tuple[bool, dict[str, object]]]) -> Route:
    """``/metrics``, ``/healthz``, ``/readyz`` and the alert webhooks, for the Socket Mode metrics port."""
    posts = routes(services)

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if method == "POST" and path in posts:
            await posts[path](scope, receive, send)
        elif method == "GET" and path == "/metrics":
            await _send(send, 200, await asyncio.to_thread(metrics.exposition), CONTENT_TYPE_LATEST)
        elif method == "GET" and path == "/healthz":
            await _send(send, 200, b'{"status":"ok"}', "application/json")
        elif method == "GET" and path == "/readyz":
            ok, details = await asyncio.to_thread(ready)
            await _send(send, 200 if ok else 503, json.dumps(details).encode(), "application/json")
        else:
            await _send(send, 404, b"not found", "text/plain")

    return application


def serve_metrics_port(
    services: Services, sock: socket.socket, ready: Callable[[], tuple[bool, dict[str, object]]]
) -> int:
    """Serve :func:`metrics_app` on a bound socket in a daemon thread (Socket Mode has no other HTTP server).

    Returns the port (useful when bound to port 0)."""
    import uvicorn

    sock.listen(128)
    config = uvicorn.Config(
        metrics_app(services, ready), lifespan="off", log_config=None, access_log=False, server_header=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[sock])), name="xenbot-metrics", daemon=True
    )
    thread.start()
    return int(sock.getsockname()[1])
