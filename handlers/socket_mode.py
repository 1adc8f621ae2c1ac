"""Socket Mode transport: no public URL, the default for most teams."""

from __future__ import annotations

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient


def socket_mode_handler(app: App, app_token: str, client: WebClient) -> SocketModeHandler:
    # The handler opens its connection with apps.connections.open through this client,
    # so the configured api_url applies here too.
    return SocketModeHandler(app, app_token=app_token, web_client=client)


def start_socket_mode(app: App, app_token: str, client: WebClient) -> None:
    socket_mode_handler(app, app_token, client).start()  # type: ignore[no-untyped-call]
