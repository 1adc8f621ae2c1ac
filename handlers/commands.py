"""The ``/xen`` slash command: ack at once, do the work after, answer via response_url."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.router import Actor
from bot.wiring import Services
from handlers.delivery import delay_notice, deliver
from handlers.middleware import Triggers, slack_channel
from handlers.work import WorkPool

log = logging.getLogger(__name__)


def register(app: App, services: Services, work: WorkPool, triggers: Triggers) -> None:
    def run(body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        if not triggers.first_time(body):
            return  # a replay or a second delivery: the first one is answered
        actor = Actor(user_id=body.get("user_id", ""), channel_id=slack_channel(body.get("channel_id")))
        reply = services.router.handle(actor, body.get("text", ""))
        deliver(reply, client=client, respond=respond, channel_id=actor.channel_id, user_id=actor.user_id)

    def on_command(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        # Nothing slow before this: Slack gives us 3 seconds, XAPI may take longer.
        ack()
        work.submit(run, body, respond, client, on_delay=delay_notice(respond))

    app.command(services.settings.slack.command)(on_command)
