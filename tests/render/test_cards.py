"""Cards read as a person reads them, compared with golden text files (tests/render/golden/*.txt).

Each card kind is turned into the text Slack shows (section text, fields as
"label: value", context lines, code blocks, buttons as [labels]) plus the
notification text, and compared with its golden file. Run with
``XENBOT_UPDATE_GOLDEN=1`` to rewrite the files after a deliberate change, then
read the diff.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.domain import names
from bot.domain.alerts import parse_alert
from bot.domain.alerts.webhook import read_webhook
from bot.domain.changes import InterfacePlan, KeyChange, Plan, plan_change
from bot.domain.diagnosis import diagnose, evidence_for
from bot.render import alerts as alert_cards
from bot.render import changes as change_cards
from bot.render.blocks import Reply, fallback_text

GOLDEN = Path(__file__).parent / "golden"


def read_as_person(reply: Reply) -> str:
    lines: list[str] = []
    for block in reply.blocks:
        kind = block.get("type")
        if kind in ("section", "header"):
            if block.get("text"):
                lines.append(block["text"]["text"])
            for item in block.get("fields", []):
                lines.append("  " + item["text"].replace("\n", ": ", 1))
        elif kind == "context":
            lines.extend("  > " + e.get("text", "") for e in block["elements"])
        elif kind == "actions":
            lines.append(" ".join(f"[{e['text']['text']}]" for e in block["elements"]))
        elif kind == "divider":
            lines.append("---")
        elif kind == "rich_text":
            lines.append(str(block))
    return "\n".join(lines) + f"\n\nnotification: {fallback_text(reply)}\n"


def check(name: str, reply: Reply) -> None:
    text = read_as_person(reply)
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("XENBOT_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name}: card text changed; see {path}"


@dataclass
class Request:
    id: int = 1
    kind: str = "offload"
    state: str = "pending"
    action: str = "off"
    pool: str = "demo"
    scope_kind: str = "vm"
    scope_label: str = "win7-kiosk"
    requester: str = "U123"
    reason: str | None = "recommended by xenbot's discard diagnosis"
    message_channel: str | None = "C0APPROVE"
    message_ts: str | None = None
    parent_id: int | None = None


VIF = InterfacePlan("demo", "vif", "OpaqueRef:v", "vif-uuid", "win7-kiosk/0", "win7-kiosk",
                    (KeyChange("ethtool-tx", None, "false"),), "vif-replug")


def plan(**changes: Any) -> Plan:
    return replace(Plan("off", ("tx",), "demo", "vm", "win7-kiosk", (VIF,), 0), **changes)


def test_offload_card():
    check("change_offload_vm", change_cards.approval_message(Request(), plan(), [], 1))


def test_offload_on_pool_card():
    request = Request(action="on", scope_kind="pool", scope_label="demo")
    check("change_offload_on_pool", change_cards.approval_message(request, plan(action="on", scope_kind="pool"), [], 1))


def test_activation_card():
    request = Request(id=2, kind="activate", action="activate", scope_kind="pool", scope_label="change #1",
                      parent_id=1, reason="activate change #1")
    check("change_activate", change_cards.approval_message(request, plan(action="activate"), ["U0LEAD"], 2))


def test_revert_card():
    request = Request(id=3, kind="revert", action="restore", scope_kind="pool",
                      scope_label="revert of #1 (win7-kiosk)", parent_id=1, reason="revert change #1")
    check("change_revert", change_cards.approval_message(request, plan(action="restore"), [], 1))


def test_policy_card_has_no_empty_table():
    note = "Policy: turn tx off on every VIF of pool demo. Today 10 interfaces comply, 2 differ."
    request = Request(id=4, kind="policy", scope_kind="pool", scope_label="policy for vifs",
                      reason="turn tx off on every VIF of pool demo")
    empty = Plan("off", ("tx",), "demo", "pool", "policy for vifs", (), 0, (note,))
    reply = change_cards.approval_message(request, empty, [], 1)
    check("change_policy", reply)
    assert "Takes effect: \n" not in read_as_person(reply) and "INTERFACE" not in read_as_person(reply)


def test_policy_remove_card():
    request = Request(id=5, kind="policy-remove", scope_kind="pool", scope_label="remove policy #4")
    empty = Plan("off", ("tx",), "demo", "pool", "remove policy #4", (), 0, ("Remove policy #4: …",))
    check("change_policy_remove", change_cards.approval_message(request, empty, [], 1))


def test_pif_only_modes_note_names_what_vifs_get(gateway):
    inventory = gateway.inventory()
    vm = next(v for v in inventory.vms.values() if v.name == "win7-kiosk")
    planned = plan_change(inventory, "off", ("gro", "tx"), "vm", vm.name, inventory.vifs_of(vm))
    assert planned.notes == ("gro applies to PIFs only, so VIFs get tx only",)
    request = Request(id=6)
    check("change_pif_only_note", change_cards.approval_message(request, planned, [], 1))


def _alert(text: str) -> Any:
    alert = parse_alert({"subtype": "bot_message", "username": "icinga2", "bot_id": "B0I", "text": text})
    assert alert is not None
    return alert


ICINGA = ("PROBLEM: Service Interface discards transitioned from state OK to state CRITICAL on host {host}. "
          "Plugin output: CRITICAL - eth0 discards in=500 out=500")


@pytest.fixture
def kiosk(gateway):
    inventory = gateway.inventory()
    vm = next(v for v in inventory.vms.values() if v.name == "win7-kiosk")
    alert = _alert(ICINGA.format(host="win7-kiosk"))
    return inventory, vm, alert, diagnose(evidence_for(inventory, vm, alert, {}, recent_change_pending=False))


def _no_uuids(reply: Reply, *uuids: str) -> Reply:
    """VM uuids differ between simulator runs: the goldens show them as <uuid>."""
    import json

    text = json.dumps(reply.blocks)
    for uuid in uuids:
        text = text.replace(uuid, "<uuid>")
    return replace(reply, blocks=json.loads(text))


def test_diagnosis_cards(kiosk):
    _inventory, vm, alert, diagnosis = kiosk
    check("alert_diagnosis_full", _no_uuids(alert_cards.diagnosis_reply("demo", vm, alert, diagnosis), vm.uuid))
    check("alert_diagnosis_summary",
          _no_uuids(alert_cards.diagnosis_reply("demo", vm, alert, diagnosis, full=False), vm.uuid))
    check("alert_muted", alert_cards.muted(replace(vm, name="<@U0VISIT> kiosk"), datetime(2030, 1, 2, 3, 4, tzinfo=UTC),
                                           "U123", diagnosis))
    check("alert_repeat", alert_cards.follow_up("repeat", alert, vm.name))
    check("alert_resolved", alert_cards.follow_up("resolved", alert, vm.name))
    check("alert_unseen_resolved", alert_cards.unseen_resolved(replace(alert, status="resolved")))


def test_not_found_and_host_cards(gateway):
    inventory = gateway.inventory()
    alert = _alert(ICINGA.format(host="win7-kiosc"))
    problem = names.NotFound("VM or host", "win7-kiosc", ["win7-kiosk (demo)"])
    check("alert_not_found_full", alert_cards.not_found(alert, problem))
    check("alert_not_found_summary", alert_cards.not_found(alert, problem, suggestions=False))
    host = next(h for h in inventory.hosts.values() if h.name == "xcp-host1")
    host_alert = _alert(ICINGA.format(host="xcp-host1"))
    check("alert_host_full", alert_cards.host_alert(host_alert, inventory, host))
    check("alert_host_summary", alert_cards.host_alert(host_alert, inventory, host, full=False))


def test_group_cards():
    grouped = parse_alert({"subtype": "bot_message", "username": "Alertmanager", "bot_id": "B0A", "attachments": [
        {"color": "a30200", "title": "[FIRING:2] WindowsNetworkDiscards (windows Citrix_PV_Network_Adapter__0 warning)"}
    ]})
    assert grouped is not None and grouped.count == 2 and not grouped.members
    check("alert_group_unnamed", alert_cards.unnamed_group(grouped))
    group = read_webhook("alertmanager", {"status": "firing", "groupLabels": {"alertname": "WindowsNetworkDiscards"},
                                          "alerts": [{"status": "firing", "labels": {
                                              "alertname": "WindowsNetworkDiscards", "instance": "win7-kiosk:9182"}}]})
    check("alert_webhook_group", alert_cards.webhook_group(group))
