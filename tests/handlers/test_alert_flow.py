"""Discard alerts end to end: events signed over HTTP, diagnosis from the demo pool, replies in threads."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.db.models import AlertRecord
from bot.render.ids import Action
from tests.handlers.harness import APPROVALS, LEAD, REQUESTER, approval_card, bot_settings, running_bot
from tests.slack.signing import DEFAULT_TEAM_ID

CORPUS = Path(__file__).parent.parent / "domain" / "alert_corpus"
ALERTS = "C0ALERTS"


def corpus(name: str) -> dict[str, Any]:
    """A corpus event, moved into the fake's workspace (the corpus was written for team T0CORP)."""
    return json.loads((CORPUS / f"{name}.json").read_text().replace('"T0CORP"', f'"{DEFAULT_TEAM_ID}"'))


def icinga(host: str, ts: str, rx: int = 1200, tx: int = 1200) -> dict[str, Any]:
    event = corpus("icinga_problem")
    event["text"] = (
        f"PROBLEM: Service <https://icinga.corp.lan/x|Interface discards> transitioned from state OK to state "
        f"CRITICAL on host <https://icinga.corp.lan/h|{host}>. Plugin output: CRITICAL - eth0 discards "
        f"in={rx} out={tx}"
    )
    event["ts"] = event["event_ts"] = ts
    return event


@pytest.fixture
def alert_bot(sim, fake_slack, db_url):
    settings = bot_settings(
        {"demo": sim}, fake_slack, db_url, alert_channels=[ALERTS], approvers=[LEAD, REQUESTER],
        approvals_channel=APPROVALS,
    )
    with running_bot(settings, fake_slack) as bot:
        yield bot


def thread_replies(bot, ts: str, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
    calls = bot.fake.wait_for(
        "chat.postMessage", count=count, timeout=timeout, predicate=lambda c: c.args.get("thread_ts") == ts
    )
    return [c.args for c in calls]


def text_of(message: dict[str, Any]) -> str:
    return str(message.get("text")) + json.dumps(message.get("blocks"), ensure_ascii=False)


def test_windows_2008_alert_gets_one_benign_diagnosis_fast(alert_bot):
    bot = alert_bot
    event = corpus("zabbix_problem")
    started = time.monotonic()
    assert bot.event(event, event_id="Ev100") == 200
    reply = thread_replies(bot, event["ts"])[0]
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"reply took {elapsed:.2f} s"
    text = text_of(reply)
    assert "Very likely harmless" in text and "high confidence" in text
    assert "win2008r2-sql01" in text and "Windows Server 2008 R2" in text
    assert Action.MUTE in text and Action.SHOW_VIFS in text and Action.DISABLE_OFFLOAD not in text
    # Slack retries the same event: no second answer.
    assert bot.event(event, event_id="Ev100", retry=1) == 200
    # The tool posts the same alert again (new event): one short line in the same thread.
    repeat = copy.deepcopy(event)
    repeat["ts"] = "1710153800.000100"
    bot.event(repeat, event_id="Ev101")
    replies = thread_replies(bot, event["ts"], count=2)
    assert "Fired again" in text_of(replies[1])
    # Zabbix resolves by editing the original message.
    bot.event(corpus("zabbix_resolved_edit"), event_id="Ev102")
    replies = thread_replies(bot, event["ts"], count=3)
    assert "Resolved" in text_of(replies[2])
    time.sleep(0.3)
    assert len([c for c in bot.fake.calls("chat.postMessage") if c.args.get("thread_ts") == event["ts"]]) == 3
    with bot.services.sessions() as session:
        record = session.scalars(select(AlertRecord)).one()
    assert (record.verdict, record.status, record.repeats, record.vm_name) == (
        "benign-driver-artifact", "resolved", 1, "win2008r2-sql01"
    )


@pytest.mark.parametrize(
    ("vm", "rx", "tx", "verdict", "disable"),
    [
        ("win7-kiosk", 500, 500, "Very likely harmless", False),
        ("win2003-legacy", 500, 20, "Probably real discards", False),
        ("winxp-scada", 90, 90, "Probably real discards", False),
        ("pfsense-fw01", 40, 300, "Known FreeBSD problem", True),
        # No guest metrics on a running VM is "not known yet" (VM.start deletes them until the agent
        # reports, xapi_vm.ml), not "no PV drivers": no verdict is built on it.
        ("win2012r2-nopv", 40, 40, "Cause unknown", False),
        ("ubuntu-web01.corp.lan", 40, 10, "Cause unknown", False),
    ],
)
def test_diagnoses_of_the_demo_vms(alert_bot, vm, rx, tx, verdict, disable):
    bot = alert_bot
    event = icinga(vm, "1710160000.000100", rx, tx)
    bot.event(event, event_id=f"Ev-{vm}")
    text = text_of(thread_replies(bot, event["ts"])[0])
    assert verdict in text, text[:600]
    assert (Action.DISABLE_OFFLOAD in text) is disable
    if disable:
        assert "Disable tx offload" in text


def test_non_discard_own_and_unknown_messages(alert_bot):
    bot = alert_bot
    bot.event(corpus("zabbix_non_discard"), event_id="Ev200")
    own = icinga("win7-kiosk", "1710170000.000100")
    own["bot_id"] = "B0BOT"
    bot.event(own, event_id="Ev201")
    unknown = icinga("win7-kiosc", "1710170001.000100")
    bot.event(unknown, event_id="Ev202")
    text = text_of(thread_replies(bot, unknown["ts"])[0])
    assert "could not find 'win7-kiosc'" in text and "win7-kiosk" in text
    time.sleep(0.3)
    assert len(bot.fake.calls("chat.postMessage")) == 1


def test_buttons_mute_show_vifs_and_disable_offload(alert_bot):
    bot = alert_bot
    event = icinga("pfsense-fw01", "1710180000.000100", 10, 300)
    bot.event(event, event_id="Ev300")
    reply = thread_replies(bot, event["ts"])[0]
    values = {e["action_id"]: e["value"] for b in reply["blocks"] if b["type"] == "actions" for e in b["elements"]}
    _, url = bot.click(Action.SHOW_VIFS, values[Action.SHOW_VIFS], channel=ALERTS)
    assert "VIFs of pfsense-fw01" in bot.reply_text(url)
    _, url = bot.click(Action.DISABLE_OFFLOAD, values[Action.DISABLE_OFFLOAD], user=REQUESTER, channel=ALERTS)
    assert "waiting for approval" in bot.reply_text(url)
    card = approval_card(bot, 1)
    assert "ethtool-tx" in str(card) and "ethtool-rx" not in str(card)
    _, url = bot.click(Action.MUTE, values[Action.MUTE], user=REQUESTER, channel=ALERTS)
    assert "muted until" in bot.reply_text(url)
    again = icinga("pfsense-fw01", "1710180100.000100", 10, 300)
    again["text"] = again["text"].replace("Interface discards", "WAN discards")  # a different alert, same VM
    bot.event(again, event_id="Ev301")
    assert "muted until" in text_of(thread_replies(bot, again["ts"])[0])


def test_explain_and_alerts_commands(alert_bot):
    bot = alert_bot
    _, url = bot.command("explain win7-kiosk rx=100 tx=100")
    text = bot.reply_text(url)
    assert "Very likely harmless" in text and "high confidence" in text
    _, url = bot.command("explain win7-kiosk rx=lots")
    assert "needs a number" in bot.reply_text(url)
    bot.event(corpus("zabbix_problem"), event_id="Ev400")
    thread_replies(bot, corpus("zabbix_problem")["ts"])
    _, url = bot.command("alerts")
    listing = bot.reply_text(url)
    assert "win2008r2-sql01" in listing and "benign-driver-artifact" in listing


def test_alerts_ignored_outside_alert_channels(sim, fake_slack, db_url):
    settings = bot_settings({"demo": sim}, fake_slack, db_url, alert_channels=["C0OTHER"])
    with running_bot(settings, fake_slack) as bot:
        bot.event(corpus("zabbix_problem"), event_id="Ev500")
        time.sleep(0.5)
        assert bot.fake.calls("chat.postMessage") == []
