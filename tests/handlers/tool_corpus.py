"""What monitoring tools really post in Slack, as Slack delivers it, with the one right answer to each.

Each message is written from the tool's own code and default template (cited
per tool below), then shaped as Slack's Events API delivers it: classic
incoming webhooks arrive as ``subtype: bot_message`` with the sender's
``username``; apps posting with ``chat.postMessage`` arrive with ``bot_id`` and
``bot_profile``; ``chat.update`` arrives as ``message_changed`` with
``previous_message``; attachment colours arrive as hex without ``#`` (Slack
turns ``good``/``danger`` into ``2eb886``/``a30200``); text arrives HTML-escaped
with links as ``<url|label>``.

A :class:`Case` is a short story in one alert channel (firing, reminder,
acknowledgement, resolution…); every :class:`Step` says how many replies
xenbot posts for that message (0 included), what they say, and in which thread.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

ALERTS = "C0ALERTS"
TEAM = "T123"  # the fake Slack's workspace (tests/slack/fake_slack.py)

_ts = iter(range(1, 10_000))


def ts() -> str:
    return f"1710200{next(_ts):03d}.000100"


@dataclass
class Step:
    name: str
    event: dict[str, Any]
    replies: int
    says: tuple[str, ...] = ()
    never: tuple[str, ...] = ()
    thread: str | None = None  # the step whose message the replies are threaded under; None: this one
    envelope: dict[str, Any] = field(default_factory=dict)  # event_callback fields to override


@dataclass
class Case:
    name: str
    steps: list[Step]
    stale: str | None = None  # before this step, the alert was last heard of two days ago


def webhook(username: str, *, text: str = "", attachments: list[dict[str, Any]] | None = None,
            bot_id: str = "B0HOOK", thread_ts: str | None = None) -> dict[str, Any]:
    """A classic incoming-webhook post (Alertmanager, Icinga2, Nagios, LibreNMS, PRTG scripts)."""
    when = ts()
    event: dict[str, Any] = {
        "type": "message", "subtype": "bot_message", "text": text, "username": username, "bot_id": bot_id,
        "ts": when, "channel": ALERTS, "event_ts": when, "channel_type": "channel",
    }
    if attachments is not None:
        event["attachments"] = attachments
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def app_post(name: str, *, text: str = "", attachments: list[dict[str, Any]] | None = None,
             bot_id: str = "B0APP", app_id: str = "A0APP", team: str = TEAM,
             thread_ts: str | None = None, blocks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A message posted by an app with chat.postMessage (Zabbix's media type with a bot token, Grafana)."""
    when = ts()
    event: dict[str, Any] = {
        "type": "message", "text": text, "user": "U0" + bot_id[2:], "bot_id": bot_id, "app_id": app_id,
        "bot_profile": {"id": bot_id, "deleted": False, "name": name, "updated": 1700000000, "app_id": app_id,
                        "icons": {"image_36": "https://a.slack-edge.com/80588/img/plugins/app/bot_36.png"},
                        "team_id": team},
        "ts": when, "team": team, "channel": ALERTS, "event_ts": when, "channel_type": "channel",
    }
    if attachments is not None:
        event["attachments"] = attachments
    if blocks is not None:
        event["blocks"] = blocks
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def person(text: str, *, thread_ts: str | None = None, user: str = "U0ALICE") -> dict[str, Any]:
    when = ts()
    event: dict[str, Any] = {
        "client_msg_id": f"c-{when}", "type": "message", "text": text, "user": user, "ts": when, "team": TEAM,
        "blocks": [{"type": "rich_text", "block_id": "b1", "elements": [
            {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}]}],
        "channel": ALERTS, "event_ts": when, "channel_type": "channel",
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
        event["parent_user_id"] = "U0ZBX"
    return event


def edited(original: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """``message_changed`` as Slack delivers a chat.update: the new message and the previous one."""
    when = ts()
    new = {k: v for k, v in copy.deepcopy(original).items() if k not in ("channel", "event_ts", "channel_type")}
    new.update(changes)
    new["edited"] = {"user": original.get("user", original.get("bot_id")), "ts": when}
    previous = {k: v for k, v in original.items() if k not in ("channel", "event_ts", "channel_type")}
    return {"type": "message", "subtype": "message_changed", "message": new, "previous_message": previous,
            "channel": ALERTS, "hidden": True, "ts": when, "event_ts": when, "channel_type": "channel"}


# -- Prometheus Alertmanager: notify/slack/slack.go + template/default.tmpl ------------------------
# title "[FIRING:n] <group label values> (<other common label values>)", no text, fallback "title | url",
# colour danger/good (delivered as a30200/2eb886), username "Alertmanager"; send_resolved defaults to false.

AM_URL = "http://alertmanager.corp.lan:9093/#/alerts?receiver=slack-xen"


def am(title: str, color: str, text: str = "") -> dict[str, Any]:
    return webhook("Alertmanager", bot_id="B0AMGR", attachments=[{
        "id": 1, "color": color, "fallback": f"{title} | {AM_URL}", "title": title, "title_link": AM_URL,
        "text": text, "mrkdwn_in": ["fallback", "pretext", "text"],
    }])


AM_KIOSK = "WindowsNetworkDiscards (win7-kiosk:9182 windows Citrix_PV_Network_Adapter__0 warning)"
# The widespread custom text template: {{ range .Alerts }}*Alert:* … *Details:* • *label:* `value` {{ end }}
AM_GROUP_TEXT = (
    "*Alert:* Guest NIC discards - `warning`\n*Description:* 152 packets/s received and discarded\n*Details:*\n"
    " • *alertname:* `WindowsNetworkDiscards`\n • *instance:* `win7-kiosk:9182`\n • *job:* `windows`\n"
    " • *nic:* `Citrix_PV_Network_Adapter__0`\n • *severity:* `warning`\n\n"
    "*Alert:* Guest NIC discards - `warning`\n*Description:* 40 packets/s received and discarded\n*Details:*\n"
    " • *alertname:* `WindowsNetworkDiscards`\n • *instance:* `win2003-legacy:9182`\n • *job:* `windows`\n"
    " • *nic:* `Citrix_PV_Network_Adapter__0`\n • *severity:* `warning`\n"
)
AM_GROUP_TITLE = "[FIRING:2] WindowsNetworkDiscards (windows Citrix_PV_Network_Adapter__0 warning)"


def alertmanager_cases() -> list[Case]:
    fire = am(f"[FIRING:1] {AM_KIOSK}", "a30200")
    grouped = am(AM_GROUP_TITLE, "a30200", AM_GROUP_TEXT)
    return [
        Case("alertmanager default template: fire, repeat, resolve", [
            Step("firing", fire, 1, ("VM *win7-kiosk*", "win7-kiosk"), ("could not find",)),
            Step("repeat", am(f"[FIRING:1] {AM_KIOSK}", "a30200"), 1, ("Fired again for win7-kiosk",), thread="firing"),
            Step("resolved", am(f"[RESOLVED] {AM_KIOSK}", "2eb886"), 1, ("Resolved: alertmanager",),
                 thread="firing"),
        ]),
        Case("alertmanager send_resolved false: a firing weeks later is a new alert", [
            Step("firing", am(f"[FIRING:1] {AM_KIOSK}", "a30200"), 1, ("VM *win7-kiosk*",)),
            Step("weeks later", am(f"[FIRING:1] {AM_KIOSK}", "a30200"), 1, ("VM *win7-kiosk*",), ("Fired again",)),
        ], stale="weeks later"),
        Case("alertmanager grouped, per-alert lines: one reply, one diagnosis per VM", [
            Step("grouped", grouped, 1, ("VM *win7-kiosk*", "VM *win2003-legacy*"),
                 ("could not find", "Citrix_PV_Network_Adapter__0'")),
            Step("grouped repeat", am(AM_GROUP_TITLE, "a30200", AM_GROUP_TEXT), 1,
                 ("Fired again for win7-kiosk", "Fired again for win2003-legacy")),
        ]),
        Case("alertmanager grouped, default template: says it cannot tell the VMs, once", [
            Step("grouped", am(AM_GROUP_TITLE, "a30200"), 1, ("groups 2 alerts",), ("could not find",)),
            Step("grouped again", am(AM_GROUP_TITLE, "a30200"), 0),
        ]),
        Case("alertmanager: resolved never seen firing, and a CPU alert", [
            Step("resolved unseen", am(
                "[RESOLVED] WindowsNetworkDiscards (winxp-scada:9182 windows Citrix_PV_Network_Adapter__0 warning)",
                "2eb886"), 1, ("not diagnosed",), ("Very likely", "Probably")),
            Step("cpu", am("[FIRING:1] HighCPULoad (ubuntu-web01:9100 node critical)", "a30200"), 0),
            Step("linux drops", am("[FIRING:1] NodeNetworkReceiveDrops (eth0 ubuntu-web01.corp.lan:9100 node warning)",
                                   "a30200"), 1, ("VM *ubuntu-web01*",)),
        ]),
    ]


# -- Grafana: alerting/receivers/slack (v1) + templates/default_template.go ----------------------------
# username "Grafana", colour #D63232/#36a64f (delivered d63232/36a64f), footer "Grafana v…", text default.message.

def grafana(title: str, firing: bool, body: str) -> dict[str, Any]:
    return webhook("Grafana", bot_id="B0GRAF", attachments=[{
        "id": 1, "color": "d63232" if firing else "36a64f", "title": title, "fallback": title,
        "title_link": "https://grafana.corp.lan/alerting/list", "text": body, "footer": "Grafana v11.3.0",
        "footer_icon": "https://grafana.com/static/assets/img/fav32.png", "mrkdwn_in": ["pretext", "text"],
    }])


def _grafana_alert(instance: str, value: int, device: str = "eth0") -> str:
    return (
        f"\nValue: B={value}\nLabels:\n - alertname = NetworkReceiveDiscards\n - device = {device}\n"
        f" - grafana_folder = Linux\n - instance = {instance}\n - job = node\nAnnotations:\n"
        f" - summary = Receive discards on {device}\nSource: https://grafana.corp.lan/alerting/grafana/x/view\n"
        f"Silence: https://grafana.corp.lan/alerting/silence/new?alertmanager=grafana\n"
    )


def grafana_cases() -> list[Case]:
    title = "[FIRING:1] NetworkReceiveDiscards Linux (eth0 centos7-db01:9100 node)"
    return [
        Case("grafana: fire and resolve, labelled from grafana", [
            Step("firing", grafana(title, True, "**Firing**\n" + _grafana_alert("centos7-db01:9100", 152)), 1,
                 ("VM *centos7-db01*",)),
            Step("resolved", grafana("[RESOLVED] NetworkReceiveDiscards Linux (eth0 centos7-db01:9100 node)", False,
                                     "**Resolved**\n" + _grafana_alert("centos7-db01:9100", 0)), 1,
                 ("Resolved: grafana reports",), ("alertmanager",), thread="firing"),
        ]),
        Case("grafana grouped: one reply, two diagnoses", [
            Step("grouped", grafana("[FIRING:2] NetworkReceiveDiscards Linux (eth0 node)", True,
                                    "**Firing**\n" + _grafana_alert("centos7-db01:9100", 152)
                                    + _grafana_alert("ubuntu-web01:9100", 40)), 1,
                 ("VM *centos7-db01*", "VM *ubuntu-web01*")),
            Step("memory", grafana("[FIRING:1] MemoryPressure Linux (ubuntu-web01:9100 node)", True,
                                   "**Firing**\n\nValue: A=97\nLabels:\n - alertname = MemoryPressure\n"), 0),
        ]),
    ]


# -- Zabbix: templates/media/slack/media_slack.yaml (alarm mode, bot token) ---------------------------
# Problem: chat.postMessage, title = subject "Problem: {EVENT.NAME}", fields Host "{HOST.NAME} [{HOST.CONN}]",
# Event time, Severity, Opdata, Event tags, Trigger description; colour SEVERITY_COLORS.
# Update: posted in the problem's thread, subject "Updated problem in {EVENT.AGE}: …", field Details.
# Resolve: chat.update of the problem message, colour RESOLVE_COLOR #009900, subject "Resolved in …: …".

def zabbix(subject: str, color: str, opdata: str, *, update: str | None = None, thread_ts: str | None = None,
           description: str = "Inbound discards above 100 per minute.", tags: str = "interface: Ethernet 2",
           ) -> dict[str, Any]:
    fields = [
        {"title": "Host", "value": "win2019-dc01 [10.10.0.10]", "short": True},
        {"title": "Event time", "value": "2024.03.12 09:15:02", "short": True},
        {"title": "Severity", "value": "Average", "short": True},
        {"title": "Opdata", "value": opdata, "short": True},
    ]
    attachment: dict[str, Any] = {"id": 1, "color": color, "fallback": subject, "title": subject, "pretext": "",
                                  "title_link": "https://zabbix.corp.lan/tr_events.php?triggerid=3&amp;eventid=9"}
    if update is None:
        fields += [{"title": "Event tags", "value": f"component: network\n{tags}", "short": True},
                   {"title": "Trigger description", "value": description, "short": True}]
        attachment["actions"] = [{"id": "1", "type": "button", "text": "Open in Zabbix", "style": "",
                                  "url": "https://zabbix.corp.lan/tr_events.php?triggerid=3&amp;eventid=9"}]
    else:
        fields.append({"title": "Details", "value": update, "short": False})
    attachment["fields"] = fields
    return app_post("Zabbix", bot_id="B0ZBX", app_id="A0ZBX", attachments=[attachment], thread_ts=thread_ts)


def zabbix_cases() -> list[Case]:
    name = "Interface Ethernet 2: High inbound discards"
    problem = zabbix(f"Problem: {name}", "e97659", "In: 1520 packets")
    update = zabbix(f"Updated problem in 12m: {name}", "e97659", "In: 1498 packets", thread_ts=problem["ts"],
                    update="Alice Ops acknowledged problem at 2024.03.12 09:27:40.\nLooking at the guest.\n\n"
                           "Current problem status is PROBLEM, age is 12m, acknowledged: Yes.")
    resolved_attachment = zabbix(f"Resolved in 32m: {name}", "009900", "In: 3 packets")["attachments"]
    unfurled = copy.deepcopy(problem)
    return [
        Case("zabbix: problem, acknowledgement in thread, a reply count edit, resolution by chat.update", [
            Step("problem", problem, 1, ("VM *win2019-dc01*",)),
            Step("acknowledged", update, 0),
            Step("reply count", edited(unfurled, reply_count=2, reply_users=["U0ZBX"], latest_reply=ts()), 0),
            Step("resolved", edited(problem, attachments=resolved_attachment), 1, ("Resolved: zabbix",),
                 thread="problem"),
        ]),
        Case("zabbix: not about discards", [
            Step("cpu", zabbix("Problem: High CPU utilization (over 90% for 5m)", "ffa059", "Current: 97 %",
                               description="CPU utilization is too high.", tags="component: cpu"), 0),
        ]),
    ]


# -- Icinga2: nisabek/icinga2-slack-notifications (slack-notifications-command.conf) ------------------
# text ":<icon>: <TYPE>: Service <url|svc> transitioned from state A to state B on host <url|host>.
# Plugin output: ```…```"; a reminder (same state) says "is still in state B". username from config.

def icinga(kind: str, state_text: str, host: str, output: str, icon: str,
           service: str = "Interface discards") -> dict[str, Any]:
    base = "https://icinga.corp.lan/icingaweb2/monitoring"
    text = (
        f":{icon}: {kind}: Service <{base}/service/show?host={host}&amp;service=svc|{service}>"
        f"{state_text} on host <{base}/host/show?host={host}|{host}>. Plugin output: ```{output}```"
    )
    return webhook("icinga2", bot_id="B0ICINGA", text=text)


def icinga_cases() -> list[Case]:
    host = "winxp-scada"
    return [
        Case("icinga2: problem, reminder, acknowledgement, recovery", [
            Step("problem", icinga("PROBLEM", " transitioned from state OK to state CRITICAL", host,
                                   "CRITICAL - eth0 discards in=90 out=90", "red_circle"), 1, ("VM *winxp-scada*",)),
            Step("reminder", icinga("PROBLEM", " is still in state CRITICAL", host,
                                    "CRITICAL - eth0 discards in=95 out=91", "red_circle"), 1,
                 ("Fired again for winxp-scada",), ("VM *winxp-scada*",), thread="problem"),
            Step("acknowledged", icinga("ACKNOWLEDGEMENT", " is still in state CRITICAL", host,
                                        "CRITICAL - eth0 discards in=95 out=91", "ballot_box_with_check"), 0),
            Step("recovery", icinga("RECOVERY", " transitioned from state CRITICAL to state OK", host,
                                    "OK - eth0 discards in=0 out=0", "large_green_circle"), 1,
                 ("Resolved: icinga",), thread="problem"),
        ]),
        Case("icinga2: a disk service is not a discard alert", [
            Step("disk", icinga("PROBLEM", " transitioned from state OK to state WARNING", "centos7-db01",
                                "DISK WARNING - free space: / 812 MB (8%)", "warning", service="Disk /"), 0),
        ]),
    ]


# -- Nagios: the incoming-webhook script nagios.sh ----------------------------------------------------
# text "<icon> HOST: $NAGIOS_HOSTNAME   SERVICE: $NAGIOS_SERVICEDISPLAYNAME     MESSAGE: $NAGIOS_SERVICEOUTPUT
# <https://…/status.cgi?host=…|See Nagios>", icon :white_check_mark: (OK), :warning:, :exclamation:, no state.

def nagios(icon: str, output: str, host: str = "ubuntu-web02", service: str = "eth0 discards") -> dict[str, Any]:
    text = (f"{icon} HOST: {host}   SERVICE: {service}     MESSAGE: {output} "
            f"<https://nagios.corp.lan/cgi-bin/nagios3/status.cgi?host={host}|See Nagios>")
    return webhook("nagios", bot_id="B0NAGIOS", text=text)


def nagios_cases() -> list[Case]:
    return [
        Case("nagios webhook script: critical, warning, recovery by emoji", [
            Step("critical", nagios(":exclamation:", "CRITICAL - eth0 rx_dropped=340 tx_dropped=0"), 1,
                 ("VM *ubuntu-web02*",)),
            Step("warning", nagios(":warning:", "WARNING - eth0 rx_dropped=120 tx_dropped=0"), 1,
                 ("Fired again for ubuntu-web02",), thread="critical"),
            Step("recovery", nagios(":white_check_mark:", "OK - eth0 rx_dropped=0 tx_dropped=0"), 1,
                 ("Resolved: nagios",), ("Fired again",), thread="critical"),
        ]),
        Case("nagios webhook script: load is not a discard alert", [
            Step("load", nagios(":warning:", "WARNING - load average: 7.12, 6.80, 6.02", service="Current Load"), 0),
        ]),
    ]


# -- LibreNMS: LibreNMS/Alert/Transport/Slack.php ----------------------------------------------------
# attachment: fallback = text = the template's message, title = "Alert for device X - Rule" /
# "Device X recovered from Rule", colour #FF0000 / #00FF00 by state (delivered ff0000 / 00ff00).

def librenms(title: str, color: str, faults: str, rule: str = "Port discards") -> dict[str, Any]:
    body = f"{title}\nSeverity: warning\nTimestamp: 2024-03-12 10:00:02\nRule: {rule}\n{faults}"
    return webhook("LibreNMS", bot_id="B0LNMS", attachments=[{
        "id": 1, "fallback": body, "color": color, "title": title, "text": body,
        "mrkdwn_in": ["text", "fallback"], "author_name": "LibreNMS",
    }])


def librenms_cases() -> list[Case]:
    faults = "Faults:\n  #1: ifDescr = Local Area Connection 2; ifInDiscards_rate = 152; ifOutDiscards_rate = 152;"
    return [
        Case("librenms: alert, got worse, recovery", [
            Step("alert", librenms("Alert for device win2008r2-sql01 - Port discards", "ff0000", faults), 1,
                 ("VM *win2008r2-sql01*",)),
            Step("worse", librenms("Alert for device win2008r2-sql01 - Port discards got worse", "ff0000", faults),
                 1, ("Fired again for win2008r2-sql01",), thread="alert"),
            Step("recovered", librenms("Device win2008r2-sql01 recovered from Port discards", "00ff00", ""), 1,
                 ("Resolved: librenms",), thread="alert"),
            Step("other rule", librenms("Alert for device win2008r2-sql01 - Processor usage", "ff0000",
                                        "Faults:\n  #1: hrProcessorLoad = 97;", rule="Processor usage"), 0),
        ]),
    ]


# -- PRTG: the default notification text "[%sitename] %device %name %status %down (%message)" ----------

def prtg(status: str, message: str, sensor: str = "(003) Citrix PV Network Adapter #0 Traffic") -> dict[str, Any]:
    return webhook("PRTG", bot_id="B0PRTG", text=f"[PRTG Network Monitor (PRTGSRV)] win7-kiosk {sensor} {status} "
                                                  f"({message})")


def prtg_cases() -> list[Case]:
    return [
        Case("prtg default template: down, still down, up", [
            Step("down", prtg("Down (for 5 m)", "152 #/s is above the error limit of 10 #/s in Discards In"), 1,
                 ("VM *win7-kiosk*",)),
            Step("still down", prtg("Down (for 65 m)", "160 #/s is above the error limit of 10 #/s in Discards In"),
                 1, ("Fired again for win7-kiosk",), thread="down"),
            Step("up", prtg("Up", "OK"), 1, ("Resolved: prtg",), thread="down"),
            Step("ping down", prtg("Down", "Destination host unreachable", sensor="Ping"), 0),
        ]),
    ]


# -- People, other xenbots, other workspaces, colour-only recoveries --------------------------------

def staging_xenbot_diagnosis() -> dict[str, Any]:
    """What another xenbot install (staging) posts under an alert: it must never be read as an alert."""
    blocks = [
        {"type": "section", "block_id": "xenbot-alert-0", "text": {"type": "mrkdwn", "text":
            ":large_green_circle: *Very likely harmless* — high confidence · VM *win7-kiosk* (pool demo)"}},
        {"type": "actions", "block_id": "xenbot-alert-1", "elements": [
            {"type": "button", "action_id": "xenbot_show_vifs", "text": {"type": "plain_text", "text": "Show VIFs"},
             "value": "demo|x|"}]},
    ]
    return app_post("xenbot-staging", bot_id="B0STAGE", app_id="A0STAGE", blocks=blocks,
                    text="Very likely harmless (high) — win7-kiosk from icinga: 1520 discards rx on VM win7-kiosk")


def script(text: str, color: str) -> dict[str, Any]:
    """A home-grown script posting an attachment; only its colour says firing or recovered."""
    return webhook("netwatch", bot_id="B0NETW", attachments=[{"id": 1, "color": color, "text": text,
                                                             "fallback": text}])


def people_and_strangers_cases() -> list[Case]:
    zbx = zabbix("Problem: Interface Ethernet 2: High inbound discards", "e97659", "In: 1520 packets")
    foreign = app_post("Zabbix", bot_id="B0FOREIGN", app_id="A0FOREIGN", team="T0OTHER",
                       attachments=copy.deepcopy(zbx["attachments"]))
    return [
        Case("people, another xenbot, another workspace, another app, a shared channel", [
            Step("person report", person("seeing 1,520 discarded packets rx on win7-kiosk since 9:00"), 0),
            Step("staging xenbot", staging_xenbot_diagnosis(), 0),
            Step("other workspace", foreign, 0),
            Step("other app", copy.deepcopy(zbx), 0, envelope={"api_app_id": "A0SOMEONEELSE"}),
            Step("shared channel", copy.deepcopy(zbx), 0, envelope={"is_ext_shared_channel": True}),
            Step("zabbix", zbx, 1, ("VM *win2019-dc01*",)),
            Step("person in thread", person("still 1,520 discards on win2019-dc01", thread_ts=zbx["ts"]), 0),
        ]),
        Case("colour-only recovery (good, no #)", [
            Step("red", script("Packet discards on VM ubuntu-web01 interface eth0: rx 40", "a30200"), 1,
                 ("VM *ubuntu-web01*",)),
            Step("green", script("Packet discards on VM ubuntu-web01 interface eth0: rx 0", "2eb886"), 1,
                 ("Resolved: generic",), thread="red"),
        ]),
    ]


def all_cases() -> list[Case]:
    return [
        *alertmanager_cases(), *grafana_cases(), *zabbix_cases(), *icinga_cases(), *nagios_cases(),
        *librenms_cases(), *prtg_cases(), *people_and_strangers_cases(),
    ]
