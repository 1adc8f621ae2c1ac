"""Slow and greedy HTTP clients: partial headers and dribbled bodies are cut off after their
deadlines, connections past the limit are refused at once and logged, and /healthz answers
meanwhile. Bounded counts, all on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
import time
from contextlib import ExitStack
from urllib.parse import urlsplit

import pytest

from bot.settings import ServingSettings
from tests.handlers.harness import bot_settings, running_bot
from tests.handlers.test_observability import get

SLOW = 400


@pytest.fixture
def guarded_bot(sim, fake_slack, database_url):
    settings = bot_settings({"demo": sim}, fake_slack, database_url)
    limits = ServingSettings(header_timeout_seconds=2, body_timeout_seconds=1, max_connections=SLOW + 50)
    with running_bot(settings.model_copy(update={"serving": limits}), fake_slack) as bot:
        yield bot


def _address(bot) -> tuple[str, int]:
    parts = urlsplit(bot.url)
    return parts.hostname or "", parts.port or 0


def _closed_by_server(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_slow_headers_are_cut_off_and_healthz_answers_meanwhile(guarded_bot, caplog):
    caplog.set_level(logging.INFO, logger="handlers")
    base = guarded_bot.url.removesuffix("/slack/events")
    with ExitStack() as stack:
        slow = []
        for _ in range(SLOW):
            sock = stack.enter_context(socket.create_connection(_address(guarded_bot), timeout=5))
            sock.sendall(b"POST /slack/events HTTP/1.1\r\nHost: xenbot\r\nX-Slowloris: ")  # never finished
            slow.append(sock)
        started = time.monotonic()
        assert get(base + "/healthz") == (200, '{"status":"ok"}')
        assert time.monotonic() - started < 2.0
        deadline = time.monotonic() + 10
        for sock in slow:
            assert _closed_by_server(sock, max(0.1, deadline - time.monotonic())), "a slow client was kept"
    lines = [r.getMessage() for r in caplog.records if "did not send their request headers" in r.getMessage()]
    assert lines and len(lines) <= 3  # counted, not one line per connection


def test_a_dribbled_body_gets_408_and_the_connection_is_closed(guarded_bot, caplog):
    caplog.set_level(logging.INFO, logger="handlers")
    with socket.create_connection(_address(guarded_bot), timeout=5) as sock:
        sock.sendall(b"POST /slack/events HTTP/1.1\r\nHost: xenbot\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"type\":")
        sock.settimeout(5)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408")
    assert any("did not send their request body" in r.getMessage() for r in caplog.records)


def test_connections_past_the_limit_are_refused_at_once_and_logged(sim, fake_slack, database_url, caplog):
    caplog.set_level(logging.INFO, logger="handlers")
    settings = bot_settings({"demo": sim}, fake_slack, database_url)
    limits = ServingSettings(header_timeout_seconds=30, max_connections=20)
    with running_bot(settings.model_copy(update={"serving": limits}), fake_slack) as bot:
        base = bot.url.removesuffix("/slack/events")
        with ExitStack() as stack:
            held = [stack.enter_context(socket.create_connection(_address(bot), timeout=5)) for _ in range(30)]
            for sock in held:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x")  # unfinished
            refused = sum(_closed_by_server(sock, 0.5) for sock in held[20:])
            assert refused == 10
            assert not any(_closed_by_server(sock, 0.05) for sock in held[:20])
            assert any("refused" in r.getMessage() and "serving.max_connections" in r.getMessage()
                       for r in caplog.records)
        deadline = time.monotonic() + 10  # ours are closed: the server has room again
        while True:
            try:
                if get(base + "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.05)
