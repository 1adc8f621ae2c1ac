"""Messages in alert channels: every shape (people, classic integrations, apps, edits) goes to the alert service.

A catch-all ``message`` listener, because ``app.message()`` does not match
``message_changed`` (Zabbix resolves an alert by editing it). Bolt acks events
itself; the work runs after the ack.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App, BoltContext

from bot.wiring import Services
from handlers.work import WorkPool

log = logging.getLogger(__name__)


def register(app: App, services: Services, work: WorkPool) -> None:
    channels = set(services.settings.slack.alert_channels)

    def on_message(body: dict[str, Any], event: dict[str, Any], context: BoltContext) -> None:
        if event.get("channel") not in channels:
            return
        nested = event.get("message")
        inner: dict[str, Any] = nested if isinstance(nested, dict) else event
        own = {context.bot_id, context.bot_user_id} - {None}
        if inner.get("bot_id") in own or inner.get("user") in own:
            return  # our own replies (and edits of them) are not alerts
        work.submit(_handle, event, body.get("event_id"))

    def _handle(event: dict[str, Any], event_id: str | None) -> None:
        outcome = services.alerts.handle_message(event, event_id)
        log.info("alert channel message %s: %s", event_id, outcome)

    app.event("message")(on_message)
