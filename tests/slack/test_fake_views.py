"""The fake's ``views.*`` answer as Slack documents them, through the real slack_sdk client."""

from __future__ import annotations

import time

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tests.slack.fake_slack import FakeSlack
from tests.slack.signing import _trigger_id


def modal(blocks: int = 1, title: str = "Hello") -> dict:
    return {"type": "modal", "title": {"type": "plain_text", "text": title},
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f"b{n}"}} for n in range(blocks)]}


def error_of(call) -> str:
    with pytest.raises(SlackApiError) as caught:
        call()
    return str(caught.value.response["error"])


def test_views_open_update_publish(fake_slack: FakeSlack, slack_web_client: WebClient):
    client = slack_web_client
    trigger = _trigger_id()
    opened = client.views_open(trigger_id=trigger, view=modal())["view"]
    assert opened["id"].startswith("V") and opened["hash"] and opened["root_view_id"] == opened["id"]
    # a trigger is good once, and for 3 seconds
    assert error_of(lambda: client.views_open(trigger_id=trigger, view=modal())) == "exchanged_trigger_id"
    old = f"{int(time.time()) - 10}.1.abc"
    assert error_of(lambda: client.views_open(trigger_id=old, view=modal())) == "expired_trigger_id"
    # Slack's view limits: 100 blocks, a 24-character title
    assert error_of(lambda: client.views_open(trigger_id=_trigger_id(), view=modal(101))) == "invalid_arguments"
    assert error_of(lambda: client.views_open(trigger_id=_trigger_id(), view=modal(title="x" * 25))) == \
        "invalid_arguments"
    # update: by id, hash checked
    updated = client.views_update(view_id=opened["id"], view=modal(2), hash=opened["hash"])["view"]
    assert len(updated["blocks"]) == 2 and updated["id"] == opened["id"]
    assert error_of(lambda: client.views_update(view_id=opened["id"], view=modal(), hash="stale")) == "hash_conflict"
    assert error_of(lambda: client.views_update(view_id="V404", view=modal())) == "not_found"
    # publish: one Home tab per user; a modal is not a Home view
    home = {"type": "home", "blocks": modal(100)["blocks"]}
    first = client.views_publish(user_id="U123", view=home)["view"]
    again = client.views_publish(user_id="U123", view=home)["view"]
    assert first["id"] == again["id"] and fake_slack.views.home("U123") is not None
    assert error_of(lambda: client.views_publish(user_id="U123", view=modal())) == "invalid_arguments"
    assert error_of(lambda: client.views_publish(user_id="U123", view={**home, "blocks": home["blocks"] * 2})) == \
        "invalid_arguments"
