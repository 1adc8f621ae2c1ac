"""Socket Mode transport: no public URL, the default for most teams."""

from __future__ import annotations

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from handlers.client import SlackNotReady


def socket_mode_handler(app: App, app_token: str, client: WebClient) -> SocketModeHandler:
    # The handler opens its connection with apps.connections.open through this client,
    # so the configured api_url applies here too.
    return SocketModeHandler(app, app_token=app_token, web_client=client)


def start_socket_mode(app: App, app_token: str, client: WebClient) -> None:
    try:
        socket_mode_handler(app, app_token, client).start()  # type: ignore[no-untyped-call]
    except SlackApiError as exc:  # apps.connections.open said no: a setting to fix, not a blip
        error = exc.response.get("error", "unknown error")
        raise SlackNotReady(
            f"Slack refused a Socket Mode connection ({error}): turn Socket Mode on in the app's settings "
            "and check SLACK_APP_TOKEN (xapp-…), or serve over HTTP with --http",
            retryable=False,
        ) from None
