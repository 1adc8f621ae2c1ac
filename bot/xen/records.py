"""XAPI records (as ``get_all_records`` returns them) → domain read models.

Everything numeric arrives as a decimal string and every reference may be
``OpaqueRef:NULL``; both are normalised here so the domain never sees either.

``build_inventory`` builds a whole inventory (after a full read); ``patch_inventory``
(bot/xen/patch.py) makes the next one from an ``event.from`` batch, rebuilding only the changed records' models and
those whose derived fields depend on them (a VIF's ``vm_name``, a VM's ``host_name`` and
guest, a PIF's ``network_name``...), found through the inventory's indexes. The two must
agree: tests/xen/test_inventory_patch.py checks it on random event sequences.

Models never copy a record: ``params`` and the ``other_config`` maps are read-only views of
the dicts XML-RPC produced, which the mirror replaces (never mutates) when a record changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from bot.domain.model import (
    EMPTY,
    GuestInfo,
    Host,
    Index,
    Interface,
    InventoryIndexes,
    Network,
    Pif,
    PoolInventory,
    Vif,
    Vm,
)

NULL_REF = "OpaqueRef:NULL"

Records = Mapping[str, Mapping[str, Any]]


def ref_or_none(value: object) -> str | None:
    text = str(value or "")
    return None if not text or text == NULL_REF else text


def as_int(value: object, default: int = 0) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default


def as_map(value: object) -> Mapping[str, str]:
    """A read-only view; the record's own dict when it already holds only strings (it always
    does from XML-RPC), so the inventory keeps one copy of each record, not two."""
    if not isinstance(value, Mapping):
        return EMPTY
    if isinstance(value, dict) and all(type(k) is str and type(v) is str for k, v in value.items()):
        return MappingProxyType(value)
    return MappingProxyType({str(k): str(v) for k, v in value.items()})


def is_real_vm(record: Mapping[str, Any]) -> bool:
    """Templates, snapshots and control domains are VMs in XAPI but not to an operator."""
    return not (record.get("is_a_template") or record.get("is_a_snapshot") or record.get("is_control_domain"))


def guest_info(record: Mapping[str, Any] | None) -> GuestInfo | None:
    if not record:
        return None
    os_version = as_map(record.get("os_version"))
    drivers = as_map(record.get("PV_drivers_version"))
    version = ".".join(drivers[p] for p in ("major", "minor", "micro", "build") if p in drivers)
    networks = as_map(record.get("networks"))
    ips = tuple(dict.fromkeys(v for k, v in sorted(networks.items()) if v and ("/ip" in k)))
    return GuestInfo(
        os_name=os_version.get("name", ""),
        distro=os_version.get("distro", ""),
        major=os_version.get("major", ""),
        minor=os_version.get("minor", ""),
        uname=os_version.get("uname", ""),
        pv_drivers_detected=bool(record.get("PV_drivers_detected")),
        pv_drivers_version=version,
        ips=ips,
        can_use_hotplug_vif=str(record.get("can_use_hotplug_vif") or "unspecified"),
        other=as_map(record.get("other")),
    )


# cls -> ref -> that record before the batch (None: it is new). What the mirror hands the patch.
Changes = Mapping[str, Mapping[str, Mapping[str, Any] | None]]


def host_model(ref: str, h: Mapping[str, Any], master_ref: str) -> Host:
    return Host(
        ref=ref,
        uuid=str(h.get("uuid", "")),
        name=str(h.get("name_label", "")),
        hostname=str(h.get("hostname", "")),
        address=str(h.get("address", "")),
        enabled=bool(h.get("enabled", True)),
        is_master=ref == master_ref,
    )


def network_model(ref: str, n: Mapping[str, Any]) -> Network:
    return Network(
        ref=ref,
        uuid=str(n.get("uuid", "")),
        name=str(n.get("name_label", "")),
        bridge=str(n.get("bridge", "")),
        mtu=as_int(n.get("MTU"), 1500),
    )


def vm_model(ref: str, v: Mapping[str, Any], hosts: Mapping[str, Host], guest_metrics: Records) -> Vm | None:
    if not is_real_vm(v):
        return None
    host_ref = ref_or_none(v.get("resident_on"))
    metrics_ref = ref_or_none(v.get("guest_metrics"))
    host = hosts.get(host_ref) if host_ref else None
    return Vm(
        ref=ref,
        uuid=str(v.get("uuid", "")),
        name=str(v.get("name_label", "")),
        power_state=str(v.get("power_state", "")),
        resident_on=host_ref,
        host_name=host.name if host else "",
        guest=guest_info(guest_metrics.get(metrics_ref)) if metrics_ref else None,
        vif_refs=tuple(str(r) for r in v.get("VIFs", ())),
        tags=tuple(str(t) for t in v.get("tags", ())),
        other_config=as_map(v.get("other_config")),
        domain_type=str(v.get("domain_type") or "hvm"),
        blocked_operations=as_map(v.get("blocked_operations")),
    )


def vif_model(ref: str, f: Mapping[str, Any], vms: Mapping[str, Vm], networks: Mapping[str, Network]) -> Vif | None:
    vm = vms.get(str(f.get("VM", "")))
    if vm is None:
        return None  # VIFs of templates, snapshots and dom0 are not the operator's business
    net_ref = str(f.get("network", ""))
    network = networks.get(net_ref)
    return Vif(
        ref=ref,
        uuid=str(f.get("uuid", "")),
        device=str(f.get("device", "")),
        mac=str(f.get("MAC", "")),
        mtu=as_int(f.get("MTU"), 1500),
        vm_ref=vm.ref,
        vm_name=vm.name,
        network_ref=net_ref,
        network_name=network.name if network else "",
        currently_attached=bool(f.get("currently_attached")),
        other_config=as_map(f.get("other_config")),
        locking_mode=str(f.get("locking_mode", "")),
        status_code=as_int(f.get("status_code")),
        params=MappingProxyType(f) if isinstance(f, dict) else f,
    )


def pif_model(ref: str, p: Mapping[str, Any], hosts: Mapping[str, Host], networks: Mapping[str, Network]) -> Pif:
    host_ref = str(p.get("host", ""))
    net_ref = str(p.get("network", ""))
    host, network = hosts.get(host_ref), networks.get(net_ref)
    return Pif(
        ref=ref,
        uuid=str(p.get("uuid", "")),
        device=str(p.get("device", "")),
        mac=str(p.get("MAC", "")),
        mtu=as_int(p.get("MTU"), 1500),
        vlan=as_int(p.get("VLAN"), -1),
        host_ref=host_ref,
        host_name=host.name if host else "",
        network_ref=net_ref,
        network_name=network.name if network else "",
        physical=bool(p.get("physical")),
        currently_attached=bool(p.get("currently_attached")),
        management=bool(p.get("management")),
        bond_slave_of=ref_or_none(p.get("bond_slave_of")),
        bond_master_of=tuple(str(b) for b in p.get("bond_master_of", ()) if ref_or_none(b)),
        other_config=as_map(p.get("other_config")),
        properties=as_map(p.get("properties")),
        params=MappingProxyType(p) if isinstance(p, dict) else p,
        disallow_unplug=bool(p.get("disallow_unplug")),
        ip_configuration_mode=str(p.get("ip_configuration_mode") or "None"),
        ipv6_configuration_mode=str(p.get("ipv6_configuration_mode") or "None"),
        ip=str(p.get("IP") or ""),
    )


def _pointer(field_name: str) -> Callable[[Mapping[str, Any] | None], frozenset[str]]:
    def keys(record: Mapping[str, Any] | None) -> frozenset[str]:
        ref = ref_or_none(record.get(field_name)) if record is not None else None
        return frozenset((ref,)) if ref else frozenset()

    return keys


# Index name -> (the class whose raw records it indexes, the keys of one record).
RAW_INDEXES = {
    "vms_by_host": ("VM", _pointer("resident_on")),
    "vms_by_metrics": ("VM", _pointer("guest_metrics")),
    "vifs_by_vm": ("VIF", _pointer("VM")),
    "vifs_by_network": ("VIF", _pointer("network")),
    "pifs_by_host": ("PIF", _pointer("host")),
    "pifs_by_network": ("PIF", _pointer("network")),
}
NOTHING: frozenset[str] = frozenset()


def name_keys(vm: Vm | None) -> frozenset[str]:
    return frozenset((vm.name.lower(),)) if vm is not None else NOTHING


def ip_keys(vm: Vm | None) -> frozenset[str]:
    return frozenset(vm.guest.ips) if vm is not None and vm.guest is not None else NOTHING


def master_ref_of(pools: Records) -> str:
    return next((str(p.get("master")) for p in pools.values()), "")


def pick_master(pool_name: str, hosts: Mapping[str, Host], master_ref: str) -> Host:
    master = hosts.get(master_ref) or (hosts[min(hosts)] if hosts else None)
    if master is None:
        raise ValueError(f"pool {pool_name!r} reports no hosts")
    return master


def name_of(model: Host | Network | Vm | None) -> str | None:
    return None if model is None else model.name


def _group(pairs: Iterable[tuple[str, frozenset[str]]]) -> Index:
    table: dict[str, set[str]] = {}
    for ref, keys in pairs:
        for key in keys:
            table.setdefault(key, set()).add(ref)
    return MappingProxyType({key: frozenset(refs) for key, refs in table.items()})


def build_inventory(pool_name: str, records: Mapping[str, Records]) -> PoolInventory:
    """The whole inventory from the records of every class (after a full read)."""
    master_ref = master_ref_of(records["pool"])
    hosts = {ref: host_model(ref, h, master_ref) for ref, h in records["host"].items()}
    networks = {ref: network_model(ref, n) for ref, n in records["network"].items()}
    vms = {}
    for ref, v in records["VM"].items():
        vm = vm_model(ref, v, hosts, records["VM_guest_metrics"])
        if vm is not None:
            vms[ref] = vm
    vifs = {}
    for ref, f in records["VIF"].items():
        vif = vif_model(ref, f, vms, networks)
        if vif is not None:
            vifs[ref] = vif
    pifs = {ref: pif_model(ref, p, hosts, networks) for ref, p in records["PIF"].items()}
    by_uuid: dict[str, Interface] = {i.uuid: i for i in vifs.values()}
    by_uuid.update({p.uuid: p for p in pifs.values()})
    raw = {
        name: _group((ref, keys(record)) for ref, record in records[cls].items())
        for name, (cls, keys) in RAW_INDEXES.items()
    }
    indexes = InventoryIndexes(
        **raw,
        vms_by_name=_group((ref, name_keys(vm)) for ref, vm in vms.items()),
        vms_by_ip=_group((ref, ip_keys(vm)) for ref, vm in vms.items()),
        by_uuid=MappingProxyType(by_uuid),
    )
    return PoolInventory(
        pool=pool_name,
        master=pick_master(pool_name, hosts, master_ref),
        hosts=MappingProxyType(hosts),
        vms=MappingProxyType(vms),
        vifs=MappingProxyType(vifs),
        pifs=MappingProxyType(pifs),
        networks=MappingProxyType(networks),
        indexes=indexes,
    )
