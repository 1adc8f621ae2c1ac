"""Signed payloads of views and shortcuts: ``block_suggestion``, ``view_submission``, clicks in a
view (Home tab or modal), global ``shortcut`` and ``message_action``.

Shapes follow Slack's "Interaction payloads" reference and bolt-python's test fixtures
(tests/scenario_tests/test_block_suggestion.py, test_view_submission.py, test_shortcut.py,
test_message_shortcut.py): form-encoded ``payload=<json>`` like every interaction. What
matters to an app and is modelled here: a view's clicks carry ``container.type == "view"``
and the whole ``view`` (with ``state.values``) but no ``channel`` and no ``response_url``;
a message shortcut carries ``channel``, ``message`` and a ``response_url``; a global shortcut
only ``user`` and ``trigger_id``.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

from tests.slack.signing import (
    DEFAULT_API_APP_ID,
    DEFAULT_CHANNEL_ID,
    DEFAULT_CHANNEL_NAME,
    DEFAULT_TEAM_DOMAIN,
    DEFAULT_TEAM_ID,
    DEFAULT_USER_ID,
    DEFAULT_USER_NAME,
    VERIFICATION_TOKEN,
    _trigger_id,
)


def encoded(payload: dict[str, Any]) -> bytes:
    """The body Slack posts for an interaction (sign these exact bytes)."""
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()


def _user(user_id: str) -> dict[str, Any]:
    return {"id": user_id, "username": DEFAULT_USER_NAME, "name": DEFAULT_USER_NAME, "team_id": DEFAULT_TEAM_ID}


def _common(kind: str, user_id: str) -> dict[str, Any]:
    return {
        "type": kind,
        "team": {"id": DEFAULT_TEAM_ID, "domain": DEFAULT_TEAM_DOMAIN},
        "user": _user(user_id),
        "api_app_id": DEFAULT_API_APP_ID,
        "token": VERIFICATION_TOKEN,
        "is_enterprise_install": False,
        "enterprise": None,
    }


def view_as_sent(view: dict[str, Any], values: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """A stored view (from the fake's ``views.*`` answer) as Slack echoes it in a payload, with the
    inputs' ``state.values`` as a person filled them."""
    return {**view, "state": {"values": values or {}}}


def view_submission_payload(view: dict[str, Any], values: dict[str, dict[str, Any]], *, user_id: str = DEFAULT_USER_ID
                            ) -> dict[str, Any]:
    """``view_submission``: the modal as it stands, with the person's inputs in ``state.values``."""
    return {**_common("view_submission", user_id), "trigger_id": _trigger_id(),
            "view": view_as_sent(view, values), "response_urls": []}


def block_suggestion_payload(view: dict[str, Any], action_id: str, block_id: str, typed: str, *,
                             values: dict[str, dict[str, Any]] | None = None, user_id: str = DEFAULT_USER_ID
                             ) -> dict[str, Any]:
    """``block_suggestion`` for an ``external_select`` in a modal: what was typed is ``value``."""
    return {**_common("block_suggestion", user_id), "container": {"type": "view", "view_id": view["id"]},
            "action_id": action_id, "block_id": block_id, "value": typed, "view": view_as_sent(view, values)}


def view_block_actions_payload(view: dict[str, Any], action_id: str, value: str, *, block_id: str = "actions",
                               user_id: str = DEFAULT_USER_ID, element: dict[str, Any] | None = None,
                               values: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """A click in a view (the Home tab or a modal): no channel and no ``response_url``."""
    action = element or {"type": "button", "value": value, "text": {"type": "plain_text", "text": "Button"}}
    action = {**action, "action_id": action_id, "block_id": block_id, "action_ts": f"{time.time():.6f}"}
    return {**_common("block_actions", user_id), "container": {"type": "view", "view_id": view["id"]},
            "trigger_id": _trigger_id(), "view": view_as_sent(view, values), "actions": [action],
            "state": {"values": values or {}}}


def shortcut_payload(callback_id: str, *, user_id: str = DEFAULT_USER_ID) -> dict[str, Any]:
    """A global shortcut (from the lightning menu or search)."""
    return {**_common("shortcut", user_id), "callback_id": callback_id, "trigger_id": _trigger_id(),
            "action_ts": f"{time.time():.6f}"}


def message_action_payload(callback_id: str, message: dict[str, Any], *, response_url: str,
                           user_id: str = DEFAULT_USER_ID, channel_id: str = DEFAULT_CHANNEL_ID,
                           channel_name: str = DEFAULT_CHANNEL_NAME) -> dict[str, Any]:
    """A message shortcut on ``message`` (as Slack stores it) in ``channel_id``."""
    return {**_common("message_action", user_id), "callback_id": callback_id, "trigger_id": _trigger_id(),
            "action_ts": f"{time.time():.6f}", "channel": {"id": channel_id, "name": channel_name},
            "message_ts": message.get("ts", ""), "message": message, "response_url": response_url}


def app_home_opened(user_id: str = DEFAULT_USER_ID, tab: str = "home", view: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
    """The ``app_home_opened`` event (inside an event_callback); ``view`` only once one was published."""
    event: dict[str, Any] = {"type": "app_home_opened", "user": user_id, "channel": "D" + user_id[1:],
                             "tab": tab, "event_ts": f"{time.time():.6f}"}
    if view is not None:
        event["view"] = view
    return event
