"""What an activation left off (a VM halted, a VIF unplugged): the loud part of its card and thread.

It names the requester and approvers so they are notified, and offers the way back
(**Start VM** / **Plug VIF**, requests approved like any change).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bot.domain.activation import LEFT_OFF, LEFT_UNPLUGGED, Stranded
from bot.domain.slack_text import escape
from bot.render.blocks import Block, Reply, actions, button, context, fit, section
from bot.render.ids import Action

SHOWN = 15  # lines of what is off, within a section's 3,000 characters


class RequestLike(Protocol):
    id: int
    requester: str


def stranded_headline(stranded: Sequence[str]) -> str:
    vms = sum(1 for e in stranded if e.startswith(LEFT_OFF))
    vifs = len(stranded) - vms
    parts = ([f"{vms} VM(s) are now OFF"] if vms else []) + ([f"{vifs} VIF(s) left unplugged"] if vifs else [])
    return "ACTIVATION LEFT " + " and ".join(parts)


def stranded_blocks(request: RequestLike, stranded: Sequence[str], approvers: Sequence[str]) -> list[Block]:
    """The loud part: what is off, who must know (requester and approvers), and the way back."""
    people = " ".join(f"<@{u}>" for u in dict.fromkeys([request.requester, *approvers]))
    lines = "\n".join(f"• {escape(e)}" for e in stranded[:SHOWN])
    if len(stranded) > SHOWN:
        lines += f"\n… and {len(stranded) - SHOWN} more: `/xen change {request.id}`"
    blocks: list[Block] = [
        section(f":rotating_light: *{escape(stranded_headline(stranded))}* {people}\n{lines}"),
    ]
    buttons = []
    if any(e.startswith(LEFT_OFF) for e in stranded):
        buttons.append(button("Start VM (needs approval)", Action.START_VM, str(request.id), "danger"))
    if any(e.startswith(LEFT_UNPLUGGED) for e in stranded):
        buttons.append(button("Plug VIF (needs approval)", Action.PLUG_VIF, str(request.id), "danger"))
    blocks.append(actions(*buttons, block_id=f"stranded-{request.id}"))
    return blocks


def stranded_page(request: RequestLike, stranded: Sequence[Stranded], approvers: Sequence[str]) -> Reply:
    """Posted in the card's thread the moment an activation leaves a VM off or a VIF out."""
    errors = [s.error for s in stranded]
    blocks = stranded_blocks(request, errors, approvers)
    blocks.append(context(
        "xenbot tried again with back-off and gave up. Put it back by hand, or press the button: it asks "
        "for approval like any change."
    ))
    text = f"{stranded_headline(errors)} (activation #{request.id}): " + "; ".join(errors)
    return fit(Reply(text=text[:3000], blocks=blocks, ephemeral=False))
