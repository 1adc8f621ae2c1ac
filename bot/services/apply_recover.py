"""Finishing a request whose holder died mid-apply: record what is done, write the rest."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from sqlalchemy import select

from bot.db.models import ChangeRequest, ChangeResult
from bot.domain.approvals import State
from bot.domain.changes import InterfacePlan, Plan
from bot.domain.model import PoolInventory
from bot.domain.outcomes import KeyState, judge
from bot.render import changes as render
from bot.services.apply_execute import apply_interfaces
from bot.services.apply_results import Outcome
from bot.xen.errors import XenError
from bot.xen.gateway import PoolGateway

if TYPE_CHECKING:
    from bot.services.apply import ApplyService


def resume(service: ApplyService, request: ChangeRequest) -> State | None:
    """A request found in ``applying`` with a dead holder: record what is done, finish the rest.

    Judged key by key from live state: a key at its target or still at its old value is
    xenbot's (an interrupted write), and so is one absent midway through a replace; only a
    key at a third value is someone else's, left alone and named in the thread."""
    if not service._claim(request, (State.APPLYING,), "system"):
        return None
    if request.kind in service.finishers:
        return service.finishers[request.kind](request, "system")
    left = left_to_do(service, request)
    if left is None:
        return State.APPLYING
    done, remaining, _gateway, inventory = left
    gone: list[Outcome] = []
    to_finish: list[InterfacePlan] = []
    live: dict[str, dict[str, str]] = {}
    at_target = 0
    foreign: list[tuple[str, dict[str, str | None]]] = []
    for item in remaining:
        iface = inventory.interface(item.uuid)
        if iface is None:
            gone.append(outcome_for(item, "gone", None, "interface no longer exists"))
            continue
        to_finish.append(_with_ref(item, iface.ref))
        live[item.uuid] = dict(iface.other_config)
        states = judge(item.previous(), item.expected(), iface.other_config)
        if all(s is KeyState.TARGET for s in states.values()):
            at_target += 1
        theirs = {k: iface.other_config.get(k) for k, s in states.items() if s is KeyState.FOREIGN}
        if theirs:
            foreign.append((item.label, theirs))
    if gone:
        service._store(request, gone)
    service.post_in_thread(
        request, render.resumed(request, len(done), at_target, len(to_finish) - at_target, foreign, len(gone))
    )
    return apply_interfaces(service, request, to_finish, resumed=True, live=live)


def left_to_do(
    service: ApplyService, request: ChangeRequest
) -> tuple[set[str], list[InterfacePlan], PoolGateway, PoolInventory] | None:
    """What a dead holder left: the interfaces recorded, those without a result, and the pool as it
    is now; None when the pool does not answer (the thread is told; recovery tries again)."""
    plan = Plan.from_json(request.plan)
    with service.sessions() as session:
        done = set(
            session.scalars(select(ChangeResult.interface_uuid).where(ChangeResult.request_id == request.id))
        )
    remaining = [i for i in plan.interfaces if i.uuid not in done]
    gateway = service.gateways.get(request.pool)
    try:
        inventory = gateway.inventory()
    except XenError as exc:
        service.post_in_thread(request, render.apply_postponed(request, str(exc)))
        return None
    return done, remaining, gateway, inventory


def outcome_for(item: InterfacePlan, status: str, after: dict[str, str | None] | None, error: str | None) -> Outcome:
    return Outcome(item.uuid, item.label, item.kind, status, item.previous(), after, error, item.activation)


def _with_ref(item: InterfacePlan, ref: str) -> InterfacePlan:
    """Refs can change across a master failover's restart; uuids do not."""
    return replace(item, ref=ref)
