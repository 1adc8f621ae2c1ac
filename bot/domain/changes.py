"""Offload change plans: what will change, on which interface, from what to what.

A plan is computed from live state, shown to the approver, stored with a hash
of its content, and computed again just before applying: if the two hashes
differ (a new VIF, a value edited by hand), the approver approved something
else and nothing is applied. Every key's previous value is kept, including
"absent", so a revert restores exactly what was there.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from bot.domain.activation import (
    ACTIVATION_KINDS,
    ACTIVATION_TEXT,
    AUTOMATIC_ACTIVATIONS,
    NOTHING_TO_ACTIVATE,
    activation_for,
    activation_warning,
)
from bot.domain.model import Interface, Pif, PoolInventory, Vif
from bot.domain.offload import VIF_MODES, key, modes_for, same_effect

__all__ = [
    "ACTIVATION_KINDS",
    "ACTIVATION_TEXT",
    "AUTOMATIC_ACTIVATIONS",
    "NOTHING_TO_ACTIVATE",
    "InterfacePlan",
    "KeyChange",
    "Plan",
    "activation_for",
    "interfaces_in_scope",
    "plan_activation",
    "plan_change",
    "plan_repair",
    "plan_restore",
]

ChangeAction = Literal["off", "on", "reset", "restore", "activate"]
ScopeKind = Literal["vm", "host", "pool", "vif", "pif"]

VALUE_FOR: Mapping[str, str | None] = {"off": "off", "on": "on", "reset": None}


@dataclass(frozen=True, slots=True)
class KeyChange:
    key: str
    before: str | None
    after: str | None


@dataclass(frozen=True, slots=True)
class InterfacePlan:
    pool: str
    kind: Literal["vif", "pif"]
    ref: str
    uuid: str
    label: str
    owner: str  # VM name for a VIF, host name for a PIF
    changes: tuple[KeyChange, ...]
    activation: str  # how the new setting takes effect (see activation_for)

    def expected(self) -> dict[str, str | None]:
        return {c.key: c.after for c in self.changes}

    def previous(self) -> dict[str, str | None]:
        return {c.key: c.before for c in self.changes}


@dataclass(frozen=True, slots=True)
class Plan:
    action: ChangeAction
    modes: tuple[str, ...]
    pool: str
    scope_kind: ScopeKind
    scope_label: str
    interfaces: tuple[InterfacePlan, ...]
    unchanged: int
    notes: tuple[str, ...] = field(default=())

    @property
    def total(self) -> int:
        return len(self.interfaces) + self.unchanged

    @property
    def writes(self) -> int:
        """XAPI writes needed: an absent key is one add; a present one is remove + add (or one remove)."""
        count = 0
        for iface in self.interfaces:
            for change in iface.changes:
                if change.after is None or change.before is None:
                    count += 1
                else:
                    count += 2
        return count

    @property
    def content_hash(self) -> str:
        """Identity of *what would be written*, independent of order and of display names."""
        body = sorted(
            (i.pool, i.kind, i.uuid, sorted((c.key, c.before, c.after) for c in i.changes)) for i in self.interfaces
        )
        canonical = json.dumps([self.action, list(self.modes), body], separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Plan:
        interfaces = tuple(
            InterfacePlan(
                pool=i["pool"],
                kind=i["kind"],
                ref=i["ref"],
                uuid=i["uuid"],
                label=i["label"],
                owner=i["owner"],
                changes=tuple(KeyChange(**c) for c in i["changes"]),
                activation=i["activation"],
            )
            for i in data["interfaces"]
        )
        return Plan(
            action=data["action"],
            modes=tuple(data["modes"]),
            pool=data["pool"],
            scope_kind=data["scope_kind"],
            scope_label=data["scope_label"],
            interfaces=interfaces,
            unchanged=int(data["unchanged"]),
            notes=tuple(data.get("notes", ())),
        )


def interfaces_in_scope(inventory: PoolInventory, scope_kind: ScopeKind, target: object) -> list[Interface]:
    """The interfaces a scope covers; ``target`` is the resolved Vm/Host/Vif/Pif (ignored for pool)."""
    if scope_kind == "vm":
        return list(inventory.vifs_of(target))  # type: ignore[arg-type]
    if scope_kind == "host":
        vifs = [v for vm in inventory.vms_on(target) for v in inventory.vifs_of(vm)]  # type: ignore[arg-type]
        return [*inventory.pifs_of(target), *vifs]  # type: ignore[arg-type]
    if scope_kind in ("vif", "pif"):
        return [target]  # type: ignore[list-item]
    vms = sorted(inventory.vms.values(), key=lambda v: v.name.lower())
    hosts = sorted(inventory.hosts.values(), key=lambda h: h.name.lower())
    return [*(p for h in hosts for p in inventory.pifs_of(h)), *(v for vm in vms for v in inventory.vifs_of(vm))]


def plan_change(
    inventory: PoolInventory,
    action: ChangeAction,
    modes: Sequence[str],
    scope_kind: ScopeKind,
    scope_label: str,
    interfaces: Iterable[Interface],
) -> Plan:
    """For each interface and mode: current value → wanted value; ones dom0 already reads as wanted
    (``true`` for "on", garbage or absent for "reset") are counted as unchanged: writing them
    would change nothing on the device and only cost a replug."""
    wanted = VALUE_FOR[action]
    planned: list[InterfacePlan] = []
    unchanged = 0
    skipped_pif_only: set[str] = set()
    planned_ifaces = list(interfaces)
    for iface in planned_ifaces:
        honoured = modes_for(iface.kind)
        changes = []
        for mode in modes:
            if mode not in honoured:
                skipped_pif_only.add(mode)
                continue
            map_key = key(mode)
            before = iface.other_config.get(map_key)
            if same_effect(before, wanted):
                continue
            changes.append(KeyChange(map_key, before, wanted))
        if changes:
            planned.append(_interface_plan(inventory, iface, changes))
        else:
            unchanged += 1
    notes = [_no_device_note(i) for i in planned_ifaces if isinstance(i, Pif) and not i.physical]
    notes += _warnings(inventory, planned)
    if skipped_pif_only:
        skipped = sorted(skipped_pif_only)
        on_vifs = [m for m in modes if m in VIF_MODES]
        verb = "applies" if len(skipped) == 1 else "apply"
        notes.append(
            f"{', '.join(skipped)} {verb} to PIFs only, so VIFs get {', '.join(on_vifs)} only"
            if on_vifs
            else f"{', '.join(skipped)} {verb} to PIFs only; nothing is changed on VIFs"
        )
    return Plan(action, tuple(modes), inventory.pool, scope_kind, scope_label, tuple(planned), unchanged, tuple(notes))


def _no_device_note(pif: Pif) -> str:
    """Asked for a bond-master or VLAN PIF by name: under Open vSwitch (the default backend) nm.ml
    configures the bond's members and the VLAN's tagged PIF, so these keys reach no device."""
    what = "bond" if pif.bond_master_of else f"VLAN {pif.vlan}" if pif.vlan >= 0 else "virtual"
    return (
        f":warning: {pif.label} is a {what} PIF: under Open vSwitch its ethtool keys take effect nowhere, "
        "not even after a plug. Set the member NICs instead (pif=HOST:ethN, or host=HOST)."
    )


def plan_restore(
    inventory: PoolInventory,
    written: Mapping[str, Mapping[str, tuple[str | None, str | None]]],
    scope_label: str,
) -> Plan:
    """A revert: put back the previous value of every key xenbot wrote (``None`` = remove the key).

    ``written`` maps interface uuid → key → (previous value, the value xenbot wrote). A key
    still at xenbot's value is restored; one already back at its previous value needs
    nothing; one at a third value was changed by someone since, and is left alone (noted)."""
    planned: list[InterfacePlan] = []
    unchanged = 0
    missing = []
    theirs = []
    for uuid, keys in written.items():
        iface = inventory.interface(uuid)
        if iface is None:
            missing.append(uuid)
            continue
        current = iface.other_config
        changes = []
        for k, (previous, ours) in sorted(keys.items()):
            if current.get(k) == previous:
                continue
            if current.get(k) == ours:
                changes.append(KeyChange(k, ours, previous))
            else:
                theirs.append(f"{iface.label} {k}={current.get(k)!r}")
        if changes:
            planned.append(_interface_plan(inventory, iface, changes))
        else:
            unchanged += 1
    notes = [f"{len(missing)} interface(s) no longer exist and are skipped"] if missing else []
    if theirs:
        notes.append(
            f"{len(theirs)} key(s) were changed by someone else since and are left alone: "
            + ", ".join(theirs[:10]) + (" …" if len(theirs) > 10 else "")
        )
    notes += _warnings(inventory, planned)
    return Plan("restore", (), inventory.pool, "pool", scope_label, tuple(planned), unchanged, tuple(notes))


def _warnings(inventory: PoolInventory, planned: Sequence[InterfacePlan], limit: int = 10) -> list[str]:
    """Why some activations are left to people, naming what may drop (a few; the rest counted)."""
    found = []
    for item in planned:
        iface = inventory.interface(item.uuid)
        warning = activation_warning(iface, inventory) if iface is not None else None
        if warning:
            found.append(warning)
    if len(found) > limit:
        found = [*found[:limit], f"… and {len(found) - limit} more not automated"]
    return found


def _interface_plan(inventory: PoolInventory, iface: Interface, changes: list[KeyChange]) -> InterfacePlan:
    owner = iface.vm_name if isinstance(iface, Vif) else iface.host_name
    return InterfacePlan(
        pool=inventory.pool,
        kind=iface.kind,
        ref=iface.ref,
        uuid=iface.uuid,
        label=iface.label,
        owner=owner,
        changes=tuple(changes),
        activation=activation_for(iface, inventory),
    )


def plan_activation(change_id: int, pending: Iterable[tuple[str, str]], inventory: PoolInventory) -> Plan:
    """What activation of a change would do *now*, for its pending (uuid, label) interfaces: the
    method is derived again from live state (a VM halted since needs nothing; one started since
    is done), and what is left to people is noted with the reason and what may drop."""
    steps: list[InterfacePlan] = []
    notes: list[str] = []
    for uuid, label in pending:
        iface = inventory.interface(uuid)
        if iface is None:
            notes.append(f"{label}: no longer exists")
            continue
        method = activation_for(iface, inventory)
        if method not in AUTOMATIC_ACTIVATIONS:
            warning = activation_warning(iface, inventory)
            notes.append(warning or f"{label}: {ACTIVATION_TEXT.get(method, method)}")
            continue
        owner = iface.vm_ref if isinstance(iface, Vif) else iface.host_ref
        steps.append(InterfacePlan(inventory.pool, iface.kind, iface.ref, iface.uuid, iface.label, owner, (), method))
    return Plan("activate", (), inventory.pool, "pool", f"change #{change_id}", tuple(steps), 0, tuple(notes))


def plan_repair(kind: str, uuids: Iterable[str], inventory: PoolInventory) -> Plan:
    """Putting back what an activation left off: ``start-vm`` starts the halted VMs of these VIFs,
    ``plug-vif`` plugs these VIFs of running VMs. What is back already is left out; a VM that
    blocks ``start`` is not planned (XAPI would answer OPERATION_BLOCKED) and its reason noted."""
    steps: list[InterfacePlan] = []
    refused: list[str] = []
    for uuid in uuids:
        iface = inventory.interface(uuid)
        vm = inventory.vms.get(iface.vm_ref) if isinstance(iface, Vif) else None
        if not isinstance(iface, Vif) or vm is None:
            continue
        if kind == "start-vm":
            if vm.power_state != "Halted":
                continue
            if "start" in vm.blocked_operations:
                refused.append(f"{vm.name} blocks start: {vm.blocked_operations['start']}")
                continue
            method, label = "vm-start", vm.name
        else:
            if not vm.running or iface.currently_attached:
                continue
            method, label = "vif-plug", iface.label
        steps.append(InterfacePlan(inventory.pool, "vif", iface.ref, iface.uuid, label, vm.ref, (), method))
    labels = ", ".join(dict.fromkeys(i.label for i in steps))
    return Plan("activate", (), inventory.pool, "vm", labels, tuple(steps), 0, tuple(refused))
