"""One person's Home tab as a ``home`` view.

Approve / Reject here carry the approval card's own action ids and values, so a click is
routed and judged exactly like one on the card (handlers/actions.py says how a Home-tab click
is authorised). Approve on a host- or pool-wide change has the same confirm dialog as the card.
Slack's limit for a view is 100 blocks; every list here is capped well below it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.domain.approvals import State
from bot.domain.policy import PolicySpec
from bot.domain.slack_text import escape
from bot.render.blocks import Block, actions, button, context, divider, header, section
from bot.render.changes import approve_button, title, totals
from bot.render.forms import OPEN_FORM, OPEN_POLICY
from bot.render.ids import Action

if TYPE_CHECKING:  # render stays free of services at run time
    from bot.services.home import HomeData

HOME_CALLBACK = "xenbot_home"
MAX_VIEW_BLOCKS = 100
MAX_LISTED = 10  # per part: with two blocks per request, the tab stays far below 100 blocks


def home_view(home: HomeData) -> dict[str, Any]:
    blocks: list[Block] = [header("xenbot")]
    if home.notice:
        blocks.append(section(escape(home.notice)))
    if home.operator:
        blocks.append(actions(button("Change offloading", OPEN_FORM, "vm", "primary"),
                              button("Set a policy", OPEN_POLICY, "vifs"), block_id="home-forms"))
    blocks += _waiting(home)
    if not home.operator:
        blocks.append(context(f"The rest of xenbot is for its operators: {escape(home.refusal)}."))
    else:
        blocks += _pools(home) + _mine(home) + _policies(home) + _alerts(home)
    if home.problems:
        blocks.append(context(*(":warning: Could not read " + escape(p) for p in home.problems)))
    blocks.append(context("Updates by itself when something here changes."))
    return {"type": "home", "callback_id": HOME_CALLBACK, "blocks": blocks[:MAX_VIEW_BLOCKS]}


def _waiting(home: HomeData) -> list[Block]:
    blocks: list[Block] = [divider(), section("*Waiting for your approval*")]
    if not home.waiting:
        return [*blocks, context("Nothing waits for you.")]
    for item in home.waiting[:MAX_LISTED]:
        request, plan = item.request, item.plan
        blocks.append(section(f"*#{request.id}* {escape(title(request))}\n{totals(plan)}\n"
                              f"Requested by <@{request.requester}>"
                              + (f" · {escape(request.reason)}" if request.reason else "")))
        value = str(request.id)
        blocks.append(actions(approve_button(value, plan), button("Reject", Action.REJECT, value, "danger"),
                              block_id=f"home-change-{request.id}"))
    return blocks


def _pools(home: HomeData) -> list[Block]:
    lines = []
    for pool in home.pools[:20]:
        if pool.error:
            lines.append(f":red_circle: *{escape(pool.name)}* does not answer: {escape(pool.error)}")
        else:
            lines.append(f":large_green_circle: *{escape(pool.name)}* master {escape(pool.master_name)} · "
                         f"{pool.hosts} hosts, {pool.vms} VMs")
    return [divider(), section("*Pools*\n" + ("\n".join(lines) or "No pools are configured."))]


def _mine(home: HomeData) -> list[Block]:
    lines = [f"#{r.id} {escape(title(r))} — *{State(r.state).label}*" for r in home.mine[:MAX_LISTED]]
    return [divider(), section("*Your requests*\n" + ("\n".join(lines) or "You have not requested anything yet."))]


def _policies(home: HomeData) -> list[Block]:
    lines = [f"#{p.id} {escape(PolicySpec.from_json(p.spec).describe())}: "
             f"*{c.complying} comply, {len(c.drifting)} drift*" for p, c in home.policies[:MAX_LISTED]]
    return [divider(), section("*Policies*\n" + ("\n".join(lines) or "No active policies."))]


def _alerts(home: HomeData) -> list[Block]:
    lines = [f"{a.last_seen:%m-%d %H:%M} {escape(a.vm_name or a.target)} ({escape(a.source)}, {escape(a.status)}): "
             f"*{escape(a.verdict or 'not found')}*" for a in home.alerts[:MAX_LISTED]]
    return [divider(), section("*Last alerts*\n" + ("\n".join(lines) or "No alerts seen yet."))]
