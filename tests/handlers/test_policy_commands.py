"""/xen policy and /xen compliance over signed HTTP, with approvals through buttons."""

from __future__ import annotations

from bot.render.ids import Action
from tests.handlers.harness import APPROVALS, LEAD, REQUESTER, approval_card, wait_state


def test_policy_set_list_show_compliance_remove(change_bot):
    bot = change_bot
    _, url = bot.command("policy set pool=demo vifs modes=tx mode=report exclude=win*", user=REQUESTER)
    assert "waiting for approval" in bot.reply_text(url)
    card = approval_card(bot, 1)
    assert "Policy: in pool demo, vifs have tx off, except name win*" in str(card)
    bot.click(Action.APPROVE, "1", user=LEAD, channel=APPROVALS)
    wait_state(bot, 1, "applied")
    _, url = bot.command("policy list")
    assert "#1" in bot.reply_text(url) and "report" in bot.reply_text(url)
    _, url = bot.command("compliance pool=demo")
    text = bot.reply_text(url)
    assert "COMPLY" in text and "Drifting from policy #1" in text and "win7-kiosk" not in text
    _, url = bot.command("policy show 1")
    assert "Policy #1" in bot.reply_text(url)
    _, url = bot.command("policy remove 1", user=REQUESTER)
    assert "removal of policy #1" in bot.reply_text(url)
    approval_card(bot, 2)
    bot.click(Action.APPROVE, "2", user=LEAD, channel=APPROVALS)
    wait_state(bot, 2, "applied")
    _, url = bot.command("policy show 1")
    assert "No active policy matches '#1'" in bot.reply_text(url)


def test_policy_usage_errors(change_bot):
    bot = change_bot
    _, url = bot.command("policy set pool=demo nics modes=tx", user=REQUESTER)
    assert "`vifs` or `pifs`" in bot.reply_text(url)
    _, url = bot.command("policy set pool=demo vifs modes=gro", user=REQUESTER)
    assert "cannot be set on VIFs" in bot.reply_text(url)
    _, url = bot.command("policy set pool=nope vifs", user=REQUESTER)
    assert "No pool matches 'nope'" in bot.reply_text(url)
