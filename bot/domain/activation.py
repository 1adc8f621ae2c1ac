"""How an applied offload key takes effect on one interface, and when xenbot must not do it itself.

dom0 applies ``ethtool-*`` keys only when it (re)creates a device, so "activation" is a
replug, a power cycle or a PIF plug. Each of those can hurt; the rules here decide, from
live XAPI state only, which ones xenbot may run and why the others are left to people:

* A guest without PV drivers uses its emulated NIC: ``vif-real`` applies the keys only to
  the PV ``vif`` device, never to the emulated ``tap`` (XA ``ocaml/xenopsd/scripts/vif-real``),
  so no activation can help and XAPI refuses its clean shutdown anyway (``VM_LACKS_FEATURE``,
  XA ``ocaml/xapi/xapi_vm_lifecycle.ml`` ``check_op_for_feature``).
* A VM's ``blocked_operations`` make XAPI answer ``OPERATION_BLOCKED [ref, reason]``
  (checked before anything else in ``check_operation_error``).
* A paused VM keeps its devices: unpausing rebuilds nothing.
* ``PIF.plug`` has no management or ``disallow_unplug`` check and networkd rebuilds the
  bridge (and every bond member) on each plug (XA ``ocaml/xapi/xapi_pif.ml`` ``plug``,
  ``ocaml/xapi/nm.ml`` ``bring_pif_up``): a PIF or bond carrying management, an IP
  (storage) or ``disallow_unplug`` is never plugged automatically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot.domain.model import Interface, Pif, PoolInventory, Vif, Vm

# Kinds of change request whose approval runs an activation (not other-config writes).
ACTIVATION_KINDS = frozenset({"activate", "start-vm", "plug-vif"})

ACTIVATION_TEXT: Mapping[str, str] = {
    "vif-replug": "replug the VIF (VIF.unplug + VIF.plug; brief link drop)",
    "vm-power-cycle": "shut the VM down and start it (no PV hotplug; a reboot inside the guest is not enough)",
    "next-start": "nothing now: applied when the halted VM next starts",
    "next-resume": "nothing now: applied when the suspended VM resumes (its devices are created again)",
    "next-plug": "nothing now: applied when the interface is next plugged",
    "no-device": "never: the guest has no PV drivers, so its emulated NIC carries the traffic and "
    "no device honours offload keys (install PV drivers)",
    "agent-unknown": "unknown until the guest agent reports (it has not since the VM started); ask again then",
    "vm-paused": "the VM is paused: unpausing does not rebuild its devices; once it runs, activate again",
    "vm-op-blocked": "not automated: the VM blocks an operation activation needs (blocked_operations)",
    "vm-lacks-feature": "not automated: XAPI refuses its clean shutdown (VM_LACKS_FEATURE); shut it down "
    "from inside the guest and start it",
    "pif-plug": "replug the PIF (PIF.plug re-applies the keys) or reboot the host",
    "pif-plug-manual": "not automated: PIF.plug rebuilds the bridge of a PIF that carries dom0 traffic "
    "(storage IP or disallow_unplug); plug it in a window or reboot the host",
    "bond-replug": "bond member: replug the bond's PIF or reboot the host (handle with care)",
    "bond-replug-manual": "not automated: the bond carries management, storage or disallow_unplug, and a "
    "plug rebuilds it; reboot the host in a window",
    "management-replug": "management PIF: replugging cuts the host off XAPI; reboot the host in a window",
    "vm-start": "start the VM that an activation left halted",
    "vif-plug": "plug the VIF that an activation left unplugged",
}

# Activations xenbot performs itself when "Activate now" is approved.
AUTOMATIC_ACTIVATIONS = frozenset({"vif-replug", "vm-power-cycle", "pif-plug", "bond-replug", "vm-start", "vif-plug"})
# Nothing any activation can or need do now: no pending-activation row is kept for these.
NOTHING_TO_ACTIVATE = frozenset({"next-start", "next-resume", "next-plug", "no-device"})

# Error prefixes of results that left a guest worse off than before: the card and thread say so loudly.
LEFT_OFF = "VM LEFT OFF"
LEFT_UNPLUGGED = "VIF LEFT UNPLUGGED"



@dataclass(frozen=True)
class Stranded:
    """A VM left halted, or a VIF left unplugged, by an activation that could not finish."""

    what: str  # "vm" | "vif"
    label: str  # VM name, or VM:device
    error: str


def stranded_errors(errors: Sequence[str | None]) -> list[str]:
    """The distinct "left off / left unplugged" errors among results, for the card's banner."""
    return list(dict.fromkeys(e for e in errors if e and e.startswith((LEFT_OFF, LEFT_UNPLUGGED))))


# VM operations an activation needs, by method (XAPI's vm_operations names).
_OPS_NEEDED = {"vm-power-cycle": ("clean_shutdown", "start"), "vm-start": ("start",)}
_PV_DOMAINS = frozenset({"pv", "pvh", "pv_in_pvh"})


def has_pv_driver_version(vm: Vm) -> bool:
    """XAPI's ``has_pv_drivers``: the agent reported an integer major and minor driver version."""
    version = vm.guest.pv_drivers_version if vm.guest else ""
    parts = version.split(".")
    return len(parts) >= 2 and all(p.isdigit() for p in parts)


def nic_is_emulated(vm: Vm) -> bool:
    """The guest's traffic goes through the emulated NIC, which offload keys never reach:
    an HVM guest whose agent reports no PV drivers.

    No guest metrics at all cannot be told apart from "just started": every VM.start clears
    them until the agent reports (XA ``ocaml/xapi/xapi_vm.ml``), so that is "agent-unknown"."""
    if vm.domain_type in _PV_DOMAINS or vm.guest is None:
        return False
    return not (vm.guest.pv_drivers_detected or has_pv_driver_version(vm))


def lacks_clean_shutdown(vm: Vm) -> bool:
    """XAPI's ``check_op_for_feature`` for ``clean_shutdown`` (strict, as ``with_vm_operation`` calls it)."""
    if vm.power_state not in ("Running", "Paused") or vm.domain_type in _PV_DOMAINS or has_pv_driver_version(vm):
        return False
    other = vm.guest.other if vm.guest else {}
    return other.get("feature-shutdown") != "1" and other.get("feature-poweroff") != "1"


def blocked(vm: Vm, method: str) -> dict[str, str]:
    """The operations ``method`` needs that the VM blocks, with the reason its owner gave."""
    return {op: vm.blocked_operations[op] for op in _OPS_NEEDED.get(method, ()) if op in vm.blocked_operations}


def activation_for(iface: Interface, inventory: PoolInventory) -> str:
    """What makes a new other-config value take effect on this interface (dom0 applies it on plug)."""
    if isinstance(iface, Vif):
        vm = inventory.vms.get(iface.vm_ref)
        if vm is None:
            return "next-start"
        if nic_is_emulated(vm):
            return "no-device"
        if vm.power_state == "Paused":
            return "vm-paused"
        if vm.power_state == "Suspended":
            return "next-resume"
        if not vm.running:
            return "next-start"  # halted: applied when the VM next starts, nothing to do now
        if not iface.currently_attached:
            return "next-plug"
        if vm.guest is None:
            # No metrics on a running VM: the agent has not reported since the start (or there is
            # none). XAPI would refuse a clean shutdown (VM_LACKS_FEATURE); nothing is automated.
            return "agent-unknown"
        if vm.has_pv_drivers and vm.guest.can_use_hotplug_vif != "no":
            return "vif-replug"
        if blocked(vm, "vm-power-cycle"):
            return "vm-op-blocked"
        if lacks_clean_shutdown(vm):
            return "vm-lacks-feature"
        return "vm-power-cycle"
    if iface.bond_slave_of:
        master = bond_master(iface, inventory)
        if master is None or dom0_traffic(master, inventory):
            return "bond-replug-manual"
        return "bond-replug"  # a member cannot be plugged on its own (CANNOT_PLUG_BOND_SLAVE)
    if iface.management:
        return "management-replug"  # unplugging it cuts the host off: flag, do not automate
    if dom0_traffic(iface, inventory):
        return "pif-plug-manual"
    if not iface.currently_attached:
        return "next-plug"
    return "pif-plug"


def bond_master(member: Pif, inventory: PoolInventory) -> Pif | None:
    """The bond-master PIF of a bond member, from the inventory (its ``bond_master_of`` names the bond)."""
    return next((p for p in inventory.pifs.values() if member.bond_slave_of in p.bond_master_of), None)


def dom0_traffic(pif: Pif, inventory: PoolInventory) -> list[str]:
    """What dom0 itself would lose while this PIF (and the VLANs on it) is re-plugged; empty if nothing."""
    # VLAN PIFs share the device and host of the PIF they are tagged on; a plug rebuilds them too.
    carried = [pif] + [
        p for p in inventory.pifs.values()
        if p.host_ref == pif.host_ref and p.device == pif.device and p.vlan >= 0 and p.ref != pif.ref
    ]
    found = []
    for p in carried:
        where = f"{p.network_name or p.device}" + (f" (VLAN {p.vlan})" if p.vlan >= 0 else "")
        if p.management:
            found.append(f"the management interface of {p.host_name} on {where}" + (f", {p.ip}" if p.ip else ""))
        elif p.has_ip:
            found.append(f"dom0's IP traffic (storage?) on {where}" + (f", {p.ip}" if p.ip else ""))
        if p.disallow_unplug:
            found.append(f"{where}: disallow_unplug is set (storage or clustering depends on it)")
    return found


def activation_warning(iface: Interface, inventory: PoolInventory) -> str | None:
    """Why this interface's activation is left to people, naming what may drop; None when it is not."""
    method = activation_for(iface, inventory)
    if isinstance(iface, Vif):
        vm = inventory.vms.get(iface.vm_ref)
        if vm is None:
            return None
        if method == "vm-op-blocked":
            reasons = "; ".join(f"{op}: {why}" for op, why in blocked(vm, "vm-power-cycle").items())
            return f"{iface.label}: {vm.name} blocks what a power cycle needs ({reasons})"
        if method == "no-device":
            return f"{iface.label}: {vm.name} has no PV drivers; no device honours its offload keys"
        return None
    if method == "bond-replug-manual":
        master = bond_master(iface, inventory)
        drops = dom0_traffic(master, inventory) if master else ["(bond not found)"]
        return f"{iface.label}: plugging bond {master.device if master else '?'} may drop " + "; ".join(drops)
    if method == "pif-plug-manual":
        return f"{iface.label}: PIF.plug may drop " + "; ".join(dom0_traffic(iface, inventory))
    if method == "management-replug":
        return f"{iface.label}: PIF.plug may drop the management interface of {iface.host_name}"
    return None
