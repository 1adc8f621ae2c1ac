"""The same app through Socket Mode: Bolt's real SocketModeHandler against a local Socket Mode peer."""

from __future__ import annotations

from pydantic import SecretStr

from bot.wiring import build
from handlers.app import build_app
from handlers.client import web_client
from handlers.socket_mode import socket_mode_handler
from tests.handlers.harness import bot_settings
from tests.slack.fake_socket_mode import close_socket_mode_client
from tests.slack.fixtures import APP_TOKEN
from tests.slack.signing import slash_command_payload


def test_slash_command_over_socket_mode_is_acked_and_answered(sim, fake_slack, fake_socket_mode, database_url):
    settings = bot_settings({"demo": sim}, fake_slack, database_url)
    settings = settings.model_copy(
        update={"slack": settings.slack.model_copy(update={"app_token": SecretStr(APP_TOKEN)})}
    )
    client = web_client(settings)
    services = build(settings)
    handler = socket_mode_handler(build_app(services, client), APP_TOKEN, client)
    handler.connect()
    try:
        fake_socket_mode.wait_for_connection()
        response_url = fake_slack.response_url()
        envelope = fake_socket_mode.send_slash_command(
            slash_command_payload("vifs pfsense-fw01", response_url=response_url)
        )
        assert fake_socket_mode.wait_for_ack(envelope, timeout=3.0)
        posted = fake_slack.wait_for("response_url", timeout=10)
        text = str(posted[-1].body)
        assert "pfsense-fw01" in text and "WAN VLAN 200" in text
    finally:
        close_socket_mode_client(handler.client, fake_socket_mode)
        services.close()
