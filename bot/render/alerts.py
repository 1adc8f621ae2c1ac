"""Diagnoses → thread replies: verdict first, evidence as a table, the reasoning, next steps."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.domain import names
from bot.domain.alerts import Alert
from bot.domain.diagnosis import Diagnosis
from bot.domain.model import Host, PoolInventory, Vm
from bot.domain.offload import VIF_MODES
from bot.domain.slack_text import escape
from bot.render.blocks import (
    Block,
    Reply,
    actions,
    button,
    code_sections,
    context,
    fields_section,
    fit,
    section,
    table_lines,
)
from bot.render.ids import Action

_CONFIDENCE = {"high": ":large_green_circle:", "medium": ":large_yellow_circle:", "low": ":white_circle:"}


def button_value(pool: str, vm_uuid: str, modes: Sequence[str] = ()) -> str:
    return "|".join((pool, vm_uuid, ",".join(modes)))


def parse_value(value: str) -> tuple[str, str, tuple[str, ...]]:
    pool, _, rest = value.partition("|")
    vm_uuid, _, modes = rest.partition("|")
    return pool, vm_uuid, tuple(m for m in modes.split(",") if m)


def diagnosis_reply(pool: str, vm: Vm, alert: Alert | None, diagnosis: Diagnosis) -> Reply:
    icon = _CONFIDENCE.get(diagnosis.confidence, "")
    head = (
        f"{icon} *{escape(diagnosis.verdict_label)}* — {diagnosis.confidence} confidence · "
        f"VM *{escape(vm.name)}* (pool {escape(pool)})"
    )
    evidence = [(escape(k), escape(v)) for k, v in diagnosis.evidence_table()]
    blocks: list[Block] = [section(head)]
    for start in range(0, len(evidence), 10):
        blocks.append(fields_section(evidence[start:start + 10]))
    blocks.append(section(escape(diagnosis.explanation)))
    if diagnosis.advice:
        blocks.append(context(*(escape(a) for a in diagnosis.advice[:3])))
    buttons = []
    for action in diagnosis.actions:
        if action.code == "disable_offload":
            modes = action.modes or VIF_MODES
            buttons.append(
                button(f"Disable {'/'.join(modes)} offload on this VM", Action.DISABLE_OFFLOAD,
                       button_value(pool, vm.uuid, modes), "primary")
            )
    buttons.append(button("Show VIFs", Action.SHOW_VIFS, button_value(pool, vm.uuid)))
    buttons.append(button("Mute discard alerts for this VM", Action.MUTE, button_value(pool, vm.uuid)))
    blocks.append(actions(*buttons))
    blocks.append(context("Why: " + escape("; ".join(diagnosis.why())) + f" (rule `{escape(diagnosis.rule_id)}`)"))
    source = f" from {alert.source}" if alert else ""
    text = f"{diagnosis.verdict_label} ({diagnosis.confidence}) — {vm.name}{source}"
    return fit(Reply(text=text, blocks=blocks, ephemeral=alert is None))


def follow_up(kind: str, alert: Alert, vm_name: str) -> Reply:
    if kind == "resolved":
        text = f"Resolved: {alert.source} reports the alert on {vm_name} as resolved. The diagnosis above still stands."
        icon = ":white_check_mark:"
    else:
        text = f"Fired again for {vm_name}; same alert, same diagnosis as above."
        icon = ":repeat:"
    return Reply(text=text, blocks=[context(f"{icon} {escape(text)}")], ephemeral=False)


def not_found(alert: Alert, problem: names.NotFound) -> Reply:
    hint = f" Closest names: {', '.join(problem.suggestions)}." if problem.suggestions else ""
    text = (
        f"I could not find '{alert.target}' in any configured pool (by VM name, hostname or guest IP), "
        f"so I cannot diagnose this alert.{hint}"
    )
    return Reply(text=text, blocks=[section(":mag: " + escape(text))], ephemeral=False)


def host_alert(alert: Alert, inventory: PoolInventory, host: Host) -> Reply:
    rows = [
        (p.device, p.network_name, "yes" if p.currently_attached else "no",
         " ".join(f"{k.removeprefix('ethtool-')}={v}" for k, v in sorted(p.other_config.items())
                  if k.startswith("ethtool-")) or "defaults")
        for p in inventory.pifs_of(host)
    ]
    text = (
        f"'{alert.target}' is host {host.name} (pool {inventory.pool}), not a VM: these are PIF discards. "
        "The guest-driver rules do not apply; here are its PIFs and their offload settings."
    )
    blocks = [section(escape(text)), *code_sections(table_lines(("PIF", "NETWORK", "ATTACHED", "OFFLOAD"), rows))]
    return fit(Reply(text=text, blocks=blocks, ephemeral=False))


def muted(vm: Vm, until: datetime, by: str, diagnosis: Diagnosis) -> Reply:
    text = (
        f"Discard alerts for {vm.name} are muted until {until:%Y-%m-%d %H:%M} UTC by <@{by}> "
        f"(verdict today: {diagnosis.verdict_label})."
    )
    return Reply(text=text, blocks=[context(":mute: " + escape(text).replace(f"&lt;@{by}&gt;", f"<@{by}>"))],
                 ephemeral=False)


def mute_recorded(vm: Vm, until: datetime) -> Reply:
    text = f"Discard alerts for {vm.name} are muted until {until:%Y-%m-%d %H:%M} UTC; each gets a one-line note."
    return Reply(text=text, blocks=[section(":mute: " + escape(text))], ephemeral=False)


def alert_list(rows: Sequence[Any]) -> Reply:
    if not rows:
        return Reply(text="No alerts seen yet.", blocks=[section("No discard alerts seen yet.")])
    lines = table_lines(
        ("ID", "LAST SEEN (UTC)", "SOURCE", "STATUS", "TARGET", "VM", "VERDICT", "REPEATS"),
        [
            (f"#{r.id}", f"{r.last_seen:%Y-%m-%d %H:%M}", r.source, r.status, r.target, r.vm_name or "-",
             r.verdict or "(not found)", r.repeats)
            for r in rows
        ],
    )
    return fit(Reply(text="Recent discard alerts", blocks=[section("*Recent discard alerts*"), *code_sections(lines)]),
               "\n".join(lines) + "\n", "alerts.txt")
