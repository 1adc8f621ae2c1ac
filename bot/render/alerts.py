"""Diagnoses → thread replies: verdict first, evidence as a table, the reasoning, next steps."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.domain import names
from bot.domain.alerts import Alert
from bot.domain.alerts.webhook import WebhookGroup
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


def diagnosis_reply(pool: str, vm: Vm, alert: Alert | None, diagnosis: Diagnosis, *, full: bool = True) -> Reply:
    """The diagnosis; ``full=False`` for channels whose audience may not run ``/xen explain``.

    The summary keeps the verdict, the VM's name (the alert gave it already) and
    the buttons, each checked again on click; the evidence table, explanation
    and advice (guest OS, PV drivers, offload settings) are left out.
    """
    icon = _CONFIDENCE.get(diagnosis.confidence, "")
    head = (
        f"{icon} *{escape(diagnosis.verdict_label)}* — {diagnosis.confidence} confidence · "
        f"VM *{escape(vm.name)}* (pool {escape(pool)})"
    )
    blocks: list[Block] = [section(head)]
    if full:
        evidence = [(escape(k), escape(v)) for k, v in diagnosis.evidence_table()]
        for start in range(0, len(evidence), 10):
            blocks.append(fields_section(evidence[start:start + 10]))
        blocks.append(section(escape(diagnosis.explanation)))
        if diagnosis.advice:
            blocks.append(context(*(escape(a) for a in diagnosis.advice[:3])))
    else:
        blocks.append(context(
            "Details (guest OS, drivers, offload settings) are not shown in this channel: operators can run "
            f"`/xen explain {escape(vm.name)}` in one of xenbot's channels."
        ))
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
    if full:
        why = "Why: " + escape("; ".join(diagnosis.why())) + f" (rule `{escape(diagnosis.rule_id)}`)"
        blocks.append(context(why))
    source = f" from {alert.source}" if alert else ""
    text = f"{diagnosis.verdict_label} ({diagnosis.confidence}) — {vm.name}{source}"
    return fit(Reply(text=text, blocks=_marked(blocks), ephemeral=alert is None))


def follow_up(kind: str, alert: Alert, vm_name: str) -> Reply:
    if kind == "resolved":
        text = f"Resolved: {alert.source} reports the alert on {vm_name} as resolved. The diagnosis above still stands."
        icon = ":white_check_mark:"
    else:
        text = f"Fired again for {vm_name}; same alert, same diagnosis as above."
        icon = ":repeat:"
    return Reply(text=text, blocks=_marked([context(f"{icon} {escape(text)}")]), ephemeral=False)


def unseen_resolved(alert: Alert) -> Reply:
    text = f"Resolved ({alert.source}, {alert.target}); xenbot did not see this alert fire, so it was not diagnosed."
    return Reply(text=text, blocks=_marked([context(":white_check_mark: " + escape(text))]), ephemeral=False)


def unnamed_group(alert: Alert) -> Reply:
    text = (
        f"This {alert.source} notification groups {alert.count} alerts but does not say which machines they are "
        "about, so xenbot cannot diagnose them. List the alerts in the notification text (the labels of each "
        "alert) or send them to xenbot's webhook (see docs/alerts.md)."
    )
    return Reply(text=text, blocks=_marked([context(":information_source: " + escape(text))]), ephemeral=False)


def webhook_group(group: WebhookGroup) -> Reply:
    """The message a webhook notification's thread hangs under: the group, and which targets it names."""
    targets = ", ".join(sorted({a.target for a in group.alerts}))
    text = f"{group.title} from {group.source}: {targets}" if targets else f"{group.title} from {group.source}"
    icon = ":rotating_light:" if any(a.firing for a in group.alerts) else ":white_check_mark:"
    return Reply(text=text, blocks=_marked([section(f"{icon} {escape(text)}")]), ephemeral=False)


def combined(parts: Sequence[Reply]) -> Reply:
    """Several answers (one per alerted VM of a group) as one reply."""
    blocks: list[Block] = []
    for index, part in enumerate(parts):
        if index:
            blocks.append({"type": "divider"})
        blocks.extend(part.blocks)
    text = "\n".join(p.text for p in parts)
    file = next((p.file for p in parts if p.file), None)
    return fit(Reply(text=text, blocks=_marked(blocks), ephemeral=False, file=file))


def not_found(alert: Alert, problem: names.NotFound, *, suggestions: bool = True) -> Reply:
    """``suggestions=False`` where the audience may not list VMs: no closest names, no pool list."""
    hint = f" Closest names: {', '.join(problem.suggestions)}." if suggestions and problem.suggestions else ""
    text = (
        f"I could not find '{alert.target}' in any configured pool (by VM name, hostname or guest IP), "
        f"so I cannot diagnose this alert.{hint}"
    )
    return Reply(text=text, blocks=_marked([section(":mag: " + escape(text))]), ephemeral=False)


def host_alert(alert: Alert, inventory: PoolInventory, host: Host, *, full: bool = True) -> Reply:
    if not full:
        text = (
            f"'{alert.target}' is a host, not a VM: these are PIF discards, which the guest-driver rules do not "
            f"cover. Operators can look at its PIFs with `/xen pifs host={host.name}` in one of xenbot's channels."
        )
        return Reply(text=text, blocks=_marked([section(escape(text))]), ephemeral=False)
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
    return fit(Reply(text=text, blocks=_marked(blocks), ephemeral=False))


def muted(vm: Vm, until: datetime, by: str, diagnosis: Diagnosis) -> Reply:
    """The mention is built from the user id alone; nothing from the VM's name is ever un-escaped."""
    when = f"{until:%Y-%m-%d %H:%M} UTC"
    text = f"Discard alerts for {vm.name} are muted until {when} (verdict today: {diagnosis.verdict_label})."
    line = (
        f":mute: Discard alerts for {escape(vm.name)} are muted until {when} by {mention(by)} "
        f"(verdict today: {escape(diagnosis.verdict_label)})."
    )
    return Reply(text=text, blocks=_marked([context(line)]), ephemeral=False, fallback=line.removeprefix(":mute: "))


def mention(user_id: str) -> str:
    """``<@U123>`` for a Slack user id; anything else is shown escaped, never as markup."""
    return f"<@{user_id}>" if re.fullmatch(r"[UW][A-Z0-9]{2,20}", user_id) else escape(user_id)


def _marked(blocks: list[Block]) -> list[Block]:
    """Every block of an alert reply carries a ``xenbot-`` block id, so no xenbot install takes it for an alert."""
    return [{**b, "block_id": f"xenbot-alert-{i}"} if "block_id" not in b else b for i, b in enumerate(blocks)]


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
