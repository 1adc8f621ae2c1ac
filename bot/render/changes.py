"""Change requests → messages: preview, approval card, progress, summaries, history.

The approval card is re-rendered from the database after every decision, so
its buttons exist only while the request can still be decided — and the
services re-check every click anyway.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from bot.domain.activation import LEFT_OFF, LEFT_UNPLUGGED
from bot.domain.approvals import State
from bot.domain.changes import ACTIVATION_TEXT, AUTOMATIC_ACTIVATIONS, NOTHING_TO_ACTIVATE, Plan
from bot.domain.outcomes import STATUS_LABEL, Status
from bot.domain.slack_text import escape
from bot.render.blocks import Block, Reply, actions, button, code_sections, context, fit, section, table_lines
from bot.render.ids import Action
from bot.render.stranded import stranded_blocks, stranded_headline

ACTIVATION_WARNING = (
    ":warning: Activation interrupts traffic: VIFs are unplugged and plugged again, VMs without "
    "PV hotplug are shut down and started, PIFs are re-plugged. A start or plug that fails is tried "
    "again; anything still left off is paged here with a way back."
)
REPAIR_NOTE = ":rotating_light: Puts back what an activation left off. Approve soon: the guest is without it."

_STATE_ICON = {
    State.PENDING: ":hourglass_flowing_sand:",
    State.APPROVED: ":white_check_mark:",
    State.APPLYING: ":gear:",
    State.APPLIED: ":white_check_mark:",
    State.PARTIALLY_FAILED: ":warning:",
    State.FAILED: ":x:",
    State.REJECTED: ":no_entry:",
    State.CANCELLED: ":heavy_multiplication_x:",
    State.EXPIRED: ":alarm_clock:",
    State.STALE: ":arrows_counterclockwise:",
}


class RequestLike(Protocol):
    id: int
    kind: str
    state: str
    action: str
    pool: str
    scope_kind: str
    scope_label: str
    requester: str
    reason: str | None
    message_channel: str | None
    message_ts: str | None
    parent_id: int | None


def _value(v: str | None) -> str:
    return "(absent)" if v is None else v


_SCOPE_WORD = {"vm": "VM", "vif": "VIF", "pif": "PIF", "host": "host", "pool": "pool"}
_ACTION_WORDS = {"off": "Turn offload off", "on": "Turn offload on", "reset": "Reset offload settings"}
_REVERT_OF = re.compile(r"^revert of #\d+ \((?P<scope>.*)\)$")


def title(request: RequestLike) -> str:
    """What a person reads as the card's title: "Turn offload off for VM win7-kiosk (pool demo)"."""
    pool = f"pool {request.pool}"
    if request.kind == "start-vm":
        return f"Start VM {request.scope_label} left off by activation #{request.parent_id} ({pool})"
    if request.kind == "plug-vif":
        return f"Plug VIF {request.scope_label} left unplugged by activation #{request.parent_id} ({pool})"
    if request.kind == "activate":
        return f"Activate change #{request.parent_id} ({pool})"
    if request.kind == "revert":
        original = _REVERT_OF.match(request.scope_label)
        where = f"{original.group('scope')}, " if original else ""
        return f"Revert change #{request.parent_id} ({where}{pool})"
    if request.kind == "policy":
        target = request.scope_label.removeprefix("policy for ")
        return f"Offload policy for the {_SCOPE_WORD.get(target[:-1], target[:-1])}s of {pool}"
    if request.kind == "policy-remove":
        return f"{request.scope_label[:1].upper()}{request.scope_label[1:]} ({pool})"
    what = _ACTION_WORDS.get(request.action, f"Offload {request.action}")
    if request.scope_kind == "pool":
        return f"{what} for every interface of {pool}"
    return f"{what} for {_SCOPE_WORD.get(request.scope_kind, request.scope_kind)} {request.scope_label} ({pool})"


def plan_lines(plan: Plan) -> list[str]:
    rows = []
    for iface in plan.interfaces:
        if not iface.changes:
            rows.append((iface.label, iface.kind.upper(), "-", "-", ACTIVATION_TEXT.get(iface.activation, "")))
        for n, change in enumerate(iface.changes):
            rows.append(
                (
                    iface.label if n == 0 else "",
                    iface.kind.upper() if n == 0 else "",
                    change.key,
                    f"{_value(change.before)} -> {_value(change.after)}",
                    iface.activation if n == 0 else "",
                )
            )
    return table_lines(("INTERFACE", "KIND", "KEY", "CHANGE", "TAKES EFFECT BY"), rows)


def totals(plan: Plan) -> str:
    vifs = sum(1 for i in plan.interfaces if i.kind == "vif")
    pifs = len(plan.interfaces) - vifs
    keys = sum(len(i.changes) for i in plan.interfaces)
    parts = [
        f"*{len(plan.interfaces)}* {_count(len(plan.interfaces), 'interface')} to change "
        f"({vifs} {_count(vifs, 'VIF')}, {pifs} {_count(pifs, 'PIF')}, {keys} {_count(keys, 'key')})"
    ]
    if plan.unchanged:
        parts.append(f"{plan.unchanged} already as asked")
    if plan.modes:
        parts.append(f"modes {', '.join(plan.modes)}")
    return " · ".join(parts)


def _count(n: int, word: str) -> str:
    return word if n == 1 else word + "s"


def activation_lines(plan: Plan) -> list[str]:
    counts = Counter(i.activation for i in plan.interfaces)
    return [f"• {n} x {escape(ACTIVATION_TEXT.get(method, method))}" for method, n in counts.most_common()]


def nothing_to_do(plan: Plan) -> Reply:
    text = (
        f"Nothing to change: all {plan.unchanged} interface(s) of {plan.scope_kind} "
        f"{plan.scope_label} already have {', '.join(plan.modes) or 'those values'} as asked."
    )
    return Reply(text=text, blocks=[section(":white_check_mark: " + escape(text))])


def request_posted(request: RequestLike, plan: Plan) -> Reply:
    where = f" in <#{request.message_channel}>" if request.message_channel else ""
    text = f"Change #{request.id} is waiting for approval{where}: {_plain(totals(plan))}."
    # totals() is already escaped markup; the channel link is ours, so the notification keeps it live.
    return Reply(text=_plain(text), blocks=[section(f":hourglass_flowing_sand: {text}")], fallback=_plain(text))


def approval_message(
    request: RequestLike,
    plan: Plan,
    approvers: Sequence[str],
    required: int,
    note: str | None = None,
    stranded: Sequence[str] = (),
) -> Reply:
    """The card; ``stranded`` (errors of VMs/VIFs an activation left off) goes on top, loudly."""
    state = State(request.state)
    head = f"{_STATE_ICON.get(state, '')} *Change #{request.id}: {escape(title(request))}* — {state.label}"
    alarm = stranded_blocks(request, stranded, approvers) if stranded else []
    meta = f"Requested by <@{request.requester}>"
    if request.reason:
        meta += f" · reason: {escape(request.reason)}"
    if approvers:
        meta += " · approved by " + ", ".join(f"<@{a}>" for a in approvers)
    if state is State.PENDING:
        meta += f" · needs {max(required - len(approvers), 0)} more approval(s)"
    blocks: list[Block] = [*alarm, section(head), context(meta)]
    if note:
        blocks.append(section(escape(note) if not note.startswith(":") else note))
    if plan.interfaces:
        blocks.append(section(totals(plan)))
    if plan.notes:
        blocks.append(context(*(escape(n) for n in plan.notes)))
    lines = plan_lines(plan) if plan.interfaces else []
    if plan.interfaces:
        blocks += code_sections(lines)
        blocks.append(context("Takes effect: " + " ".join(activation_lines(plan))))
    elif request.kind in ("policy", "policy-remove"):
        blocks.append(context("No interface setting changes when this is approved."))
    if state is State.PENDING:
        value = str(request.id)
        blocks.append(
            actions(
                approve_button(value, plan),
                button("Reject", Action.REJECT, value, "danger"),
                button("Cancel (requester)", Action.CANCEL, value),
                block_id=f"change-{request.id}",
            )
        )
    text = f"Change #{request.id}: {title(request)} — {state.label}"
    if stranded:
        text = f"{stranded_headline(stranded)} — {text}"
    return fit(Reply(text=text, blocks=blocks, ephemeral=False), "\n".join(lines) + "\n", f"change-{request.id}.txt")


WIDE_SCOPES = frozenset({"host", "pool"})


def approve_confirm(plan: Plan) -> dict[str, Any] | None:
    """Slack's confirm dialog for Approve on a host- or pool-wide change: a mis-click there
    rewrites every interface of the host or pool and schedules a disruptive activation, so the
    dialog names how many interfaces and which activation they need. Slack's limits: title 100,
    text 300, buttons 30 characters."""
    if plan.scope_kind not in WIDE_SCOPES:
        return None
    counts = Counter(i.activation for i in plan.interfaces)
    needs = ", ".join(f"{n} x {m}" for m, n in counts.most_common())
    text = f"This changes {len(plan.interfaces)} interfaces on {plan.scope_kind} {plan.scope_label}."
    if needs:
        text += f" To take effect they need activation: {needs} (details on the card)."
    return {
        "title": {"type": "plain_text", "text": f"Approve a {plan.scope_kind}-wide change?"},
        "text": {"type": "plain_text", "text": text if len(text) <= 300 else text[:299] + "…"},
        "confirm": {"type": "plain_text", "text": "Approve"},
        "deny": {"type": "plain_text", "text": "Not yet"},
        "style": "danger",
    }


def approve_button(value: str, plan: Plan) -> dict[str, Any]:
    """The Approve button of a pending change, with the confirm dialog when the scope is wide."""
    element = button("Approve", Action.APPROVE, value, "primary")
    confirm = approve_confirm(plan)
    if confirm is not None:
        element["confirm"] = confirm
    return element


def refusal(text: str) -> Reply:
    return Reply(text=text, blocks=[section(":no_entry: " + escape(text))], error=True)


def approval_recorded(request: RequestLike, approved: bool, left: int = 1) -> Reply:
    needs = "another approver" if left == 1 else f"{left} more approvers"
    text = (
        f"You approved change #{request.id}; applying it now."
        if approved
        else f"Your approval of change #{request.id} is recorded; it needs {needs}."
    )
    return Reply(text=text, blocks=[section(":white_check_mark: " + escape(text))])


def already_approved(request: RequestLike, reason: str) -> Reply:
    """A repeated click (double click, Slack retry, another replica): where the request stands, not an error."""
    text = f"Change #{request.id}: {reason}."
    return Reply(text=text, blocks=[section(":information_source: " + escape(text))])


def closed(request_id: int, state: State, user: str) -> Reply:
    text = f"Change #{request_id} is {state.label}."
    return Reply(text=text, blocks=[section(f"{_STATE_ICON.get(state, '')} {escape(text)}")])


def progress(request: RequestLike, done: int, total: int) -> Reply:
    text = f"Change #{request.id}: applying — {done}/{total} interfaces done"
    return Reply(text=text, blocks=[section(f":gear: *{escape(title(request))}*\n{escape(text)}")], ephemeral=False)


def apply_postponed(request: RequestLike, reason: str, attempt: int | None = None, limit: int | None = None) -> Reply:
    tries = f" (try {attempt} of {limit}; after {limit} the request fails)" if attempt and limit else ""
    text = (
        f"Change #{request.id} is approved but could not be applied: {reason}. Nothing was written; "
        f"xenbot keeps the approved request and tries again when the pool answers{tries}."
    )
    return Reply(text=text, blocks=[section(":warning: " + escape(text))], ephemeral=False)


def gave_up(request: RequestLike, final: State, attempts: int, reason: str, applied: int, failed: int) -> Reply:
    """xenbot stops trying: why, what was done, and what people can do now."""
    if not applied:
        done = "Nothing was written."
    else:
        done = f"{applied} interface(s) were changed (see `/xen change {request.id}`)"
        done += f"; {failed} were not." if failed else "."
    text = (
        f"Change #{request.id} {final.label}: xenbot tried {attempts} time(s) to apply it and stops trying. "
        f"Last reason: {reason}. {done} Fix the cause and request the change again if it is still needed; "
        "xenbot will not try this request again."
    )
    return Reply(text=text, blocks=[section(f"{_STATE_ICON.get(final, '')} " + escape(text))], ephemeral=False)


def recording_delayed(request: RequestLike, reason: str, patience: float, write_window: float) -> Reply:
    text = (
        f"Change #{request.id}: xenbot's database is unreachable ({reason}). The pool writes go on for up "
        f"to {write_window:.0f} s; their results are kept in memory and stored as soon as the database "
        f"answers (xenbot waits up to {patience:.0f} s). Whatever is left is finished from what the pool "
        "shows once the database is back. Nothing will be written twice."
    )
    return Reply(text=text, blocks=[section(":warning: " + escape(text))], ephemeral=False)


def recording_abandoned(request: RequestLike) -> Reply:
    text = (
        f"Change #{request.id}: the database was unreachable for longer than xenbot waits. The pool writes "
        "that were done are not lost: once the database is back, xenbot reads them from the pool, records "
        "them and finishes this change (within a minute or two). Nothing will be written twice."
    )
    return Reply(text=text, blocks=[section(":warning: " + escape(text))], ephemeral=False)


def recording_resumed(request: RequestLike, seconds: float) -> Reply:
    text = f"Change #{request.id}: the database answers again after {seconds:.0f} s; the delayed results are stored."
    return Reply(text=text, blocks=[section(":white_check_mark: " + escape(text))], ephemeral=False)


def stale_note(request: RequestLike, old: Plan, fresh: Plan, gone: Sequence[str] = ()) -> str:
    old_ids = {i.uuid: i for i in old.interfaces}
    new_ids = {i.uuid: i for i in fresh.interfaces}
    added = [i.label for u, i in new_ids.items() if u not in old_ids]
    missing = set(gone)
    dropped = [i.label for u, i in old_ids.items() if u not in new_ids and i.label not in missing]
    changed = [i.label for u, i in new_ids.items() if u in old_ids and old_ids[u].changes != i.changes]
    parts = [
        f"Change #{request.id} was approved, but live state differs from what was approved, so nothing was applied."
    ]
    if gone:
        parts.append(f"No longer exist: {_some(gone)}.")
    if added:
        parts.append(f"New: {_some(added)}.")
    if dropped:
        parts.append(f"No longer needed: {_some(dropped)}.")
    if changed:
        parts.append(f"Values changed meanwhile: {_some(changed)}.")
    parts.append("Please review the new plan below.")
    return " ".join(parts)


def stale_reason(
    request: RequestLike, old: Plan, fresh: Plan, gone: Sequence[str], new_id: int | None
) -> Reply:
    """Posted in the stale request's own thread, so whoever approved it learns what became of it."""
    if new_id is not None:
        text = stale_note(request, old, fresh, gone).removesuffix(" Please review the new plan below.")
        text += f" What is left to change is change #{new_id}, posted for approval."
    elif gone and len(gone) == len(old.interfaces):
        text = (
            f"Change #{request.id} is stale: nothing was applied, because the {old.scope_kind} "
            f"{old.scope_label} and its approved interfaces no longer exist ({_some(gone)}): "
            "destroyed, or their interfaces removed, since it was requested. Nothing is left to approve."
        )
    else:
        text = f"Change #{request.id} is stale: live state already matches it, so there is nothing left to apply."
        if gone:
            text += f" No longer exist: {_some(gone)}."
    return Reply(text=text, blocks=[section(":arrows_counterclockwise: " + escape(text))], ephemeral=False)


def _some(labels: Sequence[str], limit: int = 20) -> str:
    return ", ".join(labels[:limit]) + (" …" if len(labels) > limit else "")


def left_unread(request: RequestLike, count: int) -> Reply:
    text = (
        f"Change #{request.id}: {count} interface(s) could not be read back after a lost answer, so what "
        "they hold is not known yet. Nothing is recorded as a guess: the change stays applying, and "
        "xenbot reads them again and finishes them as soon as the pool answers."
    )
    return Reply(text=text, blocks=[section(":hourglass_flowing_sand: " + escape(text))], ephemeral=False)


def resumed(
    request: RequestLike,
    recorded: int,
    found: int,
    remaining: int,
    foreign: Sequence[tuple[str, Mapping[str, str | None]]] = (),
    gone: int = 0,
) -> Reply:
    """Recovery's first word: what it found, and exactly which keys are someone else's."""
    text = (
        f"Change #{request.id} was interrupted (xenbot stopped while applying). Resuming: {recorded} interfaces "
        f"were recorded before, {found} found already at their target, {remaining} still to finish"
        + (f", {gone} no longer exist" if gone else "")
        + "."
    )
    blocks: list[Block] = [section(":arrows_counterclockwise: " + escape(text))]
    if foreign:
        lines = table_lines(("INTERFACE", "KEY", "VALUE"), [
            (label, k.removeprefix("ethtool-"), _value(v)) for label, keys in foreign for k, v in sorted(keys.items())
        ])
        blocks.append(section(
            f"*{len(foreign)} interface(s) have keys someone else changed while xenbot was down*; "
            "xenbot leaves those keys alone and finishes the rest:"
        ))
        blocks += code_sections(lines)
        text += f" Left alone (someone else's value): {len(foreign)} interface(s)."
    return fit(Reply(text=text, blocks=blocks, ephemeral=False))


def apply_summary(
    request: RequestLike,
    final: State,
    counts: Mapping[str, int],
    failures: Sequence[tuple[str, str]],
    activation: Mapping[str, int],
) -> Reply:
    others = [
        f"{counts[s]} {STATUS_LABEL[s]}" for s in (Status.PARTIAL, Status.CONFLICT, Status.FAILED, Status.VERIFY_FAILED)
        if counts.get(s)
    ]
    head = (
        f"{_STATE_ICON.get(final, '')} *Change #{request.id} {final.label}*: "
        f"{counts.get('applied', 0)} interfaces changed and verified"
        + (", " + ", ".join(others) if others else "")
    )
    blocks: list[Block] = [section(head)]
    if failures:
        lines = table_lines(("INTERFACE", "WHAT IS THERE"), failures)
        blocks.append(section("*Not fully changed* (every key is at its target, untouched, or someone else's)"))
        blocks += code_sections(lines)
    pending = {m: n for m, n in activation.items() if m not in NOTHING_TO_ACTIVATE}
    waiting = {m: n for m, n in activation.items() if m in NOTHING_TO_ACTIVATE}
    if activation:
        lines = [f"• {n} x {escape(ACTIVATION_TEXT.get(m, m))}" for m, n in sorted(activation.items())]
        blocks.append(section("*To take effect*\n" + "\n".join(lines)))
    buttons = []
    if any(m in AUTOMATIC_ACTIVATIONS for m in pending):
        buttons.append(button("Activate now (needs approval)", Action.ACTIVATE, str(request.id), "primary"))
    buttons.append(button("Revert (needs approval)", Action.REVERT, str(request.id)))
    if request.kind == "offload" and request.scope_kind in ("pool", "host") and request.action in ("off", "on"):
        buttons.append(button("Keep as policy (report drift)", Action.SAVE_POLICY, str(request.id)))
    blocks.append(actions(*buttons, block_id=f"done-{request.id}"))
    if pending:
        blocks.append(context(f"{sum(pending.values())} interface(s) show *pending activation* until then."))
    elif waiting:
        blocks.append(context("Nothing xenbot can activate now (see *To take effect*)."))
    text = f"Change #{request.id} {final.label}"
    return fit(Reply(text=text, blocks=blocks, ephemeral=False))


def activation_summary(
    request: RequestLike, final: State, counts: Mapping[str, int], failures: Sequence[tuple[str, str]]
) -> Reply:
    head = (
        f"{_STATE_ICON.get(final, '')} *Activation #{request.id} {final.label}*: "
        f"{counts.get('activated', 0)} interfaces now run with their configured offload settings"
        + (f", {len(failures)} failed" if failures else "")
    )
    stranded = list(dict.fromkeys(e for _l, e in failures if e.startswith((LEFT_OFF, LEFT_UNPLUGGED))))
    blocks: list[Block] = [section(head)]
    if stranded:
        blocks = [*stranded_blocks(request, stranded, ())[:1], *blocks]
    if failures:
        blocks += code_sections(table_lines(("INTERFACE", "ERROR"), failures))
    text = f"Activation #{request.id} {final.label}"
    if stranded:
        text = f"{stranded_headline(stranded)} — {text}"
    return fit(Reply(text=text, blocks=blocks, ephemeral=False))


def change_list(rows: Sequence[tuple[Any, Sequence[str]]]) -> Reply:
    if not rows:
        return Reply(text="No change requests yet.", blocks=[section("No change requests yet.")])
    lines = table_lines(
        ("ID", "STATE", "WHAT", "REQUESTER", "APPROVERS", "CREATED (UTC)"),
        [
            (
                f"#{r.id}",
                State(r.state).label,
                title(r),
                r.requester,
                ",".join(a) or "-",
                r.created_at.strftime("%Y-%m-%d %H:%M"),
            )
            for r, a in rows
        ],
    )
    blocks = [section(f"*Last {len(rows)} change requests*"), *code_sections(lines)]
    return fit(Reply(text="Recent change requests", blocks=blocks), "\n".join(lines) + "\n", "changes.txt")


def change_detail(request: Any, approvers: Sequence[str], results: Sequence[Any]) -> Reply:
    plan = Plan.from_json(request.plan)
    state = State(request.state)
    blocks: list[Block] = [
        section(f"{_STATE_ICON.get(state, '')} *Change #{request.id}: {escape(title(request))}* — {state.label}"),
        context(
            f"Requested by <@{request.requester}> at {request.created_at:%Y-%m-%d %H:%M} UTC"
            + (f" · approved by {', '.join(f'<@{a}>' for a in approvers)}" if approvers else "")
            + (f" · reason: {escape(request.reason)}" if request.reason else "")
        ),
        section(totals(plan)),
    ]
    lines = plan_lines(plan)
    full = ["Plan:", *lines]
    if results:
        result_lines = table_lines(
            ("INTERFACE", "STATUS", "BEFORE", "AFTER", "ERROR"),
            [
                (
                    r.label,
                    STATUS_LABEL.get(r.status, r.status),
                    _map(r.before),
                    _map(r.after) if r.after is not None else "-",
                    r.error or "",
                )
                for r in results
            ],
        )
        blocks.append(section("*Results*"))
        blocks += code_sections(result_lines)
        full += ["", "Results:", *result_lines]
    else:
        blocks += code_sections(lines)
    return fit(Reply(text=f"Change #{request.id}", blocks=blocks), "\n".join(full) + "\n", f"change-{request.id}.txt")


def _map(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k.removeprefix('ethtool-')}={_value(v)}" for k, v in sorted(values.items())) or "-"


def _plain(text: str) -> str:
    return text.replace("*", "")


def with_note(reply: Reply, note: str) -> Reply:
    """The same message with a line on top saying why it is different (e.g. posted late)."""
    return fit(replace(reply, blocks=[context(escape(note)), *reply.blocks]))
