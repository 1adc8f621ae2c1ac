"""Finishing a request whose holder died mid-apply: record what is done, write the rest."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from sqlalchemy import select

from bot.db.models import ChangeRequest, ChangeResult
from bot.domain.approvals import State
from bot.domain.changes import InterfacePlan, Plan
from bot.render import changes as render
from bot.services.apply_execute import apply_interfaces
from bot.services.apply_results import Outcome
from bot.xen.errors import XenError

if TYPE_CHECKING:
    from bot.services.apply import ApplyService


def resume(service: ApplyService, request: ChangeRequest) -> State | None:
    """A request found in ``applying`` with a dead holder: record what is done, do the rest."""
    if not service._claim(request, (State.APPLYING,), "system"):
        return None
    if request.kind in service.finishers:
        return service.finishers[request.kind](request, "system")
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
        return State.APPLYING
    to_write: list[InterfacePlan] = []
    found: list[Outcome] = []
    for item in remaining:
        live = inventory.interface(item.uuid)
        if live is None:
            found.append(outcome_for(item, "failed", None, "interface no longer exists"))
            continue
        values = {k: live.other_config.get(k) for k in item.expected()}
        if values == item.expected():
            found.append(outcome_for(item, "applied", values, None))
        elif values == item.previous():
            to_write.append(_with_ref(item, live.ref))
        else:
            found.append(outcome_for(item, "failed", values, "changed by someone else while xenbot was down"))
    if found:
        service._store(request, found)
    service.post_in_thread(request, render.resumed(request, len(done), len(found), len(to_write)))
    return apply_interfaces(service, request, to_write, resumed=True)


def outcome_for(item: InterfacePlan, status: str, after: dict[str, str | None] | None, error: str | None) -> Outcome:
    return Outcome(item.uuid, item.label, item.kind, status, item.previous(), after, error, item.activation)


def _with_ref(item: InterfacePlan, ref: str) -> InterfacePlan:
    """Refs can change across a master failover's restart; uuids do not."""
    return replace(item, ref=ref)
