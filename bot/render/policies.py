"""Policies → messages: requests, drift reports, enforcement notes, compliance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.domain.approvals import State
from bot.domain.changes import Plan
from bot.domain.policy import Compliance, Drift, PolicySpec
from bot.domain.slack_text import escape
from bot.render.blocks import Block, Reply, actions, button, code_sections, context, fit, section, table_lines
from bot.render.ids import Action

MAX_BUTTONS = 5


def refusal(text: str) -> Reply:
    return Reply(text=text, blocks=[section(":no_entry: " + escape(text))], error=True)


def policy_requested(request_id: int, spec: PolicySpec, removal_of: int | None = None) -> Reply:
    what = f"removal of policy #{removal_of}" if removal_of else f"policy: {spec.describe()}"
    text = f"Change #{request_id} ({what}) is waiting for approval."
    return Reply(text=text, blocks=[section(":hourglass_flowing_sand: " + escape(text))])


def policy_active(policy: Any, spec: PolicySpec) -> Reply:
    text = f"Policy #{policy.id} is active: {spec.describe()}."
    return Reply(text=text, blocks=[section(":white_check_mark: " + escape(text))], ephemeral=False)


def policies_saved(rows: Sequence[Any]) -> Reply:
    ids = ", ".join(f"#{r.id}" for r in rows)
    text = f"Saved as policies {ids} (report mode). `/xen policy list` shows them."
    return Reply(text=text, blocks=[section(":white_check_mark: " + escape(text))])


def policy_removed(policy_id: int, outcome: State) -> Reply:
    text = (
        f"Policy #{policy_id} is removed." if outcome is State.APPLIED else f"Policy #{policy_id} was not active."
    )
    return Reply(text=text, blocks=[section(escape(text))], ephemeral=False)


def _drift_rows(drifts: Sequence[Drift]) -> list[tuple[str, str, str]]:
    rows = []
    for drift in drifts:
        differences = ", ".join(
            f"{k.removeprefix('ethtool-')} {a if a is not None else '(absent)'}" for k, a, _w in drift.differences
        )
        rows.append((drift.interface.label, "new" if drift.new else "changed", differences))
    return rows


def drift_message(policy_id: int, spec: PolicySpec, groups: Mapping[str, Sequence[Drift]]) -> Reply:
    count = sum(len(v) for v in groups.values())
    head = (
        f":warning: *Drift from policy #{policy_id}* ({escape(spec.describe())}): "
        f"{count} interface(s) on {len(groups)} {'VM' if spec.target == 'vifs' else 'host'}(s)"
    )
    lines = table_lines(("INTERFACE", "WHY", "DIFFERS (actual)"), [r for d in groups.values() for r in _drift_rows(d)])
    buttons = [
        button(f"Request change: {owner}"[:75], Action.POLICY_FIX, f"{policy_id}:{owner}")
        for owner in list(groups)[:MAX_BUTTONS]
    ]
    blocks: list[Block] = [section(head), *code_sections(lines)]
    if buttons:
        blocks.append(actions(*buttons))
    blocks.append(context("Each button opens an ordinary change request, which needs approval."))
    return fit(
        Reply(text=f"Drift from policy #{policy_id}: {count} interface(s)", blocks=blocks, ephemeral=False),
        "\n".join(lines) + "\n",
        f"drift-policy-{policy_id}.txt",
    )


def enforced(policy_id: int, spec: PolicySpec, plan: Plan, request_id: int, final: State | None) -> Reply:
    labels = ", ".join(i.label for i in plan.interfaces[:10]) + (" …" if len(plan.interfaces) > 10 else "")
    state = final.label if final else "handled elsewhere"
    text = (
        f"Policy #{policy_id} enforced on {len(plan.interfaces)} new interface(s) ({labels}) "
        f"as change #{request_id}: {state}."
    )
    return Reply(text=text, blocks=[section(":shield: " + escape(text))], ephemeral=False)


def policy_list(rows: Sequence[Any]) -> Reply:
    if not rows:
        return Reply(text="No policies.", blocks=[section("No policies. `/xen policy set …` creates one.")])
    lines = table_lines(
        ("ID", "ACTIVE", "POLICY", "BY", "SINCE (UTC)"),
        [
            (f"#{r.id}", "yes" if r.active else "removed", _describe(r), r.created_by, f"{r.created_at:%Y-%m-%d %H:%M}")
            for r in rows
        ],
    )
    return fit(Reply(text="Policies", blocks=[section("*Policies*"), *code_sections(lines)]))


def _describe(row: Any) -> str:
    return PolicySpec.from_json(row.spec).describe()


def compliance_report(items: Sequence[tuple[Any, Compliance]], title: str = "Compliance") -> Reply:
    if not items:
        return Reply(text="No active policies.", blocks=[section("No active policies to check.")])
    rows = [
        (f"#{row.id}", _describe(row), c.complying, len(c.drifting), c.pending_activation, c.excluded)
        for row, c in items
    ]
    lines = table_lines(("POLICY", "RULE", "COMPLY", "DRIFT", "PENDING ACTIVATION", "EXCLUDED"), rows)
    blocks: list[Block] = [section(f"*{escape(title)}*"), *code_sections(lines)]
    full = list(lines)
    for row, c in items:
        if c.drifting:
            drift_lines = table_lines(("INTERFACE", "WHY", "DIFFERS (actual)"), _drift_rows(c.drifting))
            blocks.append(section(f"Drifting from policy #{row.id}:"))
            blocks += code_sections(drift_lines)
            full += ["", f"Drifting from policy #{row.id}:", *drift_lines]
    return fit(Reply(text=title, blocks=blocks), "\n".join(full) + "\n", "compliance.txt")


def policy_detail(row: Any, c: Compliance) -> Reply:
    return compliance_report([(row, c)], title=f"Policy #{row.id}: {_describe(row)}")
