"""An alert flood while Slack is slow: commands and approval clicks are answered at once, the
channel's backlog is bounded and the rest is summarised in one message."""

from __future__ import annotations

import re
import time

from bot.render.ids import Action
from bot.settings import ServingSettings
from tests.handlers.harness import APPROVALS, LEAD, REQUESTER, approval_card, bot_settings, running_bot, wait_state
from tests.handlers.test_alert_flow import ALERTS, icinga

FLOOD = 100
BOUND = 4
SUMMARY = re.compile(r"and (\d+) more discard alerts, summarised here")


def test_an_alert_flood_does_not_hold_up_commands_or_clicks(sim, fake_slack, db_url):
    settings = bot_settings({"demo": sim}, fake_slack, db_url, alert_channels=[ALERTS], approvers=[LEAD],
                            approvals_channel=APPROVALS)
    settings = settings.model_copy(update={"serving": ServingSettings(alert_queue_per_channel=BOUND)})
    with running_bot(settings, fake_slack) as bot:
        _, url = bot.command("offload off vm=win7-kiosk", user=REQUESTER)
        bot.reply_text(url)
        approval_card(bot, 1)

        fake_slack.delay_next("chat.postMessage", 1.0, count=10_000)  # Slack takes a second per post
        for n in range(FLOOD):
            assert bot.event(icinga(f"flood-host-{n:03d}", f"1710100{n:03d}.000100"), event_id=f"EvFlood{n}") == 200

        started = time.monotonic()
        _, url = bot.command("vms")
        assert "win7-kiosk" in bot.reply_text(url, timeout=10)
        assert time.monotonic() - started < 2.5, "the command waited behind the alerts"

        started = time.monotonic()
        bot.click(Action.APPROVE, "1", user=LEAD, channel=APPROVALS)
        wait_state(bot, 1, "approved", "applying", "applied", timeout=10)
        assert time.monotonic() - started < 2.5, "the approval waited behind the alerts"

        deadline = time.monotonic() + 30
        while True:
            posts = [c.args for c in fake_slack.calls("chat.postMessage") if c.args.get("channel") == ALERTS]
            answered = sum(1 for p in posts if p.get("thread_ts"))
            summarised = sum(int(m.group(1)) for p in posts if (m := SUMMARY.search(str(p.get("text")))))
            if answered + summarised == FLOOD:
                break
            assert time.monotonic() < deadline, f"{answered} answered and {summarised} summarised of {FLOOD}"
            time.sleep(0.05)
        assert answered <= 2 * BOUND and summarised >= FLOOD - 2 * BOUND
        fake_slack.clear_faults()
