"""Where a Slack request comes from counts: the console's channel name means nothing over
Slack, and approval buttons work only on the card, in the channel it was posted in."""

from __future__ import annotations

from sqlalchemy import select

from bot.db import AuditEvent
from bot.render.ids import Action
from tests.handlers.harness import APPROVALS, LEAD, REQUESTER, approval_card, bot_settings, running_bot, wait_state


def test_a_slack_request_naming_the_console_channel_is_not_let_past_allowed_channels(sim, fake_slack, database_url):
    settings = bot_settings({"demo": sim}, fake_slack, database_url, allowed_channels=["C123"])
    with running_bot(settings, fake_slack) as bot:
        _, url = bot.command("vifs win7-kiosk", channel="console")
        assert "not enabled in this channel" in bot.reply_text(url)
        _, url = bot.click(Action.SHARE, "vifs win7-kiosk", channel="console")
        assert "not enabled in this channel" in bot.reply_text(url)
        _, url = bot.command("vifs win7-kiosk", channel="C123")
        assert "win7-kiosk" in bot.reply_text(url) and "not enabled" not in bot.reply_text(url)


def test_approval_buttons_count_only_from_the_cards_channel(change_bot):
    bot = change_bot
    _, url = bot.command("offload off vm=win7-kiosk", user=REQUESTER)
    bot.reply_text(url)
    approval_card(bot, 1)
    for action, channel in ((Action.APPROVE, "C123"), (Action.REJECT, "console"), (Action.CANCEL, "C999")):
        _, url = bot.click(action, "1", user=LEAD if action != Action.CANCEL else REQUESTER, channel=channel)
        assert "only works on the approval card" in bot.reply_text(url)
    assert wait_state(bot, 1, "pending")
    with bot.services.sessions() as session:
        refused = session.scalars(select(AuditEvent).where(AuditEvent.action == "action.refused")).all()
        assert [(e.target, e.channel) for e in refused] == [
            (Action.APPROVE, "C123"), (Action.REJECT, None), (Action.CANCEL, "C999")
        ]
    _, url = bot.click(Action.APPROVE, "1", user=LEAD, channel=APPROVALS)
    assert "You approved change #1" in bot.reply_text(url)
    wait_state(bot, 1, "applied")


def test_without_an_approvals_channel_the_card_is_clicked_where_it_was_asked(sim, fake_slack, db_url):
    settings = bot_settings({"demo": sim}, fake_slack, db_url, approvers=[LEAD])
    with running_bot(settings, fake_slack) as bot:
        _, url = bot.command("offload off vm=win7-kiosk", user=REQUESTER, channel="C123")
        bot.reply_text(url)
        fake_slack.wait_for("chat.postMessage", predicate=lambda c: "Change #1:" in str(c.args.get("text")))
        _, url = bot.click(Action.APPROVE, "1", user=LEAD, channel="C123")
        assert "You approved change #1" in bot.reply_text(url)
