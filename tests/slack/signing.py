"""Requests exactly as Slack sends them: signed bodies and the payload shapes behind them.

Why this exists: the project's integration tests must exercise the app's real request
verification (Bolt's ``RequestVerification`` middleware / ``slack_sdk.signature``), so
every body a test sends over HTTP is signed the way Slack signs it, over the exact bytes
that go on the wire.  The builders reproduce the fields Slack actually sends (as seen in
Slack's docs and in the slack_sdk / bolt-python test fixtures) so that handlers are
tested against realistic input, including the awkward parts: form-encoded slash commands,
interactivity wrapped in a single ``payload=`` form field, and the different message
event shapes (person, modern app bot, classic ``bot_message`` integration, edits,
thread replies).

Every builder has a ``*_payload`` twin returning the decoded ``dict``: that is what a
Socket Mode envelope carries (Slack sends the same data as JSON inside the envelope),
see :mod:`tests.slack.fake_socket_mode`.

Nothing here needs pytest; it is plain stdlib so it can also drive a manually started app.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

__all__ = [
    "DEFAULT_API_APP_ID",
    "DEFAULT_CHANNEL_ID",
    "DEFAULT_CHANNEL_NAME",
    "DEFAULT_TEAM_DOMAIN",
    "DEFAULT_TEAM_ID",
    "DEFAULT_USER_ID",
    "DEFAULT_USER_NAME",
    "FORM_CONTENT_TYPE",
    "JSON_CONTENT_TYPE",
    "VERIFICATION_TOKEN",
    "block_actions",
    "block_actions_payload",
    "bot_message",
    "event_callback",
    "event_callback_payload",
    "integration_message",
    "message_changed",
    "new_ts",
    "person_message",
    "post_signed",
    "retry_headers",
    "sign",
    "slash_command",
    "slash_command_payload",
    "thread_reply",
    "url_verification",
]

# Defaults shared with FakeSlack (tests/slack/fake_slack.py) so that a body built here
# and the fake Web API describe the same workspace without extra configuration.
DEFAULT_TEAM_ID = "T123"
DEFAULT_TEAM_DOMAIN = "xenbot-test"
DEFAULT_CHANNEL_ID = "C123"
DEFAULT_CHANNEL_NAME = "xen-ops"
DEFAULT_USER_ID = "U123"
DEFAULT_USER_NAME = "alice"
DEFAULT_API_APP_ID = "A0XENBOT"
# The deprecated verification token Slack still includes in every payload.
VERIFICATION_TOKEN = "verification-token"

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
JSON_CONTENT_TYPE = "application/json"

_ts_counter = itertools.count(1)


def new_ts() -> str:
    """Return a fresh, strictly increasing Slack timestamp such as ``"1700000123.000042"``.

    Slack message timestamps are ``seconds.micros`` strings that double as message ids;
    handlers compare and sort them, so tests want unique, increasing values.
    """
    n = next(_ts_counter)
    return f"{int(time.time())}.{n % 1_000_000:06d}"


# ---------------------------------------------------------------------------
# Signing
# ---------------------------------------------------------------------------


def sign(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """Return the two headers Slack adds to every request it sends to an app.

    ``X-Slack-Signature`` is ``v0=`` + hex HMAC-SHA256 keyed with the signing secret over
    ``b"v0:<timestamp>:" + body``.  The body is signed byte for byte, so callers must send
    exactly the bytes they signed (re-encoding a form changes the signature).
    ``timestamp`` defaults to now; pass an old one to test replay protection (Slack's
    verifier rejects timestamps more than five minutes away from its clock).
    """
    ts = int(time.time()) if timestamp is None else int(timestamp)
    base = f"v0:{ts}:".encode() + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": f"v0={digest}"}


def retry_headers(num: int, reason: str = "http_timeout") -> dict[str, str]:
    """Headers Slack adds when it re-delivers an Events API request over HTTP.

    Slack retries up to three times with the same ``event_id``; the app must deduplicate.
    """
    return {"X-Slack-Retry-Num": str(num), "X-Slack-Retry-Reason": reason}


def post_signed(
    url: str,
    body: bytes,
    secret: str,
    content_type: str | None = None,
    *,
    timestamp: int | None = None,
    extra_headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    """POST ``body`` to a running app the way Slack does and return ``(status, headers, body)``.

    The request carries the signature headers from :func:`sign` (override them through
    ``extra_headers`` to test rejection).  HTTP error statuses are returned, not raised,
    because asserting on 401 is the point of many tests.  ``content_type`` defaults to
    JSON for bodies starting with ``{`` and form encoding otherwise, which is how Slack
    sends events versus commands and interactivity.  Header names in the result are
    lower-cased.
    """
    if content_type is None:
        content_type = JSON_CONTENT_TYPE if body.lstrip().startswith(b"{") else FORM_CONTENT_TYPE
    headers = {"Content-Type": content_type, "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)"}
    headers.update(sign(body, secret, timestamp))
    if extra_headers:
        headers.update(extra_headers)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


# ---------------------------------------------------------------------------
# Slash commands
# ---------------------------------------------------------------------------


def _trigger_id() -> str:
    return f"{int(time.time())}.{uuid.uuid4().int % 10**10}.{uuid.uuid4().hex}"


def slash_command_payload(
    text: str,
    *,
    command: str = "/xen",
    user_id: str = DEFAULT_USER_ID,
    user_name: str = DEFAULT_USER_NAME,
    channel_id: str = DEFAULT_CHANNEL_ID,
    channel_name: str = DEFAULT_CHANNEL_NAME,
    team_id: str = DEFAULT_TEAM_ID,
    team_domain: str = DEFAULT_TEAM_DOMAIN,
    api_app_id: str = DEFAULT_API_APP_ID,
    response_url: str | None = None,
    trigger_id: str | None = None,
) -> dict[str, str]:
    """The fields of a slash command invocation, all strings as Slack sends them.

    Over HTTP these are form-encoded (see :func:`slash_command`); in Socket Mode the same
    mapping is the envelope's ``payload``.  ``text`` is passed through untouched: Slack
    sends it already escaped (``&amp;``, ``&lt;``, ``&gt;``, ``<@U…>`` mentions), so write
    test input the way Slack would deliver it.
    """
    if response_url is None:
        response_url = f"https://hooks.slack.com/commands/{team_id}/{uuid.uuid4().int % 10**13}/{uuid.uuid4().hex}"
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "team_domain": team_domain,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id if trigger_id is not None else _trigger_id(),
    }


def slash_command(
    text: str,
    *,
    command: str = "/xen",
    user_id: str = DEFAULT_USER_ID,
    user_name: str = DEFAULT_USER_NAME,
    channel_id: str = DEFAULT_CHANNEL_ID,
    channel_name: str = DEFAULT_CHANNEL_NAME,
    team_id: str = DEFAULT_TEAM_ID,
    team_domain: str = DEFAULT_TEAM_DOMAIN,
    api_app_id: str = DEFAULT_API_APP_ID,
    response_url: str | None = None,
    trigger_id: str | None = None,
) -> bytes:
    """Form-encoded slash command body (``application/x-www-form-urlencoded``).

    The default ``response_url`` is a realistic ``hooks.slack.com`` URL that nobody
    listens on; tests whose app answers through it pass ``FakeSlack.response_url()``.
    """
    payload = slash_command_payload(
        text,
        command=command,
        user_id=user_id,
        user_name=user_name,
        channel_id=channel_id,
        channel_name=channel_name,
        team_id=team_id,
        team_domain=team_domain,
        api_app_id=api_app_id,
        response_url=response_url,
        trigger_id=trigger_id,
    )
    return urlencode(payload).encode()


# ---------------------------------------------------------------------------
# Interactivity
# ---------------------------------------------------------------------------


def block_actions_payload(
    action_id: str,
    value: str,
    *,
    user_id: str = DEFAULT_USER_ID,
    user_name: str = DEFAULT_USER_NAME,
    channel_id: str = DEFAULT_CHANNEL_ID,
    channel_name: str = DEFAULT_CHANNEL_NAME,
    team_id: str = DEFAULT_TEAM_ID,
    team_domain: str = DEFAULT_TEAM_DOMAIN,
    api_app_id: str = DEFAULT_API_APP_ID,
    message_ts: str | None = None,
    response_url: str | None = None,
    block_id: str = "actions",
    text: str = "Button",
    message: dict[str, Any] | None = None,
    is_ephemeral: bool = False,
    bot_user_id: str = "U0BOT",
    bot_id: str = "B0BOT",
) -> dict[str, Any]:
    """A ``block_actions`` payload for one button click, as a decoded dict.

    ``message`` is the message holding the button as Slack echoes it back; when omitted a
    minimal bot message with an actions block carrying this button is synthesised.  For
    ephemeral messages Slack sends no ``message`` at all (only ``container.is_ephemeral``),
    which is what ``is_ephemeral=True`` produces.
    """
    ts = message_ts if message_ts is not None else new_ts()
    action_ts = f"{time.time():.6f}"
    button = {
        "action_id": action_id,
        "block_id": block_id,
        "text": {"type": "plain_text", "text": text, "emoji": True},
        "value": value,
        "type": "button",
        "action_ts": action_ts,
    }
    if response_url is None:
        response_url = f"https://hooks.slack.com/actions/{team_id}/{uuid.uuid4().int % 10**13}/{uuid.uuid4().hex}"
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id},
        "api_app_id": api_app_id,
        "token": VERIFICATION_TOKEN,
        "container": {
            "type": "message",
            "message_ts": ts,
            "channel_id": channel_id,
            "is_ephemeral": is_ephemeral,
        },
        "trigger_id": _trigger_id(),
        "team": {"id": team_id, "domain": team_domain},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": channel_name},
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [button],
    }
    if not is_ephemeral:
        if message is None:
            message = {
                "user": bot_user_id,
                "type": "message",
                "ts": ts,
                "bot_id": bot_id,
                "app_id": api_app_id,
                "text": "",
                "team": team_id,
                "blocks": [
                    {
                        "type": "actions",
                        "block_id": block_id,
                        "elements": [
                            {
                                "type": "button",
                                "action_id": action_id,
                                "text": button["text"],
                                "value": value,
                            }
                        ],
                    }
                ],
            }
        payload["message"] = message
    return payload


def block_actions(
    action_id: str,
    value: str,
    *,
    user_id: str = DEFAULT_USER_ID,
    user_name: str = DEFAULT_USER_NAME,
    channel_id: str = DEFAULT_CHANNEL_ID,
    channel_name: str = DEFAULT_CHANNEL_NAME,
    team_id: str = DEFAULT_TEAM_ID,
    team_domain: str = DEFAULT_TEAM_DOMAIN,
    api_app_id: str = DEFAULT_API_APP_ID,
    message_ts: str | None = None,
    response_url: str | None = None,
    block_id: str = "actions",
    text: str = "Button",
    message: dict[str, Any] | None = None,
    is_ephemeral: bool = False,
) -> bytes:
    """Form-encoded ``payload=<json>`` body of a button click, as Slack posts interactivity.

    See :func:`block_actions_payload` for the fields.
    """
    payload = block_actions_payload(
        action_id,
        value,
        user_id=user_id,
        user_name=user_name,
        channel_id=channel_id,
        channel_name=channel_name,
        team_id=team_id,
        team_domain=team_domain,
        api_app_id=api_app_id,
        message_ts=message_ts,
        response_url=response_url,
        block_id=block_id,
        text=text,
        message=message,
        is_ephemeral=is_ephemeral,
    )
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()


# ---------------------------------------------------------------------------
# Events API
# ---------------------------------------------------------------------------


def event_callback_payload(
    event: dict[str, Any],
    *,
    event_id: str | None = None,
    team_id: str = DEFAULT_TEAM_ID,
    api_app_id: str = DEFAULT_API_APP_ID,
    bot_user_id: str = "U0BOT",
    event_time: int | None = None,
) -> dict[str, Any]:
    """The ``event_callback`` envelope Slack wraps every Events API event in.

    ``event_id`` stays the same across Slack's retries of one delivery; pass the same
    value twice to test deduplication.  ``authorizations`` names the installation the
    event is delivered for (the bot user), as Slack sends it.
    """
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": None,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id if event_id is not None else f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": event_time if event_time is not None else int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-{uuid.uuid4().hex}",
    }


def event_callback(
    event: dict[str, Any],
    *,
    event_id: str | None = None,
    team_id: str = DEFAULT_TEAM_ID,
    api_app_id: str = DEFAULT_API_APP_ID,
    bot_user_id: str = "U0BOT",
) -> bytes:
    """JSON body of an Events API delivery (``Content-Type: application/json``)."""
    payload = event_callback_payload(
        event, event_id=event_id, team_id=team_id, api_app_id=api_app_id, bot_user_id=bot_user_id
    )
    return json.dumps(payload, separators=(",", ":")).encode()


def url_verification(challenge: str) -> bytes:
    """JSON body of the one-off ``url_verification`` request Slack sends to a new Request URL.

    The app must answer with the ``challenge`` value (Bolt does it for you).
    """
    payload = {"token": VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"}
    return json.dumps(payload, separators=(",", ":")).encode()


# ---------------------------------------------------------------------------
# Message event shapes (the ``event`` inside an event_callback)
# ---------------------------------------------------------------------------


def _rich_text(text: str) -> list[dict[str, Any]]:
    # Real person messages carry a rich_text block mirroring ``text``; a plain text
    # element is enough for handlers that read blocks.
    return [
        {
            "type": "rich_text",
            "block_id": uuid.uuid4().hex[:5],
            "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}],
        }
    ]


def person_message(
    text: str,
    *,
    user: str = DEFAULT_USER_ID,
    channel: str = DEFAULT_CHANNEL_ID,
    ts: str | None = None,
    team: str = DEFAULT_TEAM_ID,
    channel_type: str = "channel",
    thread_ts: str | None = None,
) -> dict[str, Any]:
    """A message typed by a person: ``user`` and ``client_msg_id``, no ``subtype``, no ``bot_id``."""
    ts = ts if ts is not None else new_ts()
    event: dict[str, Any] = {
        "client_msg_id": str(uuid.uuid4()),
        "type": "message",
        "text": text,
        "user": user,
        "ts": ts,
        "blocks": _rich_text(text),
        "team": team,
        "channel": channel,
        "event_ts": ts,
        "channel_type": channel_type,
    }
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    return event


def thread_reply(
    text: str,
    *,
    thread_ts: str,
    parent_user_id: str = DEFAULT_USER_ID,
    user: str = DEFAULT_USER_ID,
    channel: str = DEFAULT_CHANNEL_ID,
    ts: str | None = None,
    team: str = DEFAULT_TEAM_ID,
    channel_type: str = "channel",
) -> dict[str, Any]:
    """A person's reply in a thread: like :func:`person_message` plus ``thread_ts`` and
    ``parent_user_id`` (``thread_ts`` is the parent's ``ts``, never the reply's)."""
    event = person_message(text, user=user, channel=channel, ts=ts, team=team, channel_type=channel_type)
    event["thread_ts"] = thread_ts
    event["parent_user_id"] = parent_user_id
    return event


def bot_message(
    text: str = "",
    *,
    bot_id: str = "B0ALERTS",
    app_id: str = "A0ALERTS",
    bot_name: str = "Alerts",
    user: str | None = "U0ALERTS",
    channel: str = DEFAULT_CHANNEL_ID,
    ts: str | None = None,
    team: str = DEFAULT_TEAM_ID,
    attachments: list[dict[str, Any]] | None = None,
    blocks: list[dict[str, Any]] | None = None,
    thread_ts: str | None = None,
    channel_type: str = "channel",
) -> dict[str, Any]:
    """A message posted by a modern Slack app with ``chat.postMessage``.

    It has ``bot_id`` and ``bot_profile`` and **no** ``subtype``; it usually also has a
    ``user`` (the app's bot user), so "has a user" does not mean "typed by a person".
    Pass ``user=None`` to drop it.
    """
    ts = ts if ts is not None else new_ts()
    event: dict[str, Any] = {
        "type": "message",
        "text": text,
        "bot_id": bot_id,
        "app_id": app_id,
        "bot_profile": {
            "id": bot_id,
            "deleted": False,
            "name": bot_name,
            "updated": 1700000000,
            "app_id": app_id,
            "icons": {"image_36": "https://a.slack-edge.com/80588/img/plugins/app/bot_36.png"},
            "team_id": team,
        },
        "ts": ts,
        "team": team,
        "channel": channel,
        "event_ts": ts,
        "channel_type": channel_type,
    }
    if user is not None:
        event["user"] = user
    if attachments is not None:
        event["attachments"] = attachments
    if blocks is not None:
        event["blocks"] = blocks
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    return event


def integration_message(
    text: str = "",
    *,
    username: str = "Alertmanager",
    bot_id: str = "B0WEBHOOK",
    channel: str = DEFAULT_CHANNEL_ID,
    ts: str | None = None,
    attachments: list[dict[str, Any]] | None = None,
    icons: dict[str, str] | None = None,
    thread_ts: str | None = None,
    channel_type: str = "channel",
) -> dict[str, Any]:
    """A classic integration / incoming-webhook post (Alertmanager, Zabbix, Icinga, …).

    ``subtype: bot_message``, a ``username`` chosen by the sender, a ``bot_id`` and no
    ``user``; alert content typically lives in ``attachments`` (title, fields, color),
    with ``text`` empty.
    """
    ts = ts if ts is not None else new_ts()
    event: dict[str, Any] = {
        "type": "message",
        "subtype": "bot_message",
        "text": text,
        "username": username,
        "bot_id": bot_id,
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
        "channel_type": channel_type,
    }
    if attachments is not None:
        event["attachments"] = attachments
    if icons is not None:
        event["icons"] = icons
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    return event


def message_changed(
    message: dict[str, Any],
    previous_message: dict[str, Any],
    *,
    channel: str | None = None,
    event_ts: str | None = None,
    channel_type: str = "channel",
) -> dict[str, Any]:
    """An edit: ``subtype: message_changed`` wrapping the new ``message`` and the
    ``previous_message``.

    The event's own ``ts`` is the time of the edit; the edited message keeps its
    original ``ts`` inside ``message``.  Content (text, attachments, blocks) must be read
    from ``message``, which is how Zabbix resolutions arrive.  The nested messages drop
    the per-delivery ``channel``/``event_ts`` keys, as in Slack's payloads.
    """
    edit_ts = event_ts if event_ts is not None else new_ts()
    channel = channel if channel is not None else str(message.get("channel", DEFAULT_CHANNEL_ID))

    def inner(m: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in m.items() if k not in ("channel", "event_ts", "channel_type")}

    new = inner(message)
    if "user" in new:
        new.setdefault("edited", {"user": new["user"], "ts": edit_ts})
    return {
        "type": "message",
        "subtype": "message_changed",
        "message": new,
        "previous_message": inner(previous_message),
        "channel": channel,
        "hidden": True,
        "ts": edit_ts,
        "event_ts": edit_ts,
        "channel_type": channel_type,
    }
