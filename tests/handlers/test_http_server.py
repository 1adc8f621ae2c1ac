"""The HTTP transport: what it refuses, what it keeps apart from acks, and how it stops."""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
from urllib.parse import urlsplit

from bot.health import CHECK_DEADLINE_SECONDS
from bot.services.inspection import READ_CACHE_SECONDS
from tests.handlers.test_observability import get
from tests.handlers.test_replicas import start_replica
from tests.slack.fixtures import BOT_TOKEN, SIGNING_SECRET
from tests.slack.signing import FORM_CONTENT_TYPE, post_signed, sign, slash_command


def connect(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=15)


def test_unknown_paths_and_methods_are_404(bot):
    base = bot.url.removesuffix("/slack/events")
    assert get(base + "/nope")[0] == 404
    status, _headers, _body = post_signed(base + "/other", slash_command("help"), SIGNING_SECRET)
    assert status == 404


def test_an_oversized_body_is_refused_before_it_is_read(bot):
    connection = connect(bot.url)
    connection.putrequest("POST", "/slack/events")
    connection.putheader("Content-Type", FORM_CONTENT_TYPE)
    connection.putheader("Content-Length", str(2 << 20))
    connection.endheaders()  # no body sent: the answer must not wait for 2 MiB
    response = connection.getresponse()
    assert (response.status, response.read()) == (413, b"payload too large")


def test_a_forged_request_is_rejected_and_nothing_is_answered(bot):
    body = slash_command("vifs win7-kiosk", response_url=bot.fake.response_url())
    status, _headers, _body = post_signed(bot.url, body, "not-the-signing-secret")
    assert status == 401
    assert not bot.fake.calls("response_url")


def test_keep_alive_connections_serve_several_requests(bot):
    connection = connect(bot.url)
    for _ in range(3):
        body = slash_command("help", response_url=bot.fake.response_url())
        connection.request("POST", "/slack/events", body=body,
                           headers={"Content-Type": FORM_CONTENT_TYPE, **sign(body, SIGNING_SECRET)})
        response = connection.getresponse()
        response.read()
        assert response.status == 200
    connection.close()


def test_a_slow_readiness_check_does_not_hold_up_acks(sim, bot):
    """/readyz asks every pool; with the pool hanging it waits, but on a thread of its own."""
    base = bot.url.removesuffix("/slack/events")
    sim.faults.hang("*")
    readiness: list[int] = []
    checker = threading.Thread(target=lambda: readiness.append(get(base + "/readyz")[0]))
    checker.start()
    try:
        status, _url = bot.command("help")
        assert status == 200
        assert checker.is_alive() and not readiness  # the ack came back while /readyz still waits
    finally:
        sim.faults.release()
        checker.join(30)


def test_sigterm_finishes_what_was_acked_and_exits_cleanly(sim, fake_slack, tmp_path):
    config = tmp_path / "xenbot.toml"
    config.write_text(
        f'database_url = "sqlite:///{tmp_path / "x.db"}"\nlog_level = "WARNING"\napply_processes = 0\n'
        f'[[pools]]\nname = "demo"\nurl = "{sim.url}"\npassword = "{sim.password}"\n'
        f'[slack]\nbot_token = "{BOT_TOKEN}"\nsigning_secret = "{SIGNING_SECRET}"\napi_url = "{fake_slack.base_url}"\n'
        "[policies]\nwatch = false\n"
    )
    process, endpoint = start_replica(str(config))
    try:
        assert sim.call_counts().get("VM.get_all_records") == 1  # the pool was read before serving
        time.sleep(READ_CACHE_SECONDS + 0.1)  # that copy is now too old for an inspection command
        sim.set_latency(300)  # the answer needs the pool: it is still being worked on at SIGTERM
        response_url = fake_slack.response_url()
        status, _headers, _body = post_signed(endpoint, slash_command("vifs win7-kiosk", response_url=response_url),
                                              SIGNING_SECRET)
        assert status == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        answers = [c for c in fake_slack.calls("response_url") if c.path == urlsplit(response_url).path]
        assert answers and "win7-kiosk" in str(answers[0].body)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_readyz_answers_within_its_deadline_while_a_master_hangs(sim, bot):
    """The hung check is left running; /readyz names the pool and answers 503 in time, every time."""
    base = bot.url.removesuffix("/slack/events")
    sim.faults.hang("pool.get_all")
    try:
        for _ in range(2):  # the second probe finds the first check still hung
            started = time.monotonic()
            status, body = get(base + "/readyz")
            assert time.monotonic() - started < CHECK_DEADLINE_SECONDS + 3
            report = json.loads(body)
            assert status == 503 and report["database"]["ok"]
            assert report["pools"]["demo"] == {"ok": False, "error": f"no answer within {CHECK_DEADLINE_SECONDS:g} s"}
    finally:
        sim.faults.release()
    deadline = time.monotonic() + 30
    while get(base + "/readyz")[0] != 200:  # released: the next probe is ready again
        assert time.monotonic() < deadline
        time.sleep(0.1)
