"""XAPI records (as ``get_all_records`` returns them) → domain read models.

Everything numeric arrives as a decimal string and every reference may be
``OpaqueRef:NULL``; both are normalised here so the domain never sees either.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from bot.domain.model import GuestInfo, Host, Network, Pif, PoolInventory, Vif, Vm

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
    if not isinstance(value, Mapping):
        return MappingProxyType({})
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


def build_inventory(
    pool_name: str,
    *,
    pools: Records,
    hosts: Records,
    vms: Records,
    guest_metrics: Records,
    vifs: Records,
    pifs: Records,
    networks: Records,
) -> PoolInventory:
    master_ref = next((str(p.get("master")) for p in pools.values()), "")
    host_models = {
        ref: Host(
            ref=ref,
            uuid=str(h.get("uuid", "")),
            name=str(h.get("name_label", "")),
            hostname=str(h.get("hostname", "")),
            address=str(h.get("address", "")),
            enabled=bool(h.get("enabled", True)),
            is_master=ref == master_ref,
        )
        for ref, h in hosts.items()
    }
    network_models = {
        ref: Network(
            ref=ref,
            uuid=str(n.get("uuid", "")),
            name=str(n.get("name_label", "")),
            bridge=str(n.get("bridge", "")),
            mtu=as_int(n.get("MTU"), 1500),
        )
        for ref, n in networks.items()
    }
    vm_models: dict[str, Vm] = {}
    for ref, v in vms.items():
        if not is_real_vm(v):
            continue
        host_ref = ref_or_none(v.get("resident_on"))
        metrics_ref = ref_or_none(v.get("guest_metrics"))
        vm_models[ref] = Vm(
            ref=ref,
            uuid=str(v.get("uuid", "")),
            name=str(v.get("name_label", "")),
            power_state=str(v.get("power_state", "")),
            resident_on=host_ref,
            host_name=host_models[host_ref].name if host_ref in host_models else "",
            guest=guest_info(guest_metrics.get(metrics_ref)) if metrics_ref else None,
            vif_refs=tuple(str(r) for r in v.get("VIFs", ())),
            tags=tuple(str(t) for t in v.get("tags", ())),
            other_config=as_map(v.get("other_config")),
            domain_type=str(v.get("domain_type") or "hvm"),
            blocked_operations=as_map(v.get("blocked_operations")),
        )
    vif_models: dict[str, Vif] = {}
    for ref, f in vifs.items():
        vm_ref = str(f.get("VM", ""))
        if vm_ref not in vm_models:
            continue  # VIFs of templates, snapshots and dom0 are not the operator's business
        net_ref = str(f.get("network", ""))
        vif_models[ref] = Vif(
            ref=ref,
            uuid=str(f.get("uuid", "")),
            device=str(f.get("device", "")),
            mac=str(f.get("MAC", "")),
            mtu=as_int(f.get("MTU"), 1500),
            vm_ref=vm_ref,
            vm_name=vm_models[vm_ref].name,
            network_ref=net_ref,
            network_name=network_models[net_ref].name if net_ref in network_models else "",
            currently_attached=bool(f.get("currently_attached")),
            other_config=as_map(f.get("other_config")),
            locking_mode=str(f.get("locking_mode", "")),
            status_code=as_int(f.get("status_code")),
            params=MappingProxyType(dict(f)),
        )
    pif_models: dict[str, Pif] = {}
    for ref, p in pifs.items():
        host_ref = str(p.get("host", ""))
        net_ref = str(p.get("network", ""))
        pif_models[ref] = Pif(
            ref=ref,
            uuid=str(p.get("uuid", "")),
            device=str(p.get("device", "")),
            mac=str(p.get("MAC", "")),
            mtu=as_int(p.get("MTU"), 1500),
            vlan=as_int(p.get("VLAN"), -1),
            host_ref=host_ref,
            host_name=host_models[host_ref].name if host_ref in host_models else "",
            network_ref=net_ref,
            network_name=network_models[net_ref].name if net_ref in network_models else "",
            physical=bool(p.get("physical")),
            currently_attached=bool(p.get("currently_attached")),
            management=bool(p.get("management")),
            bond_slave_of=ref_or_none(p.get("bond_slave_of")),
            bond_master_of=tuple(str(b) for b in p.get("bond_master_of", ()) if ref_or_none(b)),
            other_config=as_map(p.get("other_config")),
            properties=as_map(p.get("properties")),
            params=MappingProxyType(dict(p)),
            disallow_unplug=bool(p.get("disallow_unplug")),
            ip_configuration_mode=str(p.get("ip_configuration_mode") or "None"),
            ipv6_configuration_mode=str(p.get("ipv6_configuration_mode") or "None"),
            ip=str(p.get("IP") or ""),
        )
    master = host_models.get(master_ref) or next(iter(host_models.values()), None)
    if master is None:
        raise ValueError(f"pool {pool_name!r} reports no hosts")
    return PoolInventory(
        pool=pool_name,
        master=master,
        hosts=MappingProxyType(host_models),
        vms=MappingProxyType(vm_models),
        vifs=MappingProxyType(vif_models),
        pifs=MappingProxyType(pif_models),
        networks=MappingProxyType(network_models),
    )
