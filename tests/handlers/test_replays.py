"""A signed slash command or click delivered again (a replay within the signature's five
minutes, or Slack's second delivery) runs once, even when the copies reach two replicas."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from bot.db import deliveries
from bot.db.models import ChangeApproval, ChangeRequest, SlackDelivery
from bot.render.ids import Action
from bot.services.housekeeping import Housekeeper
from tests.handlers.harness import APPROVALS, LEAD, REQUESTER, bot_settings, running_bot, wait_state
from tests.handlers.test_alert_flow import ALERTS, corpus
from tests.slack.fixtures import SIGNING_SECRET
from tests.slack.signing import block_actions, post_signed, slash_command


def _drops(caplog, count: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while sum("dropping repeated delivery of trigger:" in r.getMessage() for r in caplog.records) < count:
        assert time.monotonic() < deadline, "the replays were not dropped"
        time.sleep(0.02)


def _count(bot, model) -> int:
    with bot.services.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_replayed_command_and_click_run_once_across_two_replicas(sim, fake_slack, db_url, caplog):
    caplog.set_level(logging.INFO)
    settings = bot_settings({"demo": sim}, fake_slack, db_url, approvers=[LEAD], approvals_channel=APPROVALS)
    with running_bot(settings, fake_slack) as first, running_bot(settings, fake_slack) as second:
        command = slash_command("offload off vm=win7-kiosk", user_id=REQUESTER,
                                response_url=fake_slack.response_url(user_id=REQUESTER))
        for bot in (first, second, first):  # the same signed bytes, three times
            assert post_signed(bot.url, command, SIGNING_SECRET)[0] == 200
        wait_state(first, 1, "pending")
        _drops(caplog, 2)
        assert _count(first, ChangeRequest) == 1

        click = block_actions(Action.APPROVE, "1", user_id=LEAD, channel_id=APPROVALS,
                              response_url=fake_slack.response_url(channel_id=APPROVALS, user_id=LEAD))
        for bot in (second, first):
            assert post_signed(bot.url, click, SIGNING_SECRET)[0] == 200
        _drops(caplog, 3)
        wait_state(first, 1, "applied", "partially_failed", "failed")
        assert _count(first, ChangeApproval) == 1


def test_the_housekeeper_forgets_old_deliveries(change_bot):
    sessions = change_bot.services.sessions
    now = datetime.now(UTC)
    assert deliveries.claim(sessions, "trigger:old", now - deliveries.KEEP - timedelta(minutes=1))
    assert deliveries.claim(sessions, "trigger:new", now)
    assert not deliveries.claim(sessions, "trigger:new", now)
    Housekeeper(change_bot.services.changes, change_bot.services.apply).run_once()
    with sessions() as session:
        assert session.scalars(select(SlackDelivery.key)).all() == ["trigger:new"]


def test_an_event_retried_to_the_other_replica_is_answered_once(sim, fake_slack, db_url, caplog):
    """Slack's retry (X-Slack-Retry-Num, same event_id) reaching another replica: the event id is
    claimed in the database (alert_delivery), so the second replica drops it."""
    caplog.set_level(logging.INFO)
    settings = bot_settings({"demo": sim}, fake_slack, db_url, alert_channels=[ALERTS])
    with running_bot(settings, fake_slack) as first, running_bot(settings, fake_slack) as second:
        event = corpus("zabbix_problem")
        assert first.event(event, event_id="EvRetried") == 200
        fake_slack.wait_for("chat.postMessage", timeout=20, predicate=lambda c: c.args.get("thread_ts") == event["ts"])
        assert second.event(event, event_id="EvRetried", retry=1) == 200
        deadline = time.monotonic() + 15
        while not any("EvRetried: duplicate" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the retry was not handled"
            time.sleep(0.02)
        assert len([c for c in fake_slack.calls("chat.postMessage") if c.args.get("thread_ts") == event["ts"]]) == 1
