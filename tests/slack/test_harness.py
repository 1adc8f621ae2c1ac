"""Tests of the Slack test harness itself, against the real slack_sdk / slack_bolt clients.

Why: the harness replaces Slack in every integration test, so it must be proven to speak
the protocol the real clients speak — if the fake were wrong, app tests would pass
against something that is not Slack.  These tests use no mocks: real ``WebClient``,
retry handlers, ``files_upload_v2``, ``SignatureVerifier``, a Bolt ``App`` served over
HTTP and the same app driven through ``SocketModeHandler``.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from slack_bolt import Ack, App, Respond, Say
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import (
    ConnectionErrorRetryHandler,
    FixedValueRetryIntervalCalculator,
    RateLimitErrorRetryHandler,
)
from slack_sdk.signature import SignatureVerifier

from tests.slack import fixtures, signing
from tests.slack.app_http import serve_bolt
from tests.slack.fake_slack import RESPONSE_URL_METHOD, FakeSlack
from tests.slack.fake_socket_mode import FakeSocketMode, close_socket_mode_client
from tests.slack.fixtures import APP_TOKEN, BOT_TOKEN, SIGNING_SECRET

# Until the root conftest registers tests.slack.fixtures, bind the fixtures here.
fake_slack = fixtures.fake_slack
fake_socket_mode = fixtures.fake_socket_mode
slack_web_client = fixtures.slack_web_client

pytestmark = pytest.mark.timeout(30)


# --------------------------------------------------------------------------- Web API


def test_post_message_is_recorded(fake_slack: FakeSlack, slack_web_client: WebClient) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*eth0* offload on"}}]
    first = slack_web_client.chat_postMessage(channel="C123", text="hello", blocks=blocks)
    second = slack_web_client.chat_postMessage(channel="C123", text="reply", thread_ts=first["ts"])

    assert first["ok"] is True
    assert first["channel"] == "C123"
    assert first["message"]["bot_id"] == "B0BOT"
    assert float(second["ts"]) > float(first["ts"])

    call = fake_slack.last("chat.postMessage")
    assert call.headers["authorization"] == f"Bearer {BOT_TOKEN}"
    assert call.headers["content-type"].startswith("application/json")
    assert call.args["thread_ts"] == first["ts"]

    posted = fake_slack.posted_messages()
    assert [(m["kind"], m["text"], m["thread_ts"]) for m in posted] == [
        ("message", "hello", None),
        ("message", "reply", first["ts"]),
    ]
    assert posted[0]["blocks"] == blocks


def test_update_delete_ephemeral_and_lookups(fake_slack: FakeSlack, slack_web_client: WebClient) -> None:
    fake_slack.add_user("U777", name="bob", real_name="Bob Admin", tz="America/New_York")
    fake_slack.add_usergroup("S0XENADM", ["U123", "U777"], handle="xen-admins")

    posted = slack_web_client.chat_postMessage(channel="C123", text="pending")
    slack_web_client.chat_update(channel="C123", ts=posted["ts"], text="approved")
    eph = slack_web_client.chat_postEphemeral(channel="C123", user="U777", text="only you")
    assert fake_slack.message("C123", posted["ts"])["text"] == "approved"  # type: ignore[index]
    slack_web_client.chat_delete(channel="C123", ts=posted["ts"])
    assert fake_slack.message("C123", posted["ts"]) is None
    assert eph["message_ts"]

    user = slack_web_client.users_info(user="U777")["user"]
    assert (user["real_name"], user["tz"], user["is_bot"]) == ("Bob Admin", "America/New_York", False)
    assert slack_web_client.usergroups_users_list(usergroup="S0XENADM")["users"] == ["U123", "U777"]
    assert slack_web_client.conversations_info(channel="C123")["channel"]["name"] == "xen-ops"
    assert slack_web_client.auth_test()["user_id"] == "U0BOT"

    failing: list[tuple[Callable[[], object], str]] = [
        (lambda: slack_web_client.usergroups_users_list(usergroup="S0NOPE"), "no_such_subteam"),
        (lambda: slack_web_client.users_info(user="U0NOPE"), "user_not_found"),
        (lambda: slack_web_client.chat_update(channel="C123", ts=eph["message_ts"], text="x"), "message_not_found"),
        (lambda: slack_web_client.api_call("xen.nonsense"), "unknown_method"),
        (lambda: WebClient(base_url=fake_slack.base_url).auth_test(), "not_authed"),
        (lambda: WebClient(token=APP_TOKEN, base_url=fake_slack.base_url).auth_test(), "not_allowed_token_type"),
    ]
    for call, error in failing:
        with pytest.raises(SlackApiError) as err:
            call()
        assert err.value.response["error"] == error

    kinds = [m["kind"] for m in fake_slack.posted_messages()]
    assert kinds == ["message", "update", "ephemeral"]
    assert fake_slack.posted_messages()[2]["user"] == "U777"


def test_block_kit_limits_are_enforced(slack_web_client: WebClient) -> None:
    too_long = [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]
    with pytest.raises(SlackApiError) as err:
        slack_web_client.chat_postMessage(channel="C123", text="fallback", blocks=too_long)
    assert err.value.response["error"] == "invalid_blocks"
    assert "/blocks/0/text/text" in err.value.response["errors"][0]

    # slack_sdk itself warns when the notification fallback ``text`` is missing.
    with pytest.raises(SlackApiError) as err, pytest.warns(UserWarning, match="text"):
        slack_web_client.chat_postMessage(channel="C123")
    assert err.value.response["error"] == "no_text"


def test_rate_limit_retry_handler_retries_429(fake_slack: FakeSlack) -> None:
    fake_slack.fail_next("chat.postMessage", status=429, retry_after=0)
    client = WebClient(
        token=BOT_TOKEN,
        base_url=fake_slack.base_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )

    response = client.chat_postMessage(channel="C123", text="after retry")

    assert response["ok"] is True
    calls = fake_slack.calls("chat.postMessage")
    assert [c.status for c in calls] == [429, 200]
    assert calls[0].response == {"ok": False, "error": "ratelimited"}
    assert len(fake_slack.posted_messages()) == 1


def test_429_surfaces_without_retry_handler(fake_slack: FakeSlack, slack_web_client: WebClient) -> None:
    # slack_sdk's default retry handlers only cover connection errors.
    fake_slack.fail_next("chat.postMessage", status=429, retry_after=7)
    with pytest.raises(SlackApiError) as err:
        slack_web_client.chat_postMessage(channel="C123", text="x")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "7"
    assert err.value.response["error"] == "ratelimited"


def test_injected_errors_timeouts_and_drops(fake_slack: FakeSlack, slack_web_client: WebClient) -> None:
    fake_slack.fail_next("auth.test", status=200, error="invalid_auth")
    with pytest.raises(SlackApiError) as err:
        slack_web_client.auth_test()
    assert err.value.response["error"] == "invalid_auth"

    fake_slack.fail_next("users.info", status=503)
    with pytest.raises(SlackApiError) as err:
        slack_web_client.users_info(user="U123")
    assert err.value.response.status_code == 503

    fake_slack.delay_next("chat.postMessage", 5.0)
    impatient = WebClient(token=BOT_TOKEN, base_url=fake_slack.base_url, timeout=1)
    with pytest.raises(TimeoutError):
        impatient.chat_postMessage(channel="C123", text="slow")

    fake_slack.drop_next("conversations.info")
    retrying = WebClient(
        token=BOT_TOKEN,
        base_url=fake_slack.base_url,
        retry_handlers=[ConnectionErrorRetryHandler(interval_calculator=FixedValueRetryIntervalCalculator(0.05))],
    )
    assert retrying.conversations_info(channel="C123")["ok"] is True
    assert [c.status for c in fake_slack.calls("conversations.info")] == [0, 200]


def test_wait_for_reports_what_was_seen(fake_slack: FakeSlack, slack_web_client: WebClient) -> None:
    threading.Timer(0.1, lambda: slack_web_client.chat_postMessage(channel="C123", text="late")).start()
    (call,) = fake_slack.wait_for("chat.postMessage", timeout=5.0)
    assert call.args["text"] == "late"

    with pytest.raises(AssertionError) as err:
        fake_slack.wait_for("chat.postMessage", predicate=lambda c: c.args.get("text") == "never", timeout=0.2)
    assert "text='late'" in str(err.value)


def test_files_upload_v2_goes_through_the_three_steps(fake_slack: FakeSlack, slack_web_client: WebClient) -> None:
    content = "eth0 rx_discards 1234\n" * 50

    response = slack_web_client.files_upload_v2(
        channel="C123", content=content, filename="discards.txt", title="Discards", initial_comment="report"
    )

    assert response["file"]["title"] == "Discards"
    methods = [c.method for c in fake_slack.calls()]
    assert methods == ["files.getUploadURLExternal", "upload", "files.completeUploadExternal"]
    (upload,) = fake_slack.uploads()
    assert upload.content == content.encode()
    assert upload.length == len(content.encode())
    assert (upload.filename, upload.channel_id, upload.initial_comment) == ("discards.txt", "C123", "report")
    assert upload.completed


# --------------------------------------------------------------------------- signing


def test_signature_is_accepted_by_slack_sdk_verifier() -> None:
    verifier = SignatureVerifier(SIGNING_SECRET)
    body = signing.slash_command("status pool-a")

    headers = signing.sign(body, SIGNING_SECRET)

    assert verifier.is_valid_request(body, headers)
    assert not verifier.is_valid_request(body + b"&text=tampered", headers)
    assert not verifier.is_valid_request(body, signing.sign(body, "another-secret"))
    stale = signing.sign(body, SIGNING_SECRET, timestamp=int(time.time()) - 6 * 60)
    assert not verifier.is_valid_request(body, stale)


def test_builders_produce_slack_shapes() -> None:
    form = urllib.parse.parse_qs(signing.slash_command("nic eth0", response_url="http://x/r").decode())
    assert form["command"] == ["/xen"] and form["text"] == ["nic eth0"] and form["response_url"] == ["http://x/r"]
    assert {"token", "team_domain", "channel_name", "api_app_id", "is_enterprise_install", "trigger_id"} <= set(form)

    (raw,) = urllib.parse.parse_qs(signing.block_actions("approve", "req-1", message_ts="1.2").decode())["payload"]
    payload = json.loads(raw)
    assert payload["type"] == "block_actions"
    assert payload["container"] == {"type": "message", "message_ts": "1.2", "channel_id": "C123", "is_ephemeral": False}
    assert payload["actions"][0]["action_id"] == "approve" and payload["actions"][0]["value"] == "req-1"

    person = signing.person_message("hi")
    assert "client_msg_id" in person and "subtype" not in person and "bot_id" not in person
    modern = signing.bot_message("alert")
    assert "bot_profile" in modern and "subtype" not in modern
    classic = signing.integration_message(attachments=[{"title": "[FIRING:1] Discards"}])
    assert classic["subtype"] == "bot_message" and "user" not in classic
    edit = signing.message_changed({**classic, "text": "resolved"}, classic)
    assert edit["message"]["ts"] == classic["ts"] and edit["ts"] != classic["ts"]
    envelope = json.loads(signing.event_callback(person, event_id="Ev1"))
    assert (envelope["type"], envelope["event_id"], envelope["event"]) == ("event_callback", "Ev1", person)


# --------------------------------------------------------------------------- Bolt over HTTP


def _bolt_app(fake: FakeSlack) -> App:
    """A minimal Bolt app wired to the fake the way xenbot must be: through ``client=``."""
    return App(client=WebClient(token=BOT_TOKEN, base_url=fake.base_url), signing_secret=SIGNING_SECRET)


@pytest.fixture
def bolt_http(fake_slack: FakeSlack) -> Iterator[tuple[App, str]]:
    app = _bolt_app(fake_slack)
    with serve_bolt(app) as url:
        yield app, url


def test_bolt_http_accepts_signed_command_and_rejects_bad_signatures(
    fake_slack: FakeSlack, bolt_http: tuple[App, str]
) -> None:
    app, url = bolt_http

    def later(respond: Respond, command: dict[str, Any]) -> None:
        respond(text=f"done: {command['text']}", response_type="in_channel")

    app.command("/ping")(ack=lambda ack, command: ack(f"pong {command['text']}"), lazy=[later])

    body = signing.slash_command("pool-a", command="/ping", response_url=fake_slack.response_url())
    status, _, answer = signing.post_signed(url, body, SIGNING_SECRET)
    assert (status, answer) == (200, b"pong pool-a")

    (call,) = fake_slack.wait_for(RESPONSE_URL_METHOD)
    assert call.body == {"text": "done: pool-a", "response_type": "in_channel"}
    (message,) = fake_slack.posted_messages()
    assert (message["kind"], message["channel"], message["response_type"]) == ("response_url", "C123", "in_channel")

    bad_secret = signing.post_signed(url, body, "wrong-secret")
    stale = signing.post_signed(url, body, SIGNING_SECRET, timestamp=int(time.time()) - 10 * 60)
    tampered = signing.post_signed(url, body, SIGNING_SECRET, extra_headers=signing.sign(body + b"x", SIGNING_SECRET))
    assert [bad_secret[0], stale[0], tampered[0]] == [401, 401, 401]


def test_bolt_http_events_and_message_shapes(fake_slack: FakeSlack, bolt_http: tuple[App, str]) -> None:
    app, url = bolt_http
    seen: list[dict[str, Any]] = []

    @app.message("discards")
    def on_discards(message: dict[str, Any], say: Say) -> None:
        seen.append(message)
        say(text="seen", thread_ts=message["ts"])

    status, _, answer = signing.post_signed(url, signing.url_verification("chal-1"), SIGNING_SECRET)
    assert status == 200 and json.loads(answer) == {"challenge": "chal-1"}

    # Bolt's app.message() matches people, modern app bots and classic integrations,
    # ignores the app's own messages, and does not match edits: an event no listener
    # handles is answered 404 (and, in Socket Mode, never acked).
    deliveries = [
        (signing.person_message("discards on eth0"), 200),
        (signing.bot_message("discards alert"), 200),
        (signing.integration_message("discards alert"), 200),
        (signing.bot_message("discards echo", bot_id="B0BOT", user="U0BOT"), 200),
        (signing.message_changed(signing.person_message("discards!"), signing.person_message("d")), 404),
    ]
    for event, expected in deliveries:
        status, _, _ = signing.post_signed(url, signing.event_callback(event), SIGNING_SECRET)
        assert status == expected, event

    fake_slack.wait_for("chat.postMessage", count=3)
    assert sorted(m.get("subtype") or m.get("bot_id") or "person" for m in seen) == sorted(
        ["person", "B0ALERTS", "bot_message"]
    )
    assert all(c.args["thread_ts"] for c in fake_slack.calls("chat.postMessage"))


# --------------------------------------------------------------------------- Bolt over Socket Mode


def test_socket_mode_handler_receives_envelopes_and_acks(
    fake_slack: FakeSlack, fake_socket_mode: FakeSocketMode
) -> None:
    app = _bolt_app(fake_slack)
    app.command("/ping")(lambda ack, command: ack(f"pong {command['text']}"))

    @app.action("approve")
    def on_approve(ack: Ack, body: dict[str, Any], say: Say) -> None:
        ack()
        say(f"approved {body['actions'][0]['value']}")

    events: list[str] = []
    app.event("app_mention")(lambda event: events.append(event["text"]))

    handler = SocketModeHandler(app, app_token=APP_TOKEN)
    try:
        handler.connect()  # type: ignore[no-untyped-call]
        connection = fake_socket_mode.wait_for_connection()
        assert connection.ticket_issued
        assert fake_slack.last("apps.connections.open").token == APP_TOKEN

        eid = fake_socket_mode.send_slash_command(signing.slash_command_payload("pool-a", command="/ping"))
        assert fake_socket_mode.wait_for_ack(eid).payload == {"text": "pong pool-a"}

        eid = fake_socket_mode.send_interactive(signing.block_actions_payload("approve", "req-7"))
        assert fake_socket_mode.wait_for_ack(eid).payload is None
        fake_slack.wait_for("chat.postMessage", predicate=lambda c: c.args["text"] == "approved req-7")

        # Slack asks clients to reconnect from time to time; the SDK must follow.
        fake_socket_mode.disconnect()
        fake_socket_mode.wait_for_connection(count=2)
        assert len(fake_slack.calls("apps.connections.open")) == 2

        mention = {
            "type": "app_mention",
            "user": "U123",
            "text": "<@U0BOT> hi",
            "ts": signing.new_ts(),
            "channel": "C123",
        }
        eid = fake_socket_mode.send_event(signing.event_callback_payload(mention))
        fake_socket_mode.wait_for_ack(eid)
        _wait_until(lambda: events == ["<@U0BOT> hi"])
    finally:
        close_socket_mode_client(handler.client, fake_socket_mode)


def _wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)
