"""Button presses. Every click is judged again by the router, whatever the message showed."""

from __future__ import annotations

import re
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.router import Actor
from bot.wiring import Services
from handlers.delivery import deliver
from handlers.middleware import Triggers
from handlers.work import WorkPool

XENBOT_ACTIONS = re.compile(r"^xenbot_")


def actor_of(body: dict[str, Any]) -> Actor:
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
    return Actor(user_id=(body.get("user") or {}).get("id", ""), channel_id=channel)


def register(app: App, services: Services, work: WorkPool, triggers: Triggers) -> None:
    def run(body: dict[str, Any], action: dict[str, Any], respond: Respond, client: WebClient) -> None:
        if not triggers.first_time(body):
            return  # a replayed click: the first one counted
        actor = actor_of(body)
        reply = services.router.handle_action(actor, action.get("action_id", ""), action.get("value", ""))
        deliver(reply, client=client, respond=respond, channel_id=actor.channel_id, user_id=actor.user_id)

    def on_action(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, client: WebClient) -> None:
        ack()
        work.submit(run, body, action, respond, client)

    app.action(XENBOT_ACTIONS)(on_action)
