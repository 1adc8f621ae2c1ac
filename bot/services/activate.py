"""Activation: making an applied setting take effect (VIF replug, PIF plug, VM power cycle).

Activation interrupts traffic on purpose, so it must never leave things worse than a brief
drop: each step is checked again against live state (a VM may block an operation since, a
bond may carry management now), a start or plug that fails after the shutdown or unplug
is tried again with back-off, and a VM or VIF still left off is paged loudly, with a
**Start VM** / **Plug VIF** request (approved like any change) offered to put it back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from bot.db.models import ChangeRequest
from bot.domain.activation import (
    ACTIVATION_TEXT,
    LEFT_OFF,
    LEFT_UNPLUGGED,
    Stranded,
    activation_for,
    activation_warning,
    blocked,
    bond_master,
)
from bot.domain.approvals import State
from bot.domain.changes import InterfacePlan, Plan
from bot.domain.model import Pif, PoolInventory, Vif
from bot.render import changes as render
from bot.render.stranded import stranded_page
from bot.services.apply_recover import left_to_do, outcome_for
from bot.services.apply_results import Collector, Outcome
from bot.xen.errors import XapiUnavailable, XenError
from bot.xen.gateway import PoolGateway

if TYPE_CHECKING:
    from bot.services.apply import ApplyService

log = logging.getLogger(__name__)

SETTLE_SECONDS = 300.0  # how long a state change whose answer was lost may take to show (a guest's shutdown)
SETTLE_POLL_SECONDS = 1.0
# Pauses before trying a failed VM.start / VIF.plug again (after the shutdown / unplug went through):
# a transient refusal (memory being freed, a busy toolstack) usually clears within seconds.
RETRY_DELAYS: tuple[float, ...] = (2.0, 5.0, 15.0)

_POWER = frozenset({"vm-power-cycle", "vm-start"})
INTERRUPTED = (
    "interrupted (xenbot stopped while activating): XAPI cannot show whether this step ran; "
    "still pending, activate again to be sure"
)


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
    return _run(service, request, gateway, inventory, list(plan.interfaces), resumed=False)


def resume_activation(service: ApplyService, request: ChangeRequest) -> State | None:
    """A replica died while activating: finish what it may have left half done.

    A VM it may have shut down (now Halted) is started, with the same retries and page; a VIF
    it may have unplugged (now out, its VM running) is plugged. A step whose effect XAPI cannot
    show (a VM still running, a VIF or PIF attached) is not repeated blindly — it is recorded as
    not done and stays pending, so nobody is told it took effect when it may not have."""
    if not service._claim(request, (State.APPLYING,), "system"):
        return None
    left = left_to_do(service, request)
    if left is None:
        return State.APPLYING
    done, remaining, gateway, inventory = left
    service.post_in_thread(request, render.resumed(request, len(done), 0, len(remaining)))
    return _run(service, request, gateway, inventory, remaining, resumed=True)


def _run(
    service: ApplyService,
    request: ChangeRequest,
    gateway: PoolGateway,
    inventory: PoolInventory,
    items: list[InterfacePlan],
    *,
    resumed: bool,
) -> State | None:
    collector = Collector(service, request, total=len(items))
    stranded: list[Stranded] = []
    by_vm: dict[str, list[InterfacePlan]] = {}
    singles: list[InterfacePlan] = []
    for item in items:
        if item.activation in _POWER:
            by_vm.setdefault(item.owner, []).append(item)
        else:
            singles.append(item)

    def one(item: InterfacePlan) -> None:
        step = _resume_one if resumed else _activate_one
        collector.add(step(gateway, inventory, item, stranded))

    def vm(group: list[InterfacePlan]) -> None:
        for outcome_ in _power_cycle(gateway, inventory, group, stranded, resumed=resumed):
            collector.add(outcome_)

    try:
        gateway.map(one, singles)
        gateway.map(vm, list(by_vm.values()))
    finally:
        collector.close()
    if collector.lost:
        return None
    if stranded:
        approvers = service.changes.approvers_of(request.id)
        service.post_in_thread(request, stranded_page(request, stranded, approvers))
    final = service._finish(request, resumed=resumed)
    if request.kind != "activate" and request.parent_id:
        service.changes.refresh_message(request.parent_id)  # its "left off" banner goes once put back
    return final


def _resume_one(
    gateway: PoolGateway, inventory: PoolInventory, item: InterfacePlan, stranded: list[Stranded]
) -> Outcome:
    iface = inventory.interface(item.uuid)
    if iface is None:
        return outcome_for(item, "failed", None, "interface no longer exists")
    if isinstance(iface, Vif):
        vm = inventory.vms.get(iface.vm_ref)
        if vm is not None and vm.running and not iface.currently_attached:
            return _plug_again(gateway, inventory, item, iface, stranded)  # it was unplugged: plug it
        if item.activation == "vif-plug" and iface.currently_attached:
            return outcome_for(item, "activated", None, None)
    return outcome_for(item, "failed", None, INTERRUPTED)


def _still(item: InterfacePlan, live: str, inventory: PoolInventory, iface: Vif | Pif) -> str | None:
    """Why the planned step must not run any more (live state moved on), or None."""
    if live == item.activation:
        return None
    warning = activation_warning(iface, inventory)
    return f"not done: {ACTIVATION_TEXT.get(live, live)}" + (f" ({warning})" if warning else "")


def _activate_one(
    gateway: PoolGateway, inventory: PoolInventory, item: InterfacePlan, stranded: list[Stranded]
) -> Outcome:
    iface = inventory.interface(item.uuid)
    if iface is None:
        return outcome_for(item, "failed", None, "interface no longer exists")
    if isinstance(iface, Vif):
        if item.activation == "vif-plug":
            return _plug_again(gateway, inventory, item, iface, stranded)
        refusal = _still(item, activation_for(iface, inventory), inventory, iface)
        if refusal:
            return outcome_for(item, "failed", None, refusal)
        try:
            settle(gateway, "VIF.unplug", iface.ref, "VIF.get_currently_attached", False)
        except XenError as exc:  # still plugged: nothing lost
            return outcome_for(item, "failed", None, _short(exc))
        return _plug_again(gateway, inventory, item, iface, stranded)
    refusal = _still(item, activation_for(iface, inventory), inventory, iface)
    if refusal:
        return outcome_for(item, "failed", None, refusal)
    target = bond_master(iface, inventory) if iface.bond_slave_of else iface
    try:
        if target is None:  # the inventory lost track of the bond: ask XAPI
            ref = str(gateway.call("Bond.get_master", iface.bond_slave_of))
            gateway.call("PIF.plug", ref, idempotent=False)
        elif target.currently_attached:
            # A plug of an attached PIF changes no field: if its answer is lost, nothing in XAPI
            # shows whether networkd re-applied the keys. That is not a success.
            gateway.call("PIF.plug", target.ref, idempotent=False)
        else:
            settle(gateway, "PIF.plug", target.ref, "PIF.get_currently_attached", True)
    except XapiUnavailable as exc:
        return outcome_for(item, "failed", None, (
            f"PIF.plug answer lost ({_short(exc)}); the PIF was already attached, so XAPI cannot show "
            "whether the keys were re-applied: still pending, activate again to be sure"))
    except XenError as exc:
        return outcome_for(item, "failed", None, _short(exc))
    return outcome_for(item, "activated", None, None)


def _plug_again(
    gateway: PoolGateway, inventory: PoolInventory, item: InterfacePlan, vif: Vif, stranded: list[Stranded]
) -> Outcome:
    """``VIF.plug`` after the unplug went through, tried again with back-off; a VIF still out is paged."""
    vm = inventory.vms.get(vif.vm_ref)
    attempts, error = _with_retries(
        lambda: settle(gateway, "VIF.plug", vif.ref, "VIF.get_currently_attached", True),
        lambda: gateway.call("VIF.get_currently_attached", vif.ref) is True,
    )
    if error is None:
        return outcome_for(item, "activated", None, None)
    where = f"{vm.name if vm else vif.vm_name} has no network on {vif.network_name or 'its network'}"
    message = f"{LEFT_UNPLUGGED}: VIF.plug failed {attempts} time(s) ({error}); {where}"
    stranded.append(Stranded("vif", vif.label, message))
    return outcome_for(item, "failed", None, message)


def _power_cycle(
    gateway: PoolGateway,
    inventory: PoolInventory,
    items: list[InterfacePlan],
    stranded: list[Stranded],
    *,
    resumed: bool = False,
) -> list[Outcome]:
    iface = inventory.interface(items[0].uuid)
    vm = inventory.vms.get(iface.vm_ref) if isinstance(iface, Vif) else None
    if not isinstance(iface, Vif) or vm is None:
        return [outcome_for(i, "failed", None, "interface no longer exists") for i in items]
    method = items[0].activation

    def failed(error: str) -> list[Outcome]:
        return [outcome_for(i, "failed", None, error) for i in items]

    if resumed:  # the replica that died may have shut it down: if so, start it (below)
        if vm.running:  # started again already, or never shut down: XAPI cannot tell which
            return [outcome_for(i, "activated", None, None) for i in items] if method == "vm-start" else failed(
                INTERRUPTED
            )
        if vm.power_state != "Halted":
            return failed(INTERRUPTED)
        if "start" in vm.blocked_operations:
            message = f"{LEFT_OFF}: {vm.name} is OFF and blocks start ({vm.blocked_operations['start']})"
            stranded.append(Stranded("vm", vm.name, message))
            return failed(message)
    elif method == "vm-power-cycle":
        refusal = _still(items[0], activation_for(iface, inventory), inventory, iface)
        if refusal:
            return failed(refusal)
        try:
            settle(gateway, "VM.clean_shutdown", vm.ref, "VM.get_power_state", "Halted")
        except XenError as exc:  # refused or failed: the VM is as it was
            return failed(_short(exc))
    else:  # vm-start: putting back a VM an earlier activation left off
        if vm.running:
            return [outcome_for(i, "activated", None, None) for i in items]
        if vm.power_state != "Halted":
            return failed(f"not done: the VM is {vm.power_state}, not Halted")
        if blocked(vm, method):
            return failed(f"not done: the VM blocks start ({vm.blocked_operations['start']})")
    attempts, error = _with_retries(
        lambda: settle(gateway, "VM.start", vm.ref, "VM.get_power_state", "Running", False, False),
        lambda: gateway.call("VM.get_power_state", vm.ref) == "Running",
    )
    if error is None:
        return [outcome_for(i, "activated", None, None) for i in items]
    message = f"{LEFT_OFF}: {vm.name} is OFF; VM.start failed {attempts} time(s) ({error})"
    stranded.append(Stranded("vm", vm.name, message))
    return failed(message)


def _with_retries(action: Callable[[], object], done: Callable[[], bool]) -> tuple[int, str | None]:
    """Run ``action`` until it works, pausing ``RETRY_DELAYS`` between tries; before each new try,
    ``done`` looks whether an earlier one worked after all. Returns (tries, last error or None)."""
    error = ""
    for attempt, pause in enumerate((0.0, *RETRY_DELAYS), start=1):
        if pause:
            time.sleep(pause)
            try:
                if done():
                    return attempt - 1, None
            except XenError:
                pass  # cannot look: try again anyway
        try:
            action()
        except XenError as exc:
            error = _short(exc)
            log.warning("activation step failed (try %d): %s", attempt, error)
            continue
        return attempt, None
    return 1 + len(RETRY_DELAYS), error


def _short(exc: XenError) -> str:
    return str(getattr(exc, "short", None) or exc)


def settle(gateway: PoolGateway, method: str, ref: str, probe: str, wanted: object, *extra: object) -> None:
    """Make a state change once; if its answer is lost, look at the state instead of guessing.

    Re-sending would fail (``DEVICE_ALREADY_ATTACHED``, ``VM_BAD_POWER_STATE``) or act twice,
    and treating a lost answer as a failure could leave a VM halted that was meant to restart.
    A lost answer is often a timeout on an operation still under way (a guest can take minutes
    to shut down), so the state is watched for a while, as long as the pool keeps answering.
    Only for changes that show in the probed field: a plug of an attached PIF does not."""
    try:
        gateway.call(method, ref, *extra, idempotent=False)
    except XapiUnavailable:
        deadline = time.monotonic() + SETTLE_SECONDS
        while gateway.call(probe, ref) != wanted:  # an unreachable pool raises here: nothing to wait for
            if time.monotonic() >= deadline:
                raise
            time.sleep(SETTLE_POLL_SECONDS)
        log.info("%s on %s: answer lost, but the state shows it happened", method, ref)
