"""Who may raise an alert and what an alert channel's audience sees (issue 16 §1), end to end over HTTP."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from bot.render.ids import Action
from tests.handlers.harness import bot_settings, running_bot
from tests.handlers.tool_corpus import ALERTS, icinga, person
from tests.slack.fixtures import SIGNING_SECRET
from tests.slack.signing import event_callback_payload, post_signed

OPS = "C0OPS"
OPERATOR = "U0OPS"
VISITOR = "U0VISIT"


def send(bot: Any, event: dict[str, Any], event_id: str, **envelope: Any) -> None:
    payload = event_callback_payload(event, event_id=event_id)
    payload.update(envelope)
    status, _h, _b = post_signed(bot.url, json.dumps(payload).encode(), SIGNING_SECRET)
    assert status == 200


def outcome(caplog: pytest.LogCaptureFixture, event_id: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in list(caplog.records):
            text = record.getMessage()
            if text.startswith(f"alert channel message {event_id}: "):
                return text.rsplit(": ", 1)[1]
        time.sleep(0.02)
    raise AssertionError(f"no outcome for {event_id}")


def reply_to(bot: Any, ts: str) -> str:
    call = bot.fake.wait_for("chat.postMessage", predicate=lambda c: c.args.get("thread_ts") == ts)[-1]
    return str(call.args.get("text")) + json.dumps(call.args.get("blocks"), ensure_ascii=False)


def discards(host: str) -> dict[str, Any]:
    return icinga("PROBLEM", " transitioned from state OK to state CRITICAL", host,
                  "CRITICAL - eth0 discards in=500 out=500", "red_circle")


@pytest.fixture
def restricted(sim, fake_slack, db_url, caplog):
    """xenbot limited to #ops and its operators; the alert channel is not one of its channels."""
    caplog.set_level(logging.INFO, logger="handlers.events")
    settings = bot_settings({"demo": sim}, fake_slack, db_url, alert_channels=[ALERTS], allowed_channels=[OPS],
                            operators=[OPERATOR])
    with running_bot(settings, fake_slack) as bot:
        yield bot


def test_summary_diagnosis_where_the_audience_may_not_run_explain(restricted, caplog):
    bot = restricted
    event = discards("win7-kiosk")
    send(bot, event, "EvA1")
    text = reply_to(bot, event["ts"])
    assert "Very likely harmless" in text and "VM *win7-kiosk*" in text
    assert "Windows 7" not in text and "PV drivers" not in text and "Why:" not in text
    assert "/xen explain win7-kiosk" in text
    unknown = discards("win7-kiosc")
    send(bot, unknown, "EvA2")
    text = reply_to(bot, unknown["ts"])
    assert "could not find 'win7-kiosc'" in text
    assert "Closest names" not in text and "win7-kiosk" not in text.replace("win7-kiosc", "")
    host = discards("xcp-host1")
    send(bot, host, "EvA3")
    text = reply_to(bot, host["ts"])
    assert "is a host, not a VM" in text
    assert "Pool-wide network" not in text and "NETWORK" not in text and "eth0" not in text.split("not a VM")[1]


def test_alert_buttons_work_in_the_alert_channel_and_are_checked_like_any_click(restricted):
    bot = restricted
    event = discards("pfsense-fw01")
    send(bot, event, "EvB1")
    call = bot.fake.wait_for("chat.postMessage", predicate=lambda c: c.args.get("thread_ts") == event["ts"])[-1]
    values = {e["action_id"]: e["value"] for b in call.args["blocks"] if b["type"] == "actions"
              for e in b["elements"]}
    _, url = bot.click(Action.SHOW_VIFS, values[Action.SHOW_VIFS], user=OPERATOR, channel=ALERTS)
    assert "VIFs of pfsense-fw01" in bot.reply_text(url)
    _, url = bot.click(Action.SHOW_VIFS, values[Action.SHOW_VIFS], user=VISITOR, channel=ALERTS)
    assert "not on xenbot's operator list" in bot.reply_text(url)
    _, url = bot.click(Action.MUTE, values[Action.MUTE], user=OPERATOR, channel="C0ELSEWHERE")
    assert "not enabled in this channel" in bot.reply_text(url)
    # Other buttons are not widened: a command in the alert channel is still refused.
    _, url = bot.command("vms", user=OPERATOR, channel=ALERTS)
    assert "not enabled in this channel" in bot.reply_text(url)


def test_full_diagnosis_where_the_alert_channel_is_one_of_xenbots(sim, fake_slack, db_url, caplog):
    caplog.set_level(logging.INFO, logger="handlers.events")
    settings = bot_settings({"demo": sim}, fake_slack, db_url, alert_channels=[ALERTS], allowed_channels=[OPS, ALERTS],
                            operators=[OPERATOR])
    with running_bot(settings, fake_slack) as bot:
        event = discards("win7-kiosk")
        send(bot, event, "EvC1")
        assert "Windows 7" in reply_to(bot, event["ts"])
        unknown = discards("win7-kiosc")
        send(bot, unknown, "EvC2")
        assert "Closest names: win7-kiosk" in reply_to(bot, unknown["ts"])
        shared = discards("win7-kiosk")
        shared["text"] = shared["text"].replace("Interface discards", "WAN discards")
        send(bot, shared, "EvC3", is_ext_shared_channel=True)
        assert outcome(caplog, "EvC3") == "ignored"


def test_people_and_sources(sim, fake_slack, db_url, caplog):
    caplog.set_level(logging.INFO, logger="handlers.events")
    settings = bot_settings({"demo": sim}, fake_slack, db_url, alert_channels=[ALERTS])
    settings = settings.model_copy(update={"alerts": settings.alerts.model_copy(
        update={"accept_people": True, "sources": ["B0ICINGA", "U0ALICE"]})})
    with running_bot(settings, fake_slack) as bot:
        typed = person("seeing 1,520 discarded packets rx on win7-kiosk since 9:00")
        send(bot, typed, "EvD1")
        assert "VM *win7-kiosk*" in reply_to(bot, typed["ts"])
        send(bot, discards("winxp-scada"), "EvD2")
        assert outcome(caplog, "EvD2") == "new"
        other = discards("win2003-legacy")
        other["bot_id"], other["username"] = "B0UNLISTED", "icinga-test"
        send(bot, other, "EvD3")
        assert outcome(caplog, "EvD3") == "ignored"


def test_another_app_or_team_is_not_an_alert(sim, fake_slack, db_url, caplog):
    caplog.set_level(logging.INFO, logger="handlers.events")
    settings = bot_settings({"demo": sim}, fake_slack, db_url, alert_channels=[ALERTS])
    with running_bot(settings, fake_slack) as bot:
        send(bot, discards("win7-kiosk"), "EvE1", api_app_id="A0OTHER")
        assert outcome(caplog, "EvE1") == "ignored"
        send(bot, discards("win7-kiosk"), "EvE2", team_id="T0OTHER")
        assert outcome(caplog, "EvE2") == "ignored"
        foreign = discards("win7-kiosk")
        foreign["user_team"] = foreign["source_team"] = "T0OTHER"
        send(bot, foreign, "EvE3")
        assert outcome(caplog, "EvE3") == "ignored"
        send(bot, discards("win7-kiosk"), "EvE4")
        assert outcome(caplog, "EvE4") == "new"


@pytest.mark.parametrize("target", ["10.10.0.51", "win7-kiosk.corp.lan", "win7-kiosk:9182", "10.10.0.51:9182",
                                    "<http://win7-kiosk.corp.lan|win7-kiosk.corp.lan>", "WIN7-KIOSK"])
def test_explain_takes_what_alerts_take(sim, fake_slack, db_url, target):
    settings = bot_settings({"demo": sim}, fake_slack, db_url, alert_channels=[ALERTS])
    with running_bot(settings, fake_slack) as bot:
        _, url = bot.command(f"explain {target} rx=100 tx=100")
        text = bot.reply_text(url)
        assert "VM *win7-kiosk*" in text, text[:400]


def test_explain_takes_a_uuid(sim, fake_slack, db_url):
    settings = bot_settings({"demo": sim}, fake_slack, db_url, alert_channels=[ALERTS])
    with running_bot(settings, fake_slack) as bot:
        inventory = bot.services.inspection.inventories()[0][0]
        vm = next(v for v in inventory.vms.values() if v.name == "win7-kiosk")
        _, url = bot.command(f"explain {vm.uuid}")
        assert "VM *win7-kiosk*" in bot.reply_text(url)


def test_a_vm_named_like_a_mention_stays_inert_and_our_own_mentions_stay_live(sim, fake_slack, db_url):
    from dataclasses import replace
    from datetime import UTC, datetime

    from bot.render import alerts as render
    from tests.handlers.harness import APPROVALS, REQUESTER

    settings = bot_settings({"demo": sim}, fake_slack, db_url, alert_channels=[ALERTS], approvers=["U0LEAD"],
                            approvals_channel=APPROVALS)
    with running_bot(settings, fake_slack) as bot:
        inventory, vm = bot.services.alerts.find_vm("win7-kiosk")
        diagnosis = bot.services.alerts.diagnose_vm(inventory, vm, None)
        reply = render.muted(replace(vm, name="<@U0VISIT> kiosk"), datetime(2030, 1, 1, tzinfo=UTC), "U0VISIT",
                             diagnosis)
        shown = json.dumps(reply.blocks) + (reply.fallback or "")
        assert shown.count("<@U0VISIT>") == 2  # once in the blocks, once in the notification: the muter only
        assert "&lt;@U0VISIT&gt; kiosk" in shown
        # The plain-text notification of a request started under a diagnosis links the approvals channel.
        event = discards("pfsense-fw01")
        send(bot, event, "EvF1")
        call = bot.fake.wait_for("chat.postMessage", predicate=lambda c: c.args.get("thread_ts") == event["ts"])[-1]
        values = {e["action_id"]: e["value"] for b in call.args["blocks"] if b["type"] == "actions"
                  for e in b["elements"]}
        _, url = bot.click(Action.DISABLE_OFFLOAD, values[Action.DISABLE_OFFLOAD], user=REQUESTER, channel=ALERTS)
        answer = bot.replies(url)[-1]
        assert f"waiting for approval in <#{APPROVALS}>" in answer["text"]
        assert "&lt;#" not in answer["text"]
