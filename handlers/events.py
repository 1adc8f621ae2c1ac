"""Messages in alert channels: every shape (people, classic integrations, apps, edits) goes to the alert service.

A catch-all ``message`` listener, because ``app.message()`` does not match
``message_changed`` (Zabbix resolves an alert by editing it). Bolt acks events
itself; the work runs after the ack. Which messages count as alerts (senders,
teams, shared channels) is decided by the service (``bot/domain/alerts/intake.py``);
this module only says who we are: our team (auth.test, via Bolt's authorize
result), our bot ids, and our app id (``alerts.app_id`` or ``bots.info``).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.domain.alerts.intake import Installation
from bot.wiring import Services
from handlers.work import WorkPool

log = logging.getLogger(__name__)


class _AppId:
    """Our app id, asked once of ``bots.info`` when not configured; unknown (not checked) if Slack won't say."""

    def __init__(self, configured: str | None) -> None:
        self._value = configured
        self._asked = configured is not None
        self._lock = threading.Lock()

    def get(self, client: WebClient, bot_id: str | None) -> str | None:
        with self._lock:
            if not self._asked and bot_id:
                self._asked = True
                try:
                    bot = client.bots_info(bot=bot_id).get("bot") or {}
                    self._value = bot.get("app_id") or None
                except SlackApiError as exc:
                    log.warning("bots.info failed (%s): events' api_app_id is not checked", exc.response.get("error"))
            return self._value


def register(app: App, services: Services, work: WorkPool) -> None:
    channels = set(services.settings.slack.alert_channels)
    app_id = _AppId(services.settings.alerts.app_id)

    def on_message(body: dict[str, Any], event: dict[str, Any], context: BoltContext) -> None:
        if event.get("channel") not in channels:
            return
        nested = event.get("message")
        inner: dict[str, Any] = nested if isinstance(nested, dict) else event
        own = {context.bot_id, context.bot_user_id} - {None}
        if inner.get("bot_id") in own or inner.get("user") in own:
            return  # our own replies (and edits of them) are not alerts
        authorized = context.authorize_result
        us = Installation(
            team_id=authorized.team_id if authorized is not None else None,
            bot_ids=frozenset(str(i) for i in own),
        )
        work.submit(_handle, event, body, us, context.client, context.bot_id)

    def _handle(event: dict[str, Any], body: dict[str, Any], us: Installation, client: WebClient,
                bot_id: str | None) -> None:
        us = Installation(team_id=us.team_id, app_id=app_id.get(client, bot_id), bot_ids=us.bot_ids)
        outcome = services.alerts.handle_message(event, body.get("event_id"), body, us)
        log.info("alert channel message %s: %s", body.get("event_id"), outcome)

    app.event("message")(on_message)
