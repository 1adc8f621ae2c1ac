"""Button presses. Every click is judged again by the router, whatever the message showed.

Approve, reject and cancel are also accepted only from the channel their card was posted
in: a signed click names its channel itself, and a click from elsewhere (a forged or
stale payload, or a copy of the card pasted somewhere) is refused and audited.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from sqlalchemy.exc import SQLAlchemyError

from bot.db.models import ChangeRequest
from bot.render.blocks import Reply
from bot.render.ids import Action
from bot.render.inspection import render_error
from bot.router import Actor
from bot.wiring import Services
from handlers.delivery import delay_notice, deliver
from handlers.middleware import Triggers, slack_channel
from handlers.work import WorkPool

log = logging.getLogger(__name__)

XENBOT_ACTIONS = re.compile(r"^xenbot_")
CARD_ACTIONS = frozenset({Action.APPROVE, Action.REJECT, Action.CANCEL})


def actor_of(body: dict[str, Any]) -> Actor:
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
    return Actor(user_id=(body.get("user") or {}).get("id", ""), channel_id=slack_channel(channel))


def card_channel(services: Services, value: str) -> tuple[bool, str | None]:
    """(whether the request exists, the channel its card was posted in).

    Until the card's channel is stored (just after Slack took the post), it is the channel
    the change service posts cards to: the approvals channel, else where it was asked."""
    try:
        request_id = int(value.lstrip("#"))
    except ValueError:
        return False, None
    with services.sessions() as session:
        request = session.get(ChangeRequest, request_id)
        if request is None:
            return False, None
        return True, request.message_channel or services.settings.slack.approvals_channel or request.channel


def refused_elsewhere(services: Services, actor: Actor, action_id: str, value: str) -> Reply | None:
    """A refusal when an approval card's button is clicked outside the card's channel."""
    if action_id not in CARD_ACTIONS:
        return None
    try:
        exists, channel = card_channel(services, value)
    except SQLAlchemyError as exc:
        log.warning("could not read the card of change %s: %s", value, exc)
        return render_error("xenbot's database is not answering; nothing was done. Try the click again in a minute.")
    if not exists or (channel is not None and channel == actor.channel_id):
        return None  # an unknown request is the router's to answer
    reason = "this button only works on the approval card, in the channel it was posted in"
    services.audit.record(actor=actor.user_id, action="action.refused", target=action_id,
                          details={"value": value, "reason": reason, "card_channel": channel},
                          channel=actor.channel_id)
    return render_error(f"Sorry, {reason}.")


def register(app: App, services: Services, work: WorkPool, triggers: Triggers) -> None:
    def run(body: dict[str, Any], action: dict[str, Any], respond: Respond, client: WebClient) -> None:
        if not triggers.first_time(body):
            return  # a replayed click: the first one counted
        actor = actor_of(body)
        action_id, value = action.get("action_id", ""), action.get("value", "")
        reply = refused_elsewhere(services, actor, action_id, value) or services.router.handle_action(
            actor, action_id, value
        )
        deliver(reply, client=client, respond=respond, channel_id=actor.channel_id, user_id=actor.user_id)

    def on_action(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, client: WebClient) -> None:
        ack()
        work.submit(run, body, action, respond, client, on_delay=delay_notice(respond))

    app.action(XENBOT_ACTIONS)(on_action)
