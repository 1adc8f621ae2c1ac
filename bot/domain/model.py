"""Plain read models of a pool, free of XenAPI, Slack and SQL.

They are built from a handful of ``get_all_records`` calls, kept current with
``event.from`` (bot/xen/mirror.py), and then answer every question (lists, name
resolution, plans, diagnoses) without touching XAPI again. Integers arrive from XAPI as strings; they are converted
here, once, so nobody downstream has to remember that sharp edge.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

InterfaceKind = Literal["vif", "pif"]

EMPTY: Mapping[str, str] = MappingProxyType({})


def _empty() -> Mapping[str, str]:
    return EMPTY


@dataclass(frozen=True, slots=True)
class GuestInfo:
    """What the guest agent reports: the evidence a discard diagnosis stands on."""

    os_name: str = ""
    distro: str = ""
    major: str = ""
    minor: str = ""
    uname: str = ""
    pv_drivers_detected: bool = False
    pv_drivers_version: str = ""
    ips: tuple[str, ...] = ()
    can_use_hotplug_vif: str = "unspecified"
    other: Mapping[str, str] = field(default_factory=_empty)

    @property
    def os_label(self) -> str:
        """Windows agents append ``|C:\\Windows|\\Device\\Harddisk0\\Partition2`` to the name."""
        name = self.os_name.split("|", 1)[0].strip()
        return name or (f"{self.distro} {self.major}".strip() if self.distro else "unknown")


@dataclass(frozen=True, slots=True)
class Host:
    ref: str
    uuid: str
    name: str
    hostname: str
    address: str
    enabled: bool = True
    is_master: bool = False


@dataclass(frozen=True, slots=True)
class Network:
    ref: str
    uuid: str
    name: str
    bridge: str
    mtu: int


@dataclass(frozen=True, slots=True)
class Vm:
    ref: str
    uuid: str
    name: str
    power_state: str
    resident_on: str | None
    host_name: str
    guest: GuestInfo | None
    vif_refs: tuple[str, ...]
    tags: tuple[str, ...] = ()
    other_config: Mapping[str, str] = field(default_factory=_empty)
    domain_type: str = "hvm"  # hvm | pv | pvh | pv_in_pvh | unspecified
    # Operations refused with OPERATION_BLOCKED, operation -> the reason its owner gave.
    blocked_operations: Mapping[str, str] = field(default_factory=_empty)

    @property
    def running(self) -> bool:
        return self.power_state == "Running"

    @property
    def has_pv_drivers(self) -> bool:
        return bool(self.guest and self.guest.pv_drivers_detected)


@dataclass(frozen=True, slots=True)
class Vif:
    ref: str
    uuid: str
    device: str
    mac: str
    mtu: int
    vm_ref: str
    vm_name: str
    network_ref: str
    network_name: str
    currently_attached: bool
    other_config: Mapping[str, str]
    locking_mode: str = ""
    status_code: int = 0
    params: Mapping[str, object] = field(default_factory=_empty, compare=False, repr=False)

    kind: InterfaceKind = "vif"

    @property
    def label(self) -> str:
        return f"{self.vm_name}:{self.device}"


@dataclass(frozen=True, slots=True)
class Pif:
    ref: str
    uuid: str
    device: str
    mac: str
    mtu: int
    vlan: int
    host_ref: str
    host_name: str
    network_ref: str
    network_name: str
    physical: bool
    currently_attached: bool
    management: bool
    bond_slave_of: str | None
    bond_master_of: tuple[str, ...]
    other_config: Mapping[str, str]
    properties: Mapping[str, str] = field(default_factory=_empty)
    params: Mapping[str, object] = field(default_factory=_empty, compare=False, repr=False)
    disallow_unplug: bool = False
    ip_configuration_mode: str = "None"  # None | DHCP | Static: an IP on it (management, storage)
    ipv6_configuration_mode: str = "None"
    ip: str = ""

    kind: InterfaceKind = "pif"

    @property
    def label(self) -> str:
        return f"{self.host_name}:{self.device}"

    @property
    def has_ip(self) -> bool:
        """dom0 itself talks over it (management, storage, clustering): a replug cuts that traffic."""
        return self.ip_configuration_mode not in ("", "None") or self.ipv6_configuration_mode not in ("", "None")

    @property
    def bond_role(self) -> str:
        if self.bond_master_of:
            return "bond"
        if self.bond_slave_of:
            return "member"
        return ""


Interface = Vif | Pif


Index = Mapping[str, frozenset[str]]
_NONE: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class InventoryIndexes:
    """Lookups kept beside the records so that no question scans the pool.

    The first six are keyed by what the raw XAPI records point at (also the dependencies an
    incremental update follows: a renamed host touches its VMs' and PIFs' ``host_name``); the
    VM entries include templates and snapshots, so callers keep only refs found in ``vms``.
    The last three are keyed by the models. Values are frozensets: built and patched
    inventories compare equal however their events arrived."""

    vms_by_host: Index  # VM.resident_on -> VM refs
    vms_by_metrics: Index  # VM.guest_metrics -> VM refs
    vifs_by_vm: Index  # VIF.VM -> VIF refs
    vifs_by_network: Index  # VIF.network -> VIF refs
    pifs_by_host: Index  # PIF.host -> PIF refs
    pifs_by_network: Index  # PIF.network -> PIF refs
    vms_by_name: Index  # lower-case name_label -> VM refs
    vms_by_ip: Index  # an address the guest agent reports -> VM refs
    by_uuid: Mapping[str, Vif | Pif]  # interface uuid -> VIF or PIF


@dataclass(frozen=True, slots=True)
class PoolInventory:
    """One consistent-enough picture of a pool, read in a fixed number of calls.

    Immutable, and so safe to hand out: an update from the event feed makes a *new* snapshot
    (bot/xen/patch.py ``patch_inventory``), copying only the top-level maps it changes and
    sharing every unchanged model object, so a reader holding an older snapshot never sees it
    change under it. ``indexes`` is None only for an inventory assembled by hand (tests); the
    queries then scan."""

    pool: str
    master: Host
    hosts: Mapping[str, Host]
    vms: Mapping[str, Vm]
    vifs: Mapping[str, Vif]
    pifs: Mapping[str, Pif]
    networks: Mapping[str, Network]
    indexes: InventoryIndexes | None = field(default=None, repr=False)

    def vifs_of(self, vm: Vm) -> list[Vif]:
        return sorted(
            (self.vifs[r] for r in vm.vif_refs if r in self.vifs),
            key=lambda v: _device_order(v.device),
        )

    def pifs_of(self, host: Host) -> list[Pif]:
        if self.indexes is None:
            found: Iterable[Pif] = (p for p in self.pifs.values() if p.host_ref == host.ref)
        else:
            found = (self.pifs[r] for r in self.indexes.pifs_by_host.get(host.ref, _NONE) if r in self.pifs)
        return sorted(found, key=lambda p: (_device_order(p.device), p.vlan, p.ref))

    def interface(self, uuid: str) -> Interface | None:
        """A VIF or PIF by uuid: refs may change across a restart of the master, uuids do not."""
        if self.indexes is not None:
            return self.indexes.by_uuid.get(uuid)
        table: dict[str, Interface] = {i.uuid: i for i in self.vifs.values()}
        table.update({p.uuid: p for p in self.pifs.values()})
        return table.get(uuid)

    def vms_on(self, host: Host) -> list[Vm]:
        if self.indexes is None:
            found: Iterable[Vm] = (v for v in self.vms.values() if v.resident_on == host.ref)
        else:
            found = (self.vms[r] for r in self.indexes.vms_by_host.get(host.ref, _NONE) if r in self.vms)
        return sorted(found, key=lambda v: (v.name.lower(), v.ref))

    def vms_named(self, name: str) -> list[Vm]:
        """VMs whose name_label is ``name``, in any case."""
        if self.indexes is None:
            return [v for v in self.vms.values() if v.name.lower() == name.lower()]
        return [self.vms[r] for r in sorted(self.indexes.vms_by_name.get(name.lower(), _NONE)) if r in self.vms]

    def vms_with_ip(self, address: str) -> list[Vm]:
        """VMs whose guest agent reports ``address``."""
        if self.indexes is None:
            return [v for v in self.vms.values() if v.guest and address in v.guest.ips]
        return [self.vms[r] for r in sorted(self.indexes.vms_by_ip.get(address, _NONE)) if r in self.vms]


def _device_order(device: str) -> tuple[int, str]:
    """``eth10`` after ``eth9``; VIF devices are plain numbers."""
    digits = "".join(ch for ch in device if ch.isdigit())
    return (int(digits) if digits else 1 << 30, device)
