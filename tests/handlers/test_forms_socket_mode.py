"""The Home tab, the form and the message shortcut through Socket Mode: Bolt's real
SocketModeHandler against the local Socket Mode peer; answers that must come in the ack
(options, ``response_action``) arrive as the ack's payload."""

from __future__ import annotations

import json

from pydantic import SecretStr

from bot.render import forms as render
from bot.wiring import build
from handlers import home
from handlers.app import build_app
from handlers.client import web_client
from handlers.forms import SHORTCUT
from handlers.socket_mode import socket_mode_handler
from tests.handlers.harness import REQUESTER, bot_settings
from tests.handlers.test_alert_flow import corpus
from tests.slack.fake_socket_mode import close_socket_mode_client
from tests.slack.fixtures import APP_TOKEN
from tests.slack.signing import event_callback_payload
from tests.slack.signing_views import (
    app_home_opened,
    block_suggestion_payload,
    message_action_payload,
    shortcut_payload,
    view_submission_payload,
)


def test_home_form_and_shortcut_over_socket_mode(sim, fake_slack, fake_socket_mode, database_url):
    settings = bot_settings({"demo": sim}, fake_slack, database_url, operators=[REQUESTER])
    settings = settings.model_copy(
        update={"slack": settings.slack.model_copy(update={"app_token": SecretStr(APP_TOKEN)})}
    )
    client = web_client(settings)
    services = build(settings)
    app = build_app(services, client)
    handler = socket_mode_handler(app, APP_TOKEN, client)
    handler.connect()
    try:
        fake_socket_mode.wait_for_connection()
        # Home tab
        envelope = fake_socket_mode.send_event(event_callback_payload(app_home_opened(REQUESTER)))
        assert fake_socket_mode.wait_for_ack(envelope)
        published = fake_slack.wait_for("views.publish", timeout=10)[-1]
        assert published.ok and "demo" in json.dumps(published.arg_json("view"))

        # The form, the target search and a submission with errors, answered in the acks.
        envelope = fake_socket_mode.send_interactive(shortcut_payload(SHORTCUT, user_id=REQUESTER))
        assert fake_socket_mode.wait_for_ack(envelope, timeout=3.0)
        opened = fake_slack.wait_for("views.open", timeout=10)[-1]
        assert opened.ok, opened.response
        form = opened.response["view"]
        envelope = fake_socket_mode.send_interactive(block_suggestion_payload(
            form, render.TARGET_ACTION, render.target_block("vm"), "pfsense", user_id=REQUESTER))
        ack = fake_socket_mode.wait_for_ack(envelope, timeout=3.0)
        assert ack.payload is not None and any("pfsense-fw01" in o["text"]["text"] for o in ack.payload["options"])
        envelope = fake_socket_mode.send_interactive(view_submission_payload(form, {}, user_id=REQUESTER))
        ack = fake_socket_mode.wait_for_ack(envelope, timeout=3.0)
        assert ack.payload is not None and ack.payload["response_action"] == "errors"

        # Explain with xenbot: privately, on the message's response_url.
        url = fake_slack.response_url(channel_id="C0RANDOM", user_id=REQUESTER)
        envelope = fake_socket_mode.send_interactive(message_action_payload(
            render.EXPLAIN_CALLBACK, corpus("zabbix_problem"), response_url=url, user_id=REQUESTER,
            channel_id="C0RANDOM"))
        assert fake_socket_mode.wait_for_ack(envelope, timeout=3.0)
        answer = fake_slack.wait_for("response_url", timeout=10)[-1].body
        assert answer["response_type"] == "ephemeral" and "win2008r2-sql01" in json.dumps(answer)
    finally:
        home.stop(app)
        close_socket_mode_client(handler.client, fake_socket_mode)
        services.close()


def test_traffic_button_over_socket_mode_sends_the_chart_privately(sim, fake_slack, fake_socket_mode, database_url):
    """Issue 18 §4 through Socket Mode: the "Traffic, last hour" button of /xen vif uploads the PNG
    to the presser's direct messages, as it does over HTTP (tests/handlers/test_traffic_charts.py)."""
    import time

    from bot.render.ids import Action
    from handlers.messenger import SlackMessenger
    from tests.slack.signing import block_actions_payload, slash_command_payload

    settings = bot_settings({"demo": sim}, fake_slack, database_url)
    settings = settings.model_copy(
        update={"slack": settings.slack.model_copy(update={"app_token": SecretStr(APP_TOKEN)})}
    )
    client = web_client(settings)
    services = build(settings, messenger=SlackMessenger(client))  # as `xenbot serve` builds it
    app = build_app(services, client)
    handler = socket_mode_handler(app, APP_TOKEN, client)
    handler.connect()
    try:
        fake_socket_mode.wait_for_connection()
        url = fake_slack.response_url()
        envelope = fake_socket_mode.send_slash_command(slash_command_payload("vif win7-kiosk:0", response_url=url))
        assert fake_socket_mode.wait_for_ack(envelope, timeout=3.0)
        answer = fake_slack.wait_for("response_url", timeout=10)[-1].body
        traffic = next(e for b in answer["blocks"] if b["type"] == "actions" for e in b["elements"]
                       if e["action_id"] == Action.TRAFFIC)
        clicked = fake_slack.response_url()
        envelope = fake_socket_mode.send_interactive(
            block_actions_payload(Action.TRAFFIC, traffic["value"], response_url=clicked, is_ephemeral=True)
        )
        assert fake_socket_mode.wait_for_ack(envelope, timeout=3.0)
        deadline = time.monotonic() + 30
        while not [f for f in fake_slack.uploads() if f.completed and f.filename == "traffic-win7-kiosk.png"]:
            said = [str(c.body)[:300] for c in fake_slack.calls("response_url")][1:]
            assert time.monotonic() < deadline, f"no chart uploaded; the click answered {said}"
            time.sleep(0.05)
        chart = [f for f in fake_slack.uploads() if f.filename == "traffic-win7-kiosk.png"][-1]
        assert chart.content.startswith(b"\x89PNG") and (chart.channel_id or "").startswith("D")
    finally:
        home.stop(app)
        close_socket_mode_client(handler.client, fake_socket_mode)
        services.close()
