"""Messages in alert channels: every shape (people, classic integrations, apps, edits) goes to the alert service.

A catch-all ``message`` listener, because ``app.message()`` does not match
``message_changed`` (Zabbix resolves an alert by editing it). Bolt acks events
itself; the work runs after the ack, on the work pool's alert workers. In a flood,
what does not fit in the channel's queue is summarised in one message
(``summarise``) instead of being answered one by one. Which messages count as
alerts (senders, teams, shared channels) is decided by the service
(``bot/domain/alerts/intake.py``); this module only says who we are: our team
(auth.test, via Bolt's authorize result), our bot ids, and our app id
(``alerts.app_id`` or ``bots.info``).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.domain.alerts import parse_alert
from bot.domain.alerts.intake import Installation
from bot.domain.slack_text import escape
from bot.render.blocks import Reply, context, section
from bot.wiring import Services
from handlers.work import WorkPool

log = logging.getLogger(__name__)

SUMMARY_TARGETS = 10


def overflow_summary(events: list[dict[str, Any]]) -> Reply | None:
    """One message for the alerts a flood left unread: how many, firing or resolved, and where."""
    alerts = [a for a in map(parse_alert, events) if a is not None]
    if not alerts:
        return None
    targets = Counter(a.target for a in alerts)
    firing = sum(a.firing for a in alerts)
    lines = [f"• {escape(target)}: {count}" for target, count in targets.most_common(SUMMARY_TARGETS)]
    if len(targets) > SUMMARY_TARGETS:
        lines.append(f"• … and {len(targets) - SUMMARY_TARGETS} more targets")
    text = (f"…and {len(alerts)} more discard alerts, summarised here: they arrived faster than xenbot "
            f"could look at each one ({firing} firing, {len(alerts) - firing} resolved).")
    return Reply(
        text=text,
        blocks=[section(text), section("\n".join(lines)), context(
            "Not diagnosed one by one. Ask `/xen explain VM` about any of them; `/xen alerts` lists those answered."
        )],
        ephemeral=False,
    )


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
        channel = event.get("channel")
        if channel not in channels:
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
        work.submit_alert(str(channel), _handle, event, body, us, context.client, context.bot_id,
                          item=(event, body, us), summarise=_summarise)

    def _handle(event: dict[str, Any], body: dict[str, Any], us: Installation, client: WebClient,
                bot_id: str | None) -> None:
        us = Installation(team_id=us.team_id, app_id=app_id.get(client, bot_id), bot_ids=us.bot_ids)
        outcome = services.alerts.handle_message(event, body.get("event_id"), body, us)
        log.info("alert channel message %s: %s", body.get("event_id"), outcome)

    def _summarise(channel: str, items: list[Any]) -> None:
        # Only what would have been an alert: not people, other teams or apps (intake rules).
        events = [event for event, body, us in items if services.alerts.intake.may_be_alert(event, body, us)]
        reply = overflow_summary(events)
        log.warning("alert channel %s: %d messages left unread in a flood, %s", channel, len(events),
                    "summarised" if reply else "none of them alerts")
        if reply is not None:
            services.messenger.post(channel, reply)

    app.event("message")(on_message)
