"""Offload policies: a decision that holds for interfaces created or edited later.

"In pool prod, VIFs have rx tx sg tso ufo gso off" — checked against each
interface as XAPI reports it. A VIF the policy covers whose keys differ is
*drift*; what to do about it (report, or apply to new interfaces) is the
watcher's business, not this module's.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.domain.changes import VALUE_FOR
from bot.domain.model import Interface, Pif, PoolInventory, Vif, Vm
from bot.domain.offload import key, same_effect

Target = Literal["vifs", "pifs"]
Mode = Literal["report", "enforce"]


@dataclass(frozen=True, slots=True)
class PolicySpec:
    pool: str
    target: Target
    action: Literal["off", "on"]
    modes: tuple[str, ...]
    mode: Mode = "report"
    exclude_names: tuple[str, ...] = ()  # VM name globs, case-insensitive
    exclude_tags: tuple[str, ...] = ()
    host: str | None = None  # limit to one host (PIFs of it / VIFs of VMs resident on it)

    def describe(self) -> str:
        where = f"host {self.host} in pool {self.pool}" if self.host else f"pool {self.pool}"
        excluded = ""
        if self.exclude_names or self.exclude_tags:
            parts = [*(f"name {p}" for p in self.exclude_names), *(f"tag {t}" for t in self.exclude_tags)]
            excluded = f", except {', '.join(parts)}"
        return f"in {where}, {self.target} have {' '.join(self.modes)} {self.action}{excluded} ({self.mode})"

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> PolicySpec:
        return PolicySpec(
            pool=str(data["pool"]),
            target=data["target"],
            action=data["action"],
            modes=tuple(data.get("modes", ())),
            mode=data.get("mode", "report"),
            exclude_names=tuple(data.get("exclude_names", ())),
            exclude_tags=tuple(data.get("exclude_tags", ())),
            host=data.get("host"),
        )

    def wanted(self) -> dict[str, str | None]:
        value = VALUE_FOR[self.action]
        return {key(m): value for m in self.modes}


@dataclass(frozen=True, slots=True)
class Drift:
    policy_id: int
    interface: Interface
    differences: tuple[tuple[str, str | None, str | None], ...]  # key, actual, wanted
    new: bool = False  # the interface appeared after the policy (enforce mode may fix it)

    @property
    def signature(self) -> str:
        """Same drift, same signature: report it once, not at every event."""
        return ";".join(f"{k}={a}" for k, a, _w in self.differences)


@dataclass(frozen=True, slots=True)
class Compliance:
    policy_id: int
    complying: int
    drifting: tuple[Drift, ...]
    excluded: int
    pending_activation: int = 0
    total: int = field(default=0)


def excluded(spec: PolicySpec, vm: Vm | None) -> bool:
    if vm is None:
        return False
    name = vm.name.lower()
    if any(fnmatch.fnmatchcase(name, pattern.lower()) for pattern in spec.exclude_names):
        return True
    return bool(set(spec.exclude_tags) & set(vm.tags))


def covered(spec: PolicySpec, inventory: PoolInventory) -> tuple[list[Interface], int]:
    """Interfaces the policy covers, and how many were left out by its exclusions."""
    skipped = 0
    chosen: list[Interface] = []
    host_ref = None
    if spec.host:
        host_ref = next((h.ref for h in inventory.hosts.values() if h.name.lower() == spec.host.lower()), "?")
    if spec.target == "vifs":
        for vif in inventory.vifs.values():
            vm = inventory.vms.get(vif.vm_ref)
            if host_ref and (vm is None or vm.resident_on != host_ref):
                continue
            if excluded(spec, vm):
                skipped += 1
                continue
            chosen.append(vif)
    else:
        chosen = [
            p for p in inventory.pifs.values() if p.physical and (host_ref is None or p.host_ref == host_ref)
        ]
    return chosen, skipped


def drift_of(policy_id: int, spec: PolicySpec, iface: Interface, *, new: bool = False) -> Drift | None:
    """Keys whose value dom0 would read differently from the policy's: ``false`` complies with
    "off" (dom0 reads both the same, vif-real/nm.ml), ``" Off"`` does not (dom0 ignores it)."""
    wanted = spec.wanted()
    differences = tuple(
        (k, iface.other_config.get(k), w) for k, w in wanted.items() if not same_effect(iface.other_config.get(k), w)
    )
    return Drift(policy_id, iface, differences, new) if differences else None


def compliance(
    policy_id: int, spec: PolicySpec, inventory: PoolInventory, pending: Iterable[str] = ()
) -> Compliance:
    interfaces, skipped = covered(spec, inventory)
    drifting = [d for d in (drift_of(policy_id, spec, i) for i in interfaces) if d is not None]
    pending_set = set(pending)
    return Compliance(
        policy_id=policy_id,
        complying=len(interfaces) - len(drifting),
        drifting=tuple(drifting),
        excluded=skipped,
        pending_activation=sum(1 for i in interfaces if i.uuid in pending_set),
        total=len(interfaces),
    )


def in_scope(spec: PolicySpec, inventory: PoolInventory, iface: Interface) -> bool:
    interfaces, _ = covered(spec, inventory)
    return any(i.uuid == iface.uuid for i in interfaces)


def by_owner(drifts: Sequence[Drift]) -> dict[str, list[Drift]]:
    """Group drift by VM (or host) so a VM created with three VIFs is one message."""
    groups: dict[str, list[Drift]] = {}
    for drift in drifts:
        iface = drift.interface
        owner = iface.vm_name if isinstance(iface, Vif) else iface.host_name if isinstance(iface, Pif) else "?"
        groups.setdefault(owner, []).append(drift)
    return groups
