"""Activation: making an applied setting take effect (VIF replug, PIF plug, VM power cycle)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from bot.db.models import ChangeRequest
from bot.domain.approvals import State
from bot.domain.changes import InterfacePlan, Plan
from bot.domain.model import PoolInventory, Vif
from bot.services.apply_recover import outcome_for
from bot.services.apply_results import Collector, Outcome
from bot.xen.errors import XapiUnavailable, XenError
from bot.xen.gateway import PoolGateway

if TYPE_CHECKING:
    from bot.services.apply import ApplyService

log = logging.getLogger(__name__)

SETTLE_SECONDS = 300.0  # how long a state change whose answer was lost may take to show (a guest's shutdown)
SETTLE_POLL_SECONDS = 1.0


def activate(service: ApplyService, request: ChangeRequest, actor: str) -> State | None:
    if not service._claim(request, (State.APPROVED,), actor):
        return None
    plan = Plan.from_json(request.plan)
    gateway = service.gateways.get(request.pool)
    try:
        inventory = gateway.inventory()
    except XenError as exc:
        outcomes = [outcome_for(i, "failed", None, str(exc)) for i in plan.interfaces]
        service._store(request, outcomes)
        return service._finish(request, resumed=False)
    collector = Collector(service, request, total=len(plan.interfaces))
    by_vm: dict[str, list[InterfacePlan]] = {}
    singles: list[InterfacePlan] = []
    for item in plan.interfaces:
        if item.activation == "vm-power-cycle":
            by_vm.setdefault(item.owner, []).append(item)
        else:
            singles.append(item)

    def one(item: InterfacePlan) -> None:
        collector.add(_activate_one(gateway, inventory, item))

    def vm(items: list[InterfacePlan]) -> None:
        for outcome_ in _power_cycle(gateway, inventory, items):
            collector.add(outcome_)

    try:
        gateway.map(one, singles)
        gateway.map(vm, list(by_vm.values()))
    finally:
        collector.close()
    return None if collector.lost else service._finish(request, resumed=False)

def _activate_one(gateway: PoolGateway, inventory: PoolInventory, item: InterfacePlan) -> Outcome:
    iface = inventory.interface(item.uuid)
    if iface is None:
        return outcome_for(item, "failed", None, "interface no longer exists")
    try:
        if isinstance(iface, Vif):
            settle(gateway, "VIF.unplug", iface.ref, "VIF.get_currently_attached", False)
            settle(gateway, "VIF.plug", iface.ref, "VIF.get_currently_attached", True)
        elif iface.bond_slave_of:
            master = gateway.call("Bond.get_master", iface.bond_slave_of)
            settle(gateway, "PIF.plug", master, "PIF.get_currently_attached", True)
        else:
            settle(gateway, "PIF.plug", iface.ref, "PIF.get_currently_attached", True)
    except XenError as exc:
        return outcome_for(item, "failed", None, getattr(exc, "short", str(exc)))
    return outcome_for(item, "activated", None, None)

def _power_cycle(gateway: PoolGateway, inventory: PoolInventory, items: list[InterfacePlan]) -> list[Outcome]:
    iface = inventory.interface(items[0].uuid)
    if not isinstance(iface, Vif):
        return [outcome_for(i, "failed", None, "interface no longer exists") for i in items]
    try:
        settle(gateway, "VM.clean_shutdown", iface.vm_ref, "VM.get_power_state", "Halted")
        settle(gateway, "VM.start", iface.vm_ref, "VM.get_power_state", "Running", False, False)
    except XenError as exc:
        return [outcome_for(i, "failed", None, getattr(exc, "short", str(exc))) for i in items]
    return [outcome_for(i, "activated", None, None) for i in items]



def settle(gateway: PoolGateway, method: str, ref: str, probe: str, wanted: object, *extra: object) -> None:
    """Make a state change once; if its answer is lost, look at the state instead of guessing.

    Re-sending would fail (``DEVICE_ALREADY_ATTACHED``, ``VM_BAD_POWER_STATE``) or act twice,
    and treating a lost answer as a failure could leave a VM halted that was meant to restart.
    A lost answer is often a timeout on an operation still under way (a guest can take minutes
    to shut down), so the state is watched for a while, as long as the pool keeps answering."""
    try:
        gateway.call(method, ref, *extra, idempotent=False)
    except XapiUnavailable:
        deadline = time.monotonic() + SETTLE_SECONDS
        while gateway.call(probe, ref) != wanted:  # an unreachable pool raises here: nothing to wait for
            if time.monotonic() >= deadline:
                raise
            time.sleep(SETTLE_POLL_SECONDS)
        log.info("%s on %s: answer lost, but the state shows it happened", method, ref)
