"""Modals for the offload form, the options it searches, and the private "Explain with xenbot" answer.

Views are plain dicts like every other reply; handlers send them with ``views.open`` /
``views.update`` or as a ``response_action``. Slack's view limits are kept here: 100 blocks,
title 24 characters, option text 75 and value 150, ``private_metadata`` 3,000.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from bot.domain.changes import Plan
from bot.domain.offload import DEFAULT_MODES, PIF_MODES, VIF_MODES
from bot.domain.slack_text import escape
from bot.render.blocks import Block, Reply, actions, button, code_sections, context, section
from bot.render.changes import activation_lines, plan_lines, totals
from bot.render.ids import Action

FORM_CALLBACK = "xenbot_offload_form"
SUMMARY_CALLBACK = "xenbot_offload_summary"
OPEN_FORM = "xenform_open_offload"  # the Home tab's button; the shortcut's callback id is the same
SCOPE_ACTION = "xenform_scope"
TARGET_ACTION = "xenform_target"
POOL_ACTION, MODES_ACTION, ACTION_ACTION, REASON_ACTION = "xenform_pool", "xenform_modes", "xenform_action", \
    "xenform_reason"
POOL_BLOCK, SCOPE_BLOCK, ACTION_BLOCK, REASON_BLOCK = "pool", "scope", "action", "reason"
TARGET_BLOCK = "target"
EXPLAIN_CALLBACK = "xenbot_explain_message"
POLICY_CALLBACK = "xenbot_policy_form"
OPEN_POLICY = "xenform_open_policy"
POLICY_TARGET, POLICY_MODE, EXCLUDE_NAMES, EXCLUDE_TAGS, HOST = "targets", "enforce", "exclude", "exclude_tags", "host"

MAX_VIEW_BLOCKS = 100
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150
SCOPE_LABELS = {"vm": "VM (all its VIFs)", "host": "Host (its PIFs)", "pool": "Pool (every PIF)",
                "vif": "One VIF", "pif": "One PIF"}
ACTION_LABELS = {"off": "Off", "on": "On", "reset": "Reset (driver default)"}


def modes_block(kind: str) -> str:
    """Per kind, so Slack forgets the ticks of another kind when the scope changes."""
    return f"modes-{'pif' if kind == 'pif' else 'vif'}"


def target_block(kind: str) -> str:
    """Per kind: the options listener reads the kind from it, and a VM picked before does not stay
    selected when the scope becomes a host."""
    return f"{TARGET_BLOCK}-{kind}"


def _text(text: str, limit: int = MAX_OPTION_TEXT) -> dict[str, Any]:
    return {"type": "plain_text", "text": text if len(text) <= limit else text[: limit - 1] + "…", "emoji": True}


def option(label: str, value: str) -> dict[str, Any]:
    return {"text": _text(label), "value": value[:MAX_OPTION_VALUE]}


def _input(block_id: str, label: str, element: dict[str, Any], *, optional: bool = False,
           dispatch: bool = False, hint: str | None = None) -> Block:
    block: Block = {"type": "input", "block_id": block_id, "label": _text(label, 2000), "element": element,
                    "optional": optional}
    if dispatch:
        block["dispatch_action"] = True
    if hint:
        block["hint"] = _text(hint, 2000)
    return block


def _modal(callback_id: str, title: str, blocks: list[Block], *, submit: str | None, metadata: Any = None,
           close: str = "Cancel") -> dict[str, Any]:
    view: dict[str, Any] = {"type": "modal", "callback_id": callback_id, "title": _text(title, 24),
                            "close": _text(close, 24), "blocks": blocks[:MAX_VIEW_BLOCKS]}
    if submit:
        view["submit"] = _text(submit, 24)
    if metadata is not None:
        view["private_metadata"] = json.dumps(metadata, separators=(",", ":"))[:3000]
    return view


def offload_form(pools: Sequence[str], pool: str, kind: str, errors: Sequence[str] = ()) -> dict[str, Any]:
    """The form: pool, scope kind, target (searched live), modes, action, reason."""
    pool_options = [option(p, p) for p in pools[:100]] or [option("(no pools configured)", "-")]
    pool_select: dict[str, Any] = {"type": "static_select", "action_id": POOL_ACTION, "options": pool_options}
    if pool in pools:
        pool_select["initial_option"] = option(pool, pool)
    scope_select = {"type": "static_select", "action_id": SCOPE_ACTION,
                    "options": [option(label, k) for k, label in SCOPE_LABELS.items()],
                    "initial_option": option(SCOPE_LABELS.get(kind, kind), kind)}
    offered = PIF_MODES if kind == "pif" else VIF_MODES
    mode_options = [option(m, m) for m in offered]
    modes = {"type": "checkboxes", "action_id": MODES_ACTION, "options": mode_options,
             "initial_options": [option(m, m) for m in offered if m in DEFAULT_MODES]}
    target = {"type": "external_select", "action_id": TARGET_ACTION, "min_query_length": 0,
              "placeholder": _text(f"Type part of the {kind.upper()}'s name")}
    radio = {"type": "radio_buttons", "action_id": ACTION_ACTION,
             "options": [option(label, a) for a, label in ACTION_LABELS.items()],
             "initial_option": option(ACTION_LABELS["off"], "off")}
    reason = {"type": "plain_text_input", "action_id": REASON_ACTION, "max_length": 500,
              "placeholder": _text("e.g. discards on the web tier since the driver update")}
    blocks: list[Block] = [
        *(section(":warning: " + escape(e)) for e in errors[:3]),
        _input(POOL_BLOCK, "Pool", pool_select),
        _input(SCOPE_BLOCK, "What to change", scope_select, dispatch=True),
        _input(target_block(kind), SCOPE_LABELS.get(kind, kind), target,
               hint="Searches the pool's live inventory as you type."),
        _input(modes_block(kind), "Offload modes", modes,
               hint="gro and lro exist only on PIFs." if kind != "pif" else None),
        _input(ACTION_BLOCK, "Set them", radio),
        _input(REASON_BLOCK, "Reason", reason, optional=True),
        context("Nothing changes until an approver approves; you see the plan first."),
    ]
    return _modal(FORM_CALLBACK, "Change offloading", blocks, submit="Show the plan",
                  metadata={"kind": kind, "pool": pool})


def _plain_input(action_id: str, placeholder: str) -> dict[str, Any]:
    return {"type": "plain_text_input", "action_id": action_id, "placeholder": _text(placeholder)}


def policy_form(pools: Sequence[str], pool: str) -> dict[str, Any]:
    """``/xen policy set`` as a form: which interfaces of which pool keep which modes, and how."""
    pool_select: dict[str, Any] = {"type": "static_select", "action_id": POOL_ACTION,
                                   "options": [option(p, p) for p in pools[:100]] or [option("(none)", "-")]}
    if pool in pools:
        pool_select["initial_option"] = option(pool, pool)

    def radio(action: str, choices: Mapping[str, str], initial: str) -> dict[str, Any]:
        return {"type": "radio_buttons", "action_id": action, "options": [option(v, k) for k, v in choices.items()],
                "initial_option": option(choices[initial], initial)}

    modes = {"type": "checkboxes", "action_id": MODES_ACTION, "options": [option(m, m) for m in PIF_MODES],
             "initial_options": [option(m, m) for m in DEFAULT_MODES]}
    blocks: list[Block] = [
        _input(POOL_BLOCK, "Pool", pool_select),
        _input(POLICY_TARGET, "Interfaces", radio(POLICY_TARGET, {"vifs": "VIFs (of VMs)", "pifs": "PIFs (of hosts)"},
                                                  "vifs")),
        _input(modes_block("pif"), "Offload modes", modes, hint="gro and lro exist only on PIFs."),
        _input(ACTION_BLOCK, "Keep them", radio(ACTION_ACTION, {"off": "Off", "on": "On"}, "off")),
        _input(POLICY_MODE, "When an interface differs", radio(POLICY_MODE, {
            "report": "Report it", "enforce": "Report it, and request the fix for new interfaces"}, "report")),
        _input(EXCLUDE_NAMES, "Except VMs named", _plain_input(EXCLUDE_NAMES, "e.g. lab-*, test-db"), optional=True),
        _input(EXCLUDE_TAGS, "Except VMs tagged", _plain_input(EXCLUDE_TAGS, "e.g. no-policy"), optional=True),
        _input(HOST, "Only on host", _plain_input(HOST, "a host name; empty for the whole pool"), optional=True),
        context("A policy takes effect after approval, like a change."),
    ]
    return _modal(POLICY_CALLBACK, "Offload policy", blocks, submit="Request", metadata={"pool": pool})


def options(found: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The ``options`` answer of an external select (at most 100)."""
    return {"options": [option(label, value) for label, value in found[:100]]}


def plan_summary(plan: Plan, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The plan as the approval card will show it, with Request as the submit button."""
    lines = plan_lines(plan)
    blocks: list[Block] = [section(totals(plan)), *code_sections(lines)[:40]]
    if plan.notes:
        blocks.append(context(*(escape(n) for n in plan.notes)))
    blocks.append(context("Takes effect: " + " ".join(activation_lines(plan))))
    if metadata.get("reason"):
        blocks.append(context(f"Reason: {escape(str(metadata['reason']))}"))
    blocks.append(context("Request sends it to the approvers; the plan is computed again from live state then."))
    return _modal(SUMMARY_CALLBACK, "Offloading plan", blocks, submit="Request", metadata=dict(metadata),
                  close="Back")


def message_view(title: str, text: str) -> dict[str, Any]:
    """A modal that only says something (working on it, done, refused)."""
    return _modal("xenbot_form_message", title, [section(text)], submit=None, close="Close")


def working(what: str) -> dict[str, Any]:
    return message_view("Change offloading", f":hourglass_flowing_sand: {escape(what)}…")


def answered(reply: Reply) -> dict[str, Any]:
    """A service's reply (request posted, refused, nothing to do) shown in the modal."""
    blocks = [b for b in reply.blocks if b.get("type") in ("section", "context")][:20]
    return _modal("xenbot_form_message", "Change offloading", blocks or [section(escape(reply.text))],
                  submit=None, close="Close")


# -- Explain with xenbot --------------------------------------------------------------------


def nothing_recognised() -> Reply:
    text = ("xenbot found no alert in that message: no monitoring format it knows (Alertmanager, Grafana, "
            "Zabbix, LibreNMS, Icinga, Nagios, PRTG, Datadog) and no VM or host it could name.")
    return Reply(text=text, blocks=[section(":mag: " + escape(text))])


def refused(text: str) -> Reply:
    return Reply(text=text, blocks=[section(":no_entry: " + escape(text))], error=True)


def target_not_found(target: str, problem: str) -> Reply:
    text = f"The message is an alert about {target}, but xenbot could not find it: {problem}"
    return Reply(text=text, blocks=[section(":mag: " + escape(text))])


def explained(reply: Reply, share_command: str | None) -> Reply:
    """The diagnosis, privately; Share posts it again for everyone (re-run, access checked)."""
    note = context("Only you can see this.")
    if share_command is None:
        return Reply(text=reply.text, blocks=[*reply.blocks[:48], note], ephemeral=True)
    share = actions(button("Share", Action.SHARE, share_command))
    return Reply(text=reply.text, blocks=[*reply.blocks[:47], note, share], ephemeral=True)
