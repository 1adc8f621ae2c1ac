"""The Home tab end to end through ``xenbot serve --http``: published on ``app_home_opened``,
refreshed when a change waits for the person, Approve from the tab, and who sees what."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk.models.views import View
from sqlalchemy import select

from bot.db import AuditEvent
from bot.render.ids import Action
from handlers import home
from tests.handlers.harness import APPROVALS, LEAD, REQUESTER, RunningBot, bot_settings, running_bot, wait_state
from tests.slack.signing_views import app_home_opened, view_block_actions_payload


@pytest.fixture
def home_bot(sim, fake_slack, db_url, monkeypatch) -> Iterator[RunningBot]:
    monkeypatch.setattr(home, "POLL_SECONDS", 0.2)
    # REQUESTER operates; LEAD only approves (approvers need not be operators).
    settings = bot_settings({"demo": sim}, fake_slack, db_url, approvers=[LEAD, REQUESTER],
                            approvals_channel=APPROVALS, operators=[REQUESTER])
    with running_bot(settings, fake_slack) as bot:
        yield bot


def published(bot: RunningBot) -> list[dict[str, Any]]:
    return [json.loads(c.args["view"]) if isinstance(c.args["view"], str) else c.args["view"]
            for c in bot.fake.calls("views.publish")]


def validate(view: dict[str, Any]) -> None:
    """Slack's own model of a view, with its limits (slack_sdk.models.views)."""
    View(**view).validate_json()
    assert len(view["blocks"]) <= 100


def home_click(bot: RunningBot, user: str, action_id: str, value: str) -> int:
    view = bot.home(user)
    status, _ = bot.interact(view_block_actions_payload(view, action_id, value, user_id=user,
                                                        block_id=f"home-change-{value}"))
    return status


def test_home_published_refreshed_and_approved_from_the_tab(sim, home_bot):
    bot = home_bot
    assert bot.event(app_home_opened(LEAD), event_id="EvHome1") == 200
    assert bot.event(app_home_opened(REQUESTER), event_id="EvHome2") == 200
    lead = bot.home(LEAD, lambda text: "Waiting for your approval" in text)
    assert "Nothing waits for you" in json.dumps(lead)
    mine = bot.home(REQUESTER, lambda text: "Pools" in text)
    mine_text = json.dumps(mine)
    assert "demo" in mine_text and "master" in mine_text and "You have not requested anything yet" in mine_text

    # A request appears on the approver's tab by itself, with the card's own buttons.
    _, url = bot.command('offload off vm=win7-kiosk reason="discards"', user=REQUESTER)
    assert "waiting for approval" in bot.reply_text(url)
    lead = bot.home(LEAD, lambda text: "#1" in text and Action.APPROVE in text)
    assert Action.REJECT in json.dumps(lead)
    # ... and on the requester's, under their requests, without Approve (no self-approval).
    mine = bot.home(REQUESTER, lambda text: "Your requests" in text and "pending" in text)
    assert Action.APPROVE not in json.dumps(mine)

    # Approve from the Home tab: no channel, judged like a click on the card.
    assert home_click(bot, LEAD, Action.APPROVE, "1") == 200
    wait_state(bot, 1, "applied")
    bot.home(LEAD, lambda text: "You approved change #1" in text and Action.APPROVE not in text)
    bot.home(REQUESTER, lambda text: "applied" in text)

    for view in published(bot):
        validate(view)
    with bot.services.sessions() as session:
        actions = [e.action for e in session.scalars(select(AuditEvent).where(AuditEvent.actor == LEAD))]
    assert "action.home" in actions and "change.approved" in actions


def test_home_tab_only_approves_and_rejects_and_hides_what_slash_xen_would_refuse(home_bot):
    bot = home_bot
    bot.event(app_home_opened(LEAD), event_id="EvHome3")
    lead = json.dumps(bot.home(LEAD))
    # LEAD is no operator: /xen refuses them, so the tab shows no pools, policies or alerts.
    _, url = bot.command("pools", user=LEAD)
    assert "not on xenbot's operator list" in bot.reply_text(url)
    assert "not on xenbot" in lead and "*Pools*" not in lead and "Last alerts" not in lead
    assert "Change offloading" not in lead

    _, url = bot.command("offload off vm=win7-kiosk", user=REQUESTER)
    bot.reply_text(url)
    bot.home(LEAD, lambda text: "#1" in text)
    # Cancel is not on the tab: a click claiming to be one from it is refused and audited.
    assert home_click(bot, LEAD, Action.CANCEL, "1") == 200
    bot.home(LEAD, lambda text: "does not work from the Home tab" in text)
    wait_state(bot, 1, "pending")
    # A Home-tab Approve by someone who may not approve is refused by the approval rules.
    bot.event(app_home_opened("U999"), event_id="EvHome4")
    assert home_click(bot, "U999", Action.APPROVE, "1") == 200
    bot.home("U999", lambda text: "not an approver" in text)
    wait_state(bot, 1, "pending")
    # Reject from the tab works like the card's.
    assert home_click(bot, LEAD, Action.REJECT, "1") == 200
    wait_state(bot, 1, "rejected")
    with bot.services.sessions() as session:
        refused = session.scalars(select(AuditEvent).where(AuditEvent.action == "action.refused")).all()
    assert any(e.details.get("home") for e in refused)


class Unreachable:
    """A pool whose master refuses connections."""

    url = "https://127.0.0.1:9"
    password = "x"


def test_home_says_which_pool_does_not_answer(sim, fake_slack, database_url):
    settings = bot_settings({"demo": sim, "dead": Unreachable()}, fake_slack, database_url)
    with running_bot(settings, fake_slack) as bot:
        bot.event(app_home_opened(REQUESTER), event_id="EvHome5")
        view = bot.home(REQUESTER, lambda text: "Pools" in text)
        text = json.dumps(view)
        assert "*dead* does not answer" in text and ":large_green_circle: *demo* master" in text
        validate(view)
