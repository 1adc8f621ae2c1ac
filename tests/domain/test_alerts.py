"""Alert parsing over a corpus of Slack message events as Slack delivers them.

Each file in ``alert_corpus/`` is one event (escaped ``&amp;``, ``<url|label>``
links, classic integrations, modern apps, edits). The table below says what
xenbot must read from it — or that it must read nothing.
"""

import json
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.domain.alerts import (
    Alert,
    MessageContent,
    directions_in,
    extract_figures,
    find_interface,
    mentions_discards,
    message_text,
    parse_alert,
)

CORPUS = Path(__file__).parent / "alert_corpus"

RX, TX, BOTH, NONE = frozenset({"rx"}), frozenset({"tx"}), frozenset({"rx", "tx"}), frozenset()

# file: (source, status, target, target_ip, interface, directions, rx, tx, value, unit)
EXPECTED: dict[str, tuple | None] = {
    "alertmanager_firing.json": ("alertmanager", "firing", "web01", None, "eth0", NONE, None, None, None, None),
    "alertmanager_resolved.json": ("alertmanager", "resolved", "web01", None, "eth0", NONE, None, None, None, None),
    "alertmanager_labels_firing.json": (
        "alertmanager", "firing", "centos7-db01.corp.lan", None, "eth1", RX, 37.0, None, None, "pkt/s",
    ),
    "alertmanager_labels_resolved.json": (
        "alertmanager", "resolved", "centos7-db01.corp.lan", None, "eth1", RX, 0.0, None, None, "pkt/s",
    ),
    "alertmanager_custom_text_firing.json": (
        "alertmanager", "firing", "win2008r2-sql01", "10.0.1.21", "Citrix PV Ethernet Adapter _0", BOTH,
        152.0, 152.0, None, "pkt/s",
    ),
    "alertmanager_custom_text_resolved.json": (
        "alertmanager", "resolved", "win2008r2-sql01", "10.0.1.21", "Citrix PV Ethernet Adapter _0", BOTH,
        0.0, 0.0, None, "pkt/s",
    ),
    "alertmanager_non_discard.json": None,
    "zabbix_problem.json": (
        "zabbix", "firing", "win2008r2-sql01", "10.0.1.21", "Local Area Connection 2", BOTH, 1520.0, 1520.0, None, None,
    ),
    "zabbix_update_in_thread.json": (
        "zabbix", "firing", "win2008r2-sql01", "10.0.1.21", "Local Area Connection 2", BOTH, 1498.0, 1498.0, None, None,
    ),
    "zabbix_resolved_edit.json": (
        "zabbix", "resolved", "win2008r2-sql01", "10.0.1.21", "Local Area Connection 2", BOTH, 12.0, 12.0, None, None,
    ),
    "zabbix_linux_problem.json": (
        "zabbix", "firing", "ubuntu-web01", "10.0.2.11", "eth0", NONE, None, None, 1520.0, "packets",
    ),
    "zabbix_linux_resolved.json": (
        "zabbix", "resolved", "ubuntu-web01", "10.0.2.11", "eth0", NONE, None, None, 3.0, "packets",
    ),
    "zabbix_non_discard.json": None,
    "librenms_alert.json": ("librenms", "firing", "win7-kiosk", None, "Ethernet 2", BOTH, 152.0, 152.0, None, "pkt/s"),
    "librenms_recovery.json": ("librenms", "resolved", "win7-kiosk", None, None, NONE, None, None, None, None),
    "librenms_non_discard.json": None,
    "icinga_problem.json": ("icinga", "firing", "centos7-db01", None, "eth0", BOTH, 1200.0, 1200.0, None, None),
    "icinga_recovery.json": ("icinga", "resolved", "centos7-db01", None, "eth0", BOTH, 0.0, 0.0, None, None),
    "icinga_non_discard.json": None,
    "nagios_problem.json": ("nagios", "firing", "ubuntu-app02", "10.0.2.15", "eth1", BOTH, 340.0, 0.0, None, None),
    "nagios_recovery.json": ("nagios", "resolved", "ubuntu-app02", "10.0.2.15", "eth1", BOTH, 0.0, 0.0, None, None),
    "prtg_down.json": ("prtg", "firing", "win2003-legacy", None, "Ethernet Adapter", RX, 152.0, None, None, "pkt/s"),
    "prtg_up.json": ("prtg", "resolved", "win2003-legacy", None, "Ethernet Adapter", RX, None, None, None, None),
    "prtg_non_discard.json": None,
    "datadog_triggered.json": ("datadog", "firing", "ubuntu-web01", None, "eth0", RX, 152.4, None, None, "pkt/s"),
    "datadog_recovered.json": ("datadog", "resolved", "ubuntu-web01", None, "eth0", RX, None, None, None, None),
    "datadog_non_discard.json": None,
    "generic_script_firing.json": (
        "generic", "firing", "win2008-app03", "10.0.1.30", None, BOTH, 1520.0, 1520.0, None, "packets",
    ),
    "generic_blocks_app.json": ("generic", "firing", "ubuntu-db02", None, "ens192", BOTH, 75.0, 0.0, None, None),
    # A person reporting figures reads as a report; a person asking a question does not.
    "person_pasted_figures.json": (
        "generic", "firing", "win7-kiosk", None, "Ethernet 2", NONE, None, None, 1520.0, "packets",
    ),
    "person_question.json": None,
    "disk_space_dropped.json": None,
    "channel_join.json": None,
    "message_deleted.json": None,
    "malformed_types.json": None,
    "malformed_attachment.json": None,
}  # fmt: skip

# Versions of one alert: they must share an identity so the bot finds its earlier reply.
SAME_ALERT = [
    ("alertmanager_firing.json", "alertmanager_resolved.json"),
    ("alertmanager_labels_firing.json", "alertmanager_labels_resolved.json"),
    ("alertmanager_custom_text_firing.json", "alertmanager_custom_text_resolved.json"),
    ("zabbix_problem.json", "zabbix_update_in_thread.json", "zabbix_resolved_edit.json"),
    ("zabbix_linux_problem.json", "zabbix_linux_resolved.json"),
    ("librenms_alert.json", "librenms_recovery.json"),
    ("icinga_problem.json", "icinga_recovery.json"),
    ("nagios_problem.json", "nagios_recovery.json"),
    ("prtg_down.json", "prtg_up.json"),
    ("datadog_triggered.json", "datadog_recovered.json"),
]


def load(name: str) -> dict:
    return json.loads((CORPUS / name).read_text())


def test_every_corpus_file_is_in_the_table():
    assert sorted(p.name for p in CORPUS.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus(name):
    alert = parse_alert(load(name))
    expected = EXPECTED[name]
    if expected is None:
        assert alert is None, alert
        return
    assert isinstance(alert, Alert)
    got = (
        alert.source, alert.status, alert.target, alert.target_ip, alert.interface, alert.directions,
        alert.rx, alert.tx, alert.value, alert.unit,
    )  # fmt: skip
    assert got == expected
    assert alert.identity.startswith(expected[0] + "|")
    assert alert.raw_text and alert.title


@pytest.mark.parametrize("names", SAME_ALERT, ids=lambda names: names[0])
def test_firing_resolved_and_edited_versions_share_identity(names):
    alerts = [parse_alert(load(n)) for n in names]
    assert all(a is not None for a in alerts)
    assert len({a.identity for a in alerts}) == 1
    assert alerts[0].status == "firing" and alerts[-1].status == "resolved"


def test_identities_of_different_alerts_differ():
    identities = {parse_alert(load(group[0])).identity for group in SAME_ALERT}
    assert len(identities) == len(SAME_ALERT)


def test_zabbix_edit_is_read_from_the_new_message_not_the_previous_one():
    event = load("zabbix_resolved_edit.json")
    content = message_text(event)
    assert content.edited
    assert content.title.startswith("Resolved in 1h 5m:")
    assert message_text(event["previous_message"]).title.startswith("Problem:")


# -- message_text -----------------------------------------------------------------------------


def test_message_text_keeps_fields_and_color_as_structure():
    content = message_text(load("zabbix_problem.json"))
    assert content.fields["Host"] == "win2008r2-sql01 [10.0.1.21]"
    assert content.fields["Opdata"] == "Rx: 1520, Tx: 1520"
    assert content.field_value("host", "Hostname") == "win2008r2-sql01 [10.0.1.21]"
    assert content.color == "e97659"  # normalised: Slack delivers colours without "#"
    assert content.sender == "Zabbix" and content.sender_kind == "app"
    assert "Opdata: Rx: 1520, Tx: 1520" in content.text
    assert content.attachments[0].fields["Severity"] == "High"


def test_message_text_unescapes_links_and_entities():
    content = message_text(load("icinga_problem.json"))
    assert "Service Interface discards transitioned" in content.text
    assert "on host centos7-db01." in content.text
    assert "&amp;" not in content.text
    assert content.sender == "icinga2" and content.sender_kind == "integration"


def test_message_text_reads_blocks_header_fields_and_context():
    content = message_text(load("generic_blocks_app.json"))
    assert content.title == ":rotating_light: Discard alert"
    assert content.fields == {"Host": "ubuntu-db02", "Interface": "ens192", "Rx drops": "75", "Tx drops": "0"}
    assert "Source: netmon & friends" in content.text


def test_message_text_reads_rich_text_and_drops_duplicates():
    content = message_text(load("person_pasted_figures.json"))
    assert content.sender_kind == "person"
    # The top-level text and the rich_text block say the same thing; rich text is not HTML-escaped.
    assert content.text.count("nobody knows why") == 1
    section = {
        "type": "rich_text_section",
        "elements": [{"type": "text", "text": "first "}, {"type": "link", "url": "https://x", "text": "link"}],
    }
    listed = {
        "type": "rich_text_list",
        "elements": [
            {
                "type": "rich_text_section",
                "elements": [{"type": "emoji", "name": "fire"}, {"type": "user", "user_id": "U2"}],
            }
        ],
    }
    code = {"type": "rich_text_preformatted", "elements": [{"type": "text", "text": "eth0 rx_dropped=5"}]}
    nested = {"user": "U1", "blocks": [{"type": "rich_text", "elements": [section, listed, code]}]}
    assert message_text(nested).text == "first link\n:fire:<@U2>\neth0 rx_dropped=5"


def test_alertmanager_fallback_adds_nothing_when_it_repeats_the_title():
    content = message_text(load("alertmanager_firing.json"))
    assert content.text == "[FIRING:1] HighNetworkDiscards (eth0 web01:9100 node critical)"


@pytest.mark.parametrize("event", [None, 3, "text", [], {}, {"subtype": "message_changed", "message": "x"}])
def test_message_text_of_non_messages_is_empty(event):
    assert message_text(event) == MessageContent() or message_text(event).text == ""


def test_parse_alert_accepts_flattened_content():
    content = message_text(load("librenms_alert.json"))
    assert parse_alert(content) == parse_alert(load("librenms_alert.json"))


# -- vocabulary -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("High number of discarded packets", True),
        ("ifInDiscards_rate = 152", True),
        ("eth0 rx_dropped=12", True),
        ("system.net.packets_out.drop", True),
        ("NodeNetworkTransmitDrop", True),
        ("packet drops on eth0", True),
        ("Port Discards In", True),
        ("Free disk space dropped below 10%", False),
        ("Connection dropped by peer", False),
        ("Process ran out of memory, dropped 3 jobs", False),
        ("CPU utilization is high", False),
        ("HTTP 500 rate above 5%", False),
        ("Link down on eth0", False),
    ],
)
def test_mentions_discards(text, expected):
    assert mentions_discards(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Discards In", RX),
        ("Discards Out", TX),
        ("ifInDiscards", RX),
        ("ifOutDiscards", TX),
        ("rx_dropped", RX),
        ("outbound packets discarded", TX),
        ("Inbound packets discarded", RX),
        ("receive drops", RX),
        ("transmit drops", TX),
        ("discards in=5 out=5", BOTH),
        ("Tx and Rx", BOTH),
        ("drops in both directions", BOTH),
        ("1200 discards in the last 5 minutes", NONE),  # "in" as English, not a direction
        ("discards on dal-tx-01", NONE),  # a host name is not a direction
        ("High number of discarded packets", NONE),
    ],
)
def test_directions(text, expected):
    assert directions_in(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Rx: 1520, Tx: 1520", (1520.0, 1520.0, None, None)),
        ("in=1,200 out=1,200", (1200.0, 1200.0, None, None)),
        ("ifInDiscards_rate = 152; ifOutDiscards_delta = 3;", (152.0, 3.0, None, "pkt/s")),
        ("'eth0_in_discards'=1200c;1000;2000", (1200.0, None, None, None)),
        ("1520 packets", (None, None, 1520.0, "packets")),
        ("rx 5 tx 6 pps", (5.0, 6.0, None, "pkt/s")),
        ("exceeded the threshold of 100 for 5m", (None, None, None, None)),
        ("instance web01:9100 interval: 60", (None, None, None, None)),
        ("ifInErrors_rate = 3; ifInOctets_rate = 999", (None, None, None, None)),
        ("Value: 75.5", (None, None, 75.5, None)),
    ],
)
def test_figures_are_read_only_where_tied_to_a_direction_or_unit(text, expected):
    assert extract_figures(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("on eth0", "eth0"),
        ("vif3.0 of the VM", "vif3.0"),
        ("Local Area Connection 2: high", "Local Area Connection 2"),
        ("ifDescr = Ethernet 2;", "Ethernet 2"),
        ("pfSense xn0", "xn0"),
        ("Citrix PV Ethernet Adapter", None),
        ("node_exporter on web01", None),
    ],
)
def test_find_interface(text, expected):
    assert find_interface(text) == expected


# -- never raise -------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=30,
)
slackish_keys = st.sampled_from(
    ["type", "subtype", "text", "attachments", "blocks", "fields", "title", "value", "message", "elements",
     "fallback", "pretext", "color", "username", "bot_id", "bot_profile", "user", "name", "url"]
)  # fmt: skip
slackish_words = st.sampled_from(["message_changed", "bot_message", "rich_text", "section", "text"])
slackish = st.recursive(
    st.none() | st.integers() | st.text(max_size=60) | slackish_words,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(slackish_keys, children, max_size=6),
    max_leaves=40,
)
alertish_text = st.lists(
    st.sampled_from(
        ["discards", "drops", "Rx:", "Tx:", "in=", "out=", "1520", "1,520", "[FIRING:1]", "[RESOLVED]", "Problem:",
         "Alert for device", "PROBLEM:", "Service", "on host", "**", "Service Alert:", "#/s", "(Discards In)",
         "[Triggered on {host:", "}]", "eth0", "web01", "10.0.1.21", "<http://x|y>", "&amp;", "=", ":", ";", "\n",
         "(", ")", "[", "]", "VM", "is", "above", "error limit", "ifInDiscards_rate", "Ethernet 2", " "]
    ),
    max_size=40,
).map("".join)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values, slackish))
def test_parse_alert_never_raises_on_arbitrary_json(event):
    result = parse_alert(event)
    assert result is None or isinstance(result, Alert)
    message_text(event)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), alertish_text), st.sampled_from(["text", "title", "field"]))
def test_parse_alert_never_raises_on_random_text(text, where):
    if where == "text":
        event = {"type": "message", "subtype": "bot_message", "text": text}
    elif where == "title":
        event = {"type": "message", "bot_id": "B1", "attachments": [{"title": text, "text": text}]}
    else:
        event = {"type": "message", "bot_id": "B1", "attachments": [{"fields": [{"title": "Host", "value": text}]}]}
    result = parse_alert(event)
    assert result is None or (isinstance(result, Alert) and result.target)


def test_huge_message_is_cheap_and_safe():
    text = ("discards in=1 out=1 on host web01 " + "x" * 1000 + "\n") * 200
    event = {"type": "message", "subtype": "bot_message", "text": text, "attachments": [{"text": text}] * 500}
    alert = parse_alert(event)
    assert alert is not None and alert.target == "web01"
    assert len(alert.raw_text) <= 60_000


@pytest.mark.parametrize(
    "piece",
    ["host:", "10.0.0.1.", "Service ", "HOST: ", "Alert for device x - ", "[", "Interface a(", "x=", "*a:* ", "1,"],
)
def test_pathological_repetitions_stay_linear(piece):
    # Regexes with unbounded captures went quadratic on such input (seconds for 40k characters): keep them bounded.
    text = "discards on host web01 " + piece * (40_000 // len(piece))
    event = {"type": "message", "bot_id": "B1", "attachments": [{"title": text[:20_000], "text": text}]}
    started = time.perf_counter()
    parse_alert(event)
    assert time.perf_counter() - started < 1.0
