"""Offload changes end to end: signed Slack requests in, approvals, XAPI writes, activation, revert.

Runs on SQLite and (with XENBOT_TEST_POSTGRES_URL) on PostgreSQL, against the simulator.
"""

from __future__ import annotations

import time

from sqlalchemy import select

from bot.db import AuditEvent, verify
from bot.db.models import ChangeResult
from bot.render.ids import Action
from tests.handlers.harness import (
    APPROVALS,
    LEAD,
    REQUESTER,
    RunningBot,
    action_ids,
    approval_card,
    bot_settings,
    message_text,
    running_bot,
    wait_state,
)


def vif_of(bot: RunningBot, vm: str, device: str = "0"):
    inventory = bot.services.gateways.get("demo").inventory()
    return next(v for v in inventory.vifs.values() if v.vm_name == vm and v.device == device)


def test_request_approve_apply_activate_revert(sim, change_bot):
    bot = change_bot
    before = dict(vif_of(bot, "win7-kiosk").other_config)
    effective_before = sim.effective_offload(vif_of(bot, "win7-kiosk").ref)

    # 1. request: a preview for the requester, a card with buttons in the approvals channel
    _, url = bot.command('offload off vm=win7-kiosk reason="discards on win7"', user=REQUESTER)
    assert "waiting for approval" in bot.reply_text(url)
    card = approval_card(bot, 1)
    assert {Action.APPROVE, Action.REJECT, Action.CANCEL} <= set(action_ids(card))
    assert "approve" in Action.APPROVE and "reject" in Action.REJECT
    card_text = message_text(card)
    assert "ethtool-tx" in card_text and "disabled -&gt; off" in card_text and "discards on win7" in card_text

    # 2. self-approval is refused, and nothing is written
    _, url = bot.click(Action.APPROVE, "1", user=REQUESTER, channel=APPROVALS)
    assert "cannot approve your own request" in bot.reply_text(url)
    assert wait_state(bot, 1, "pending")
    # someone who is not an approver is refused too
    _, url = bot.click(Action.APPROVE, "1", user="U999", channel=APPROVALS)
    assert "not an approver" in bot.reply_text(url)

    # 3. an approver approves: applied and verified in XAPI, other keys kept
    _, url = bot.click(Action.APPROVE, "1", user=LEAD, channel=APPROVALS)
    assert "You approved change #1" in bot.reply_text(url)
    request = wait_state(bot, 1, "applied")
    vif = vif_of(bot, "win7-kiosk")
    for mode in ("rx", "tx", "sg", "tso", "ufo", "gso"):
        assert vif.other_config[f"ethtool-{mode}"] == "off"
    assert {k: v for k, v in vif.other_config.items() if not k.startswith("ethtool-")} == {
        k: v for k, v in before.items() if not k.startswith("ethtool-")
    }
    # ... but not in effect: dom0 applies it on the next plug
    assert sim.effective_offload(vif.ref) == effective_before
    card_now = bot.fake.message(APPROVALS, request.message_ts)
    assert "applied" in message_text(card_now) and Action.APPROVE not in action_ids(card_now)
    summary = bot.fake.wait_for(
        "chat.postMessage", predicate=lambda c: c.args.get("thread_ts") == request.message_ts
    )[-1]
    assert "1 interfaces changed and verified" in str(summary.args) and Action.ACTIVATE in str(summary.args)

    # 4. pending activation shows in /xen vifs and offload status
    _, url = bot.command("vifs win7-kiosk")
    assert "pending" in bot.reply_text(url)
    _, url = bot.command("offload status vm=win7-kiosk")
    assert "pending activation" in bot.reply_text(url)

    # 5. activation is itself a change that needs approval; then it is in effect
    _, url = bot.click(Action.ACTIVATE, "1", user=REQUESTER, channel=APPROVALS)
    assert "Change #2 is waiting for approval" in bot.reply_text(url)
    _, url = bot.click(Action.APPROVE, "2", user=LEAD, channel=APPROVALS)
    wait_state(bot, 2, "applied")
    effective = sim.effective_offload(vif_of(bot, "win7-kiosk").ref)
    assert effective == dict.fromkeys(("rx", "tx", "sg", "tso", "ufo", "gso"), "off")
    _, url = bot.command("vifs win7-kiosk")
    assert "pending" not in bot.reply_text(url).split("IN EFFECT")[1].split("Offload modes")[0]

    # 6. revert restores exactly the previous values, including absent keys
    _, url = bot.click(Action.REVERT, "1", user=REQUESTER, channel=APPROVALS)
    assert "Change #3 is waiting for approval" in bot.reply_text(url)
    _, url = bot.click(Action.APPROVE, "3", user=LEAD, channel=APPROVALS)
    wait_state(bot, 3, "applied")
    assert dict(vif_of(bot, "win7-kiosk").other_config) == before

    # 7. history and audit
    _, url = bot.command("changes")
    listing = bot.reply_text(url)
    assert "#1" in listing and "#3" in listing and "applied" in listing
    _, url = bot.command("change 1")
    assert "disabled" in bot.reply_text(url)
    with bot.services.sessions() as session:
        assert verify(session).ok
        actions = [e.action for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
        results = session.scalars(select(AuditEvent).where(AuditEvent.action == "change.results")).first()
    for expected in ("change.requested", "change.approve_refused", "change.approval", "change.approved",
                     "change.applying", "change.results", "change.applied"):
        assert expected in actions
    assert results.details["results"][0]["before"]["ethtool-tx"] == "disabled"
    assert results.details["results"][0]["after"]["ethtool-tx"] == "off"


def test_double_click_applies_once(sim, change_bot):
    bot = change_bot
    bot.command("offload off vm=centos7-db01 modes=tx", user=REQUESTER)
    approval_card(bot, 1)
    sim.reset_call_counts()
    bot.click(Action.APPROVE, "1", user=LEAD, channel=APPROVALS)
    bot.click(Action.APPROVE, "1", user=LEAD, channel=APPROVALS)
    wait_state(bot, 1, "applied")
    time.sleep(0.5)
    assert sim.call_counts().get("VIF.add_to_other_config") == 1
    with bot.services.sessions() as session:
        assert len(session.scalars(select(ChangeResult)).all()) == 1


def test_reject_and_cancel_and_dead_buttons(change_bot):
    bot = change_bot
    bot.command("offload off vm=win2003-legacy", user=REQUESTER)
    approval_card(bot, 1)
    bot.command("offload off vm=winxp-scada", user=REQUESTER)
    approval_card(bot, 2)
    _, url = bot.click(Action.REJECT, "1", user="U999", channel=APPROVALS)
    assert "not an approver" in bot.reply_text(url)
    bot.click(Action.REJECT, "1", user=LEAD, channel=APPROVALS)
    wait_state(bot, 1, "rejected")
    _, url = bot.click(Action.CANCEL, "2", user="U999", channel=APPROVALS)
    assert "only the requester" in bot.reply_text(url)
    bot.click(Action.CANCEL, "2", user=REQUESTER, channel=APPROVALS)
    wait_state(bot, 2, "cancelled")
    _, url = bot.click(Action.APPROVE, "1", user=LEAD, channel=APPROVALS)
    assert "already rejected" in bot.reply_text(url)


def test_invalid_modes_and_nothing_to_do(change_bot):
    bot = change_bot
    _, url = bot.command("offload off vm=win7-kiosk modes=gro", user=REQUESTER)
    assert "cannot be set on VIFs" in bot.reply_text(url)
    _, url = bot.command("offload off vm=win7-kiosk modes=tx,turbo", user=REQUESTER)
    assert "valid modes" in bot.reply_text(url)
    _, url = bot.command("offload off vm=pfsense-fw01 modes=tx", user=REQUESTER)
    assert "waiting for approval" in bot.reply_text(url)  # the DMZ VIF still has tx on
    _, url = bot.command("offload off vm=ubuntu-build02 modes=tx", user=REQUESTER)
    assert "Nothing to change" in bot.reply_text(url)
    _, url = bot.command("offload off", user=REQUESTER)
    assert "needs one of" in bot.reply_text(url)


def test_group_approver_and_required_approvals(sim, fake_slack, db_url):
    fake_slack.add_user("U0A", name="a")
    fake_slack.add_user("U0B", name="b")
    fake_slack.add_usergroup("S0LEADS", ["U0A", "U0B"])
    settings = bot_settings(
        {"demo": sim}, fake_slack, db_url, approvers=["S0LEADS"], approvals_channel=APPROVALS, required_approvals=2
    )
    with running_bot(settings, fake_slack) as bot:
        bot.command("offload off vm=win2019-dc01", user=REQUESTER)
        approval_card(bot, 1)
        _, url = bot.click(Action.APPROVE, "1", user="U0A", channel=APPROVALS)
        assert "needs another approver" in bot.reply_text(url)
        _, url = bot.click(Action.APPROVE, "1", user="U0A", channel=APPROVALS)
        assert "already approved" in bot.reply_text(url)
        assert wait_state(bot, 1, "pending")
        bot.click(Action.APPROVE, "1", user="U0B", channel=APPROVALS)
        wait_state(bot, 1, "applied")
