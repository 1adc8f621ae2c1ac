"""Button presses. Every click is judged again by the router, whatever the message showed.

Approve, reject and cancel are also accepted only from the channel their card was posted
in: a signed click names its channel itself, and a click from elsewhere (a forged or
stale payload, or a copy of the card pasted somewhere) is refused and audited.

The Home tab is the one other place: its clicks come from a view (``container.type ==
"view"``, ``view.type == "home"``), with no channel at all. Slack signs who clicked and on
which tab, and a Home tab is only ever its owner's, so such a click is accepted for Approve
and Reject only (the buttons the tab shows; never Cancel or anything else), audited as
``action.home``, and judged by the same approval rules as a click on the card. Its answer
goes back into the tab, as there is no message to reply under.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
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
HOME_ACTIONS = frozenset({Action.APPROVE, Action.REJECT})
HomeAnswer = Callable[[str, Reply], None]


def from_home(body: dict[str, Any]) -> bool:
    """A click on the clicker's own Home tab (signed by Slack), not on a message."""
    container, view = body.get("container") or {}, body.get("view") or {}
    return container.get("type") == "view" and view.get("type") == "home"


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


def refused_elsewhere(
    services: Services, actor: Actor, action_id: str, value: str, home: bool = False
) -> Reply | None:
    """A refusal when an approval card's button is clicked outside the card's channel.

    ``home``: the click came from the clicker's Home tab, where Approve and Reject are shown."""
    if home and action_id in HOME_ACTIONS:
        services.audit.record(actor=actor.user_id, action="action.home", target=action_id, details={"value": value})
        return None
    if home:
        reason = "this button does not work from the Home tab"
        services.audit.record(actor=actor.user_id, action="action.refused", target=action_id,
                              details={"value": value, "reason": reason, "home": True})
        return render_error(f"Sorry, {reason}.")
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


def register(
    app: App, services: Services, work: WorkPool, triggers: Triggers, home_answer: HomeAnswer | None = None
) -> None:
    def run(body: dict[str, Any], action: dict[str, Any], respond: Respond, client: WebClient) -> None:
        if not triggers.first_time(body):
            return  # a replayed click: the first one counted
        actor = actor_of(body)
        home = from_home(body)
        action_id, value = action.get("action_id", ""), action.get("value", "")
        reply = refused_elsewhere(services, actor, action_id, value, home) or services.router.handle_action(
            actor, action_id, value
        )
        if home and home_answer is not None:
            home_answer(actor.user_id, reply)
            return
        deliver(reply, client=client, respond=respond, channel_id=actor.channel_id, user_id=actor.user_id)

    def on_action(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, client: WebClient) -> None:
        ack()
        on_delay = None if from_home(body) else delay_notice(respond)  # a view's click has no response_url
        work.submit(run, body, action, respond, client, on_delay=on_delay)

    app.action(XENBOT_ACTIONS)(on_action)
