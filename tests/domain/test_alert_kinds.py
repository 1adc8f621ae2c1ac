"""Pure checks of issue 16's notification kinds and intake rules (the end-to-end replay is in tests/handlers)."""

from __future__ import annotations

from typing import Any

import pytest

from bot.domain.alerts import message_text, parse_alert
from bot.domain.alerts.common import is_good_color, normal_color
from bot.domain.alerts.intake import Installation, IntakePolicy, audience, refusal
from bot.domain.alerts.webhook import WebhookError, read_webhook
from tests.handlers import tool_corpus as corpus

US = Installation(team_id="T123", app_id="A0XENBOT", bot_ids=frozenset({"B0BOT", "U0BOT"}))
ENVELOPE = {"team_id": "T123", "api_app_id": "A0XENBOT", "is_ext_shared_channel": False}


@pytest.mark.parametrize(("given", "normal", "good"), [
    ("#2EB886", "2eb886", True), ("2eb886", "2eb886", True), ("good", "2eb886", True), ("#009900", "009900", True),
    ("36a64f", "36a64f", True), ("danger", "a30200", False), ("#E97659", "e97659", False), ("", None, False),
    (None, None, False),
])
def test_colours_as_slack_delivers_them(given, normal, good):
    assert normal_color(given) == normal and is_good_color(given) is good


def test_icinga_reminder_is_the_same_alert_and_an_acknowledgement_is_an_update():
    problem = parse_alert(corpus.icinga("PROBLEM", " transitioned from state OK to state CRITICAL", "h1",
                                        "CRITICAL - eth0 discards in=9 out=9", "red_circle"))
    reminder = parse_alert(corpus.icinga("PROBLEM", " is still in state CRITICAL", "h1",
                                         "CRITICAL - eth0 discards in=9 out=9", "red_circle"))
    ack = parse_alert(corpus.icinga("ACKNOWLEDGEMENT", " is still in state CRITICAL", "h1",
                                    "CRITICAL - eth0 discards in=9 out=9", "ok"))
    assert problem and reminder and ack
    assert problem.identity == reminder.identity == ack.identity
    assert (reminder.status, reminder.update, ack.update) == ("firing", False, True)


def test_nagios_webhook_state_is_its_emoji():
    critical = parse_alert(corpus.nagios(":exclamation:", "CRITICAL - eth0 rx_dropped=340"))
    ok = parse_alert(corpus.nagios(":white_check_mark:", "OK - eth0 rx_dropped=0"))
    assert critical and ok and critical.identity == ok.identity
    assert (critical.status, ok.status, ok.source, ok.target) == ("firing", "resolved", "nagios", "ubuntu-web02")


def test_zabbix_update_is_not_a_firing():
    update = parse_alert(corpus.zabbix("Updated problem in 12m: Interface Ethernet 2: High inbound discards",
                                       "e97659", "In: 1498 packets", update="acknowledged"))
    assert update is not None and update.update and update.target == "win2019-dc01"


def test_prtg_default_template_down_and_up_share_an_identity():
    down = parse_alert(corpus.prtg("Down (for 5 m)", "152 #/s is above the error limit of 10 #/s in Discards In"))
    assert parse_alert(corpus.prtg("Up", "OK")) is None  # no discards named: only a follow-up of a known alert
    up = parse_alert(corpus.prtg("Up", "OK"), any_topic=True)
    assert down and up and down.identity == up.identity
    assert (down.status, down.rx, down.unit, up.status) == ("firing", 152.0, "pkt/s", "resolved")
    assert down.interface == "Citrix PV Network Adapter #0"


def test_grouped_alertmanager_reads_members_and_never_takes_the_nic_for_a_vm():
    grouped = parse_alert(corpus.am(corpus.AM_GROUP_TITLE, "a30200", corpus.AM_GROUP_TEXT))
    assert grouped is not None and grouped.count == 2
    assert [(m.target, m.interface) for m in grouped.members] == [
        ("win7-kiosk", "Citrix_PV_Network_Adapter__0"), ("win2003-legacy", "Citrix_PV_Network_Adapter__0")]
    bare = parse_alert(corpus.am(corpus.AM_GROUP_TITLE, "a30200"))
    assert bare is not None and bare.target == "" and bare.members == ()
    single = parse_alert(corpus.am(f"[FIRING:1] {corpus.AM_KIOSK}", "a30200"))
    assert single is not None and (single.target, single.interface) == ("win7-kiosk", "Citrix_PV_Network_Adapter__0")


def test_grafana_is_labelled_grafana_and_shares_the_webhook_identity():
    title = "[FIRING:1] NetworkReceiveDiscards Linux (eth0 centos7-db01:9100 node)"
    slack = parse_alert(corpus.grafana(title, True, "**Firing**\n" + corpus._grafana_alert("centos7-db01:9100", 152)))
    assert slack is not None and slack.source == "grafana"
    group = read_webhook("grafana", {"alerts": [{"status": "firing", "labels": {
        "alertname": "NetworkReceiveDiscards", "device": "eth0", "instance": "centos7-db01:9100"}}]})
    assert [a.identity for a in group.alerts] == [slack.identity]


def test_any_xenbots_reply_is_never_an_alert():
    staging = corpus.staging_xenbot_diagnosis()
    assert message_text(staging).xenbot
    assert parse_alert(staging) is None and parse_alert(staging, any_topic=True) is None


def test_webhook_body_errors():
    for bad in (None, [], {"alerts": "x"}, {"alerts": [{}] * 501}):
        with pytest.raises(WebhookError):
            read_webhook("alertmanager", bad)


def _zbx() -> dict[str, Any]:
    return corpus.zabbix("Problem: Interface Ethernet 2: High inbound discards", "e97659", "In: 1 packets")


@pytest.mark.parametrize(("event", "envelope", "policy", "why"), [
    (_zbx(), {}, IntakePolicy(), None),
    (corpus.person("1,520 discards on win7-kiosk"), {}, IntakePolicy(), "a person, not a monitoring tool"),
    (corpus.person("1,520 discards on win7-kiosk"), {}, IntakePolicy(accept_people=True), None),
    (_zbx(), {"api_app_id": "A0OTHER"}, IntakePolicy(), "delivered for another app (A0OTHER)"),
    (_zbx(), {"team_id": "T0OTHER"}, IntakePolicy(), "delivered for another team (T0OTHER)"),
    (_zbx(), {"is_ext_shared_channel": True}, IntakePolicy(), "externally shared channel"),
    (_zbx(), {"is_ext_shared_channel": True}, IntakePolicy(allow_shared_channels=True), None),
    (corpus.app_post("Zabbix", team="T0OTHER"), {}, IntakePolicy(), "sent from another team (T0OTHER)"),
    (corpus.app_post("Zabbix", team="T0OTHER"), {}, IntakePolicy(allowed_teams=("T0OTHER",)), None),
    (_zbx(), {}, IntakePolicy(sources=("Alertmanager",)), "not one of alerts.sources"),
    (_zbx(), {}, IntakePolicy(sources=("A0ZBX",)), None),
    (corpus.am("[FIRING:1] x", "a30200"), {}, IntakePolicy(sources=("Alertmanager",)), None),
    (corpus.edited(corpus.person("typo"), text="fixed"), {}, IntakePolicy(), "a person, not a monitoring tool"),
])
def test_who_counts_as_a_monitoring_sender(event, envelope, policy, why):
    assert refusal({**ENVELOPE, **envelope}, event, US, policy) == why


@pytest.mark.parametrize(("allowed", "operators", "shared", "seen"), [
    ((), (), False, "full"),
    ((), ("U0OPS",), False, "summary"),
    (("C0OPS",), (), False, "summary"),
    (("C0OPS", "C0ALERTS"), ("U0OPS",), False, "full"),
    (("C0OPS", "C0ALERTS"), (), True, "summary"),
])
def test_what_the_audience_may_see(allowed, operators, shared, seen):
    assert audience("C0ALERTS", allowed_channels=allowed, operators=operators, shared=shared) == seen


def test_grafana_group_with_firing_and_resolved_alerts():
    body = ("**Firing**\n" + corpus._grafana_alert("centos7-db01:9100", 152)
            + "\n\n**Resolved**\n" + corpus._grafana_alert("ubuntu-web01:9100", 0))
    grouped = parse_alert(corpus.grafana("[FIRING:1, RESOLVED:1] NetworkReceiveDiscards Linux (eth0 node)", True, body))
    assert grouped is not None and grouped.count == 2
    assert [(m.target, m.status) for m in grouped.members] == [("centos7-db01", "firing"), ("ubuntu-web01", "resolved")]
