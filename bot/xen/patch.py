"""The next inventory from an ``event.from`` batch: the previous one patched, not rebuilt.

Only the changed records' models are rebuilt, plus those derived from them, found through the
inventory's indexes (bot/domain/model.py ``InventoryIndexes``); maps are copied on write, so the
previous snapshot never changes under its readers. Must agree with ``records.build_inventory``:
tests/xen/test_inventory_patch.py checks it on random event sequences.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from bot.domain.model import Index, InventoryIndexes, Pif, PoolInventory, Vif
from bot.xen.records import (
    NOTHING,
    RAW_INDEXES,
    Changes,
    Records,
    build_inventory,
    host_model,
    ip_keys,
    master_ref_of,
    name_keys,
    name_of,
    network_model,
    pick_master,
    pif_model,
    vif_model,
    vm_model,
)


class _Patch:
    """A map being changed copy-on-write: the base is never touched; ``result`` is a new view."""

    def __init__(self, base: Mapping[str, Any]) -> None:
        self.base = base
        self.copy: dict[str, Any] | None = None

    def get(self, key: str) -> Any:
        return (self.copy if self.copy is not None else self.base).get(key)

    def set(self, key: str, value: Any) -> None:
        if value is None and key not in self.view:
            return
        if self.copy is None:
            self.copy = dict(self.base)
        if value is None:
            self.copy.pop(key, None)
        else:
            self.copy[key] = value

    @property
    def view(self) -> Mapping[str, Any]:
        return self.copy if self.copy is not None else self.base

    def result(self) -> Mapping[str, Any]:
        return self.base if self.copy is None else MappingProxyType(self.copy)


class _IndexPatch:
    """Moves of refs between keys, applied once per batch: each touched key gets one new frozenset."""

    def __init__(self, base: Index) -> None:
        self.base = base
        self.moves: dict[str, tuple[set[str], set[str]]] = {}  # key -> (removed, added)

    def move(self, ref: str, old: frozenset[str], new: frozenset[str]) -> None:
        for key in old - new:
            self.moves.setdefault(key, (set(), set()))[0].add(ref)
        for key in new - old:
            self.moves.setdefault(key, (set(), set()))[1].add(ref)

    def get(self, key: str) -> frozenset[str]:
        removed, added = self.moves.get(key, ((), ()))
        return (self.base.get(key, NOTHING) - set(removed)) | set(added)

    def result(self) -> Index:
        if not self.moves:
            return self.base
        table = dict(self.base)
        for key, (removed, added) in self.moves.items():
            value = (table.get(key, NOTHING) - removed) | added
            if value:
                table[key] = frozenset(value)
            else:
                table.pop(key, None)
        return MappingProxyType(table)


def patch_inventory(previous: PoolInventory, records: Mapping[str, Records], changes: Changes) -> PoolInventory:
    """The inventory after an ``event.from`` batch: ``previous`` with the ``changes`` applied.

    ``records`` are the mirror's records after the batch. Only the changed records' models are
    rebuilt, plus those derived from them: a host's or network's new name reaches its VMs,
    VIFs and PIFs, a VM's new name (or becoming a template) its VIFs, a guest_metrics record
    its VMs. ``previous`` is not touched (see PoolInventory)."""
    if previous.indexes is None or not any(changes.values()):
        return previous if previous.indexes is not None else build_inventory(previous.pool, records)
    old = previous.indexes
    raw = {name: _IndexPatch(getattr(old, name)) for name in RAW_INDEXES}
    for name, (cls, keys) in RAW_INDEXES.items():
        for ref, before in changes.get(cls, {}).items():
            raw[name].move(ref, keys(before), keys(records[cls].get(ref)))

    master_ref = master_ref_of(records["pool"])
    host_refs = set(changes.get("host", ()))
    if changes.get("pool"):
        host_refs |= set(previous.hosts) | set(records["host"])  # the master may have moved
    hosts = _Patch(previous.hosts)
    renamed_hosts = _rebuild(hosts, host_refs, lambda ref, h: host_model(ref, h, master_ref), records["host"])
    networks = _Patch(previous.networks)
    renamed_networks = _rebuild(networks, set(changes.get("network", ())), network_model, records["network"])

    vm_refs = set(changes.get("VM", ()))
    for metrics_ref in changes.get("VM_guest_metrics", ()):
        vm_refs |= raw["vms_by_metrics"].get(metrics_ref)
    for host_ref in renamed_hosts:
        vm_refs |= raw["vms_by_host"].get(host_ref)
    vms = _Patch(previous.vms)
    by_name, by_ip = _IndexPatch(old.vms_by_name), _IndexPatch(old.vms_by_ip)
    host_view, metrics = hosts.view, records["VM_guest_metrics"]
    moved_vms: set[str] = set()  # VMs whose name changed, or that (dis)appeared: their VIFs follow
    for ref in vm_refs:
        record = records["VM"].get(ref)
        before, after = vms.get(ref), vm_model(ref, record, host_view, metrics) if record is not None else None
        vms.set(ref, after)
        by_name.move(ref, name_keys(before), name_keys(after))
        by_ip.move(ref, ip_keys(before), ip_keys(after))
        if name_of(before) != name_of(after):
            moved_vms.add(ref)

    by_uuid = _Patch(old.by_uuid)
    vif_refs = set(changes.get("VIF", ()))
    for vm_ref in moved_vms:
        vif_refs |= raw["vifs_by_vm"].get(vm_ref)
    for net_ref in renamed_networks:
        vif_refs |= raw["vifs_by_network"].get(net_ref)
    vifs = _Patch(previous.vifs)
    vm_view, net_view = vms.view, networks.view
    for ref in vif_refs:
        record = records["VIF"].get(ref)
        _swap(vifs, by_uuid, ref, vif_model(ref, record, vm_view, net_view) if record is not None else None)

    pif_refs = set(changes.get("PIF", ()))
    for host_ref in renamed_hosts:
        pif_refs |= raw["pifs_by_host"].get(host_ref)
    for net_ref in renamed_networks:
        pif_refs |= raw["pifs_by_network"].get(net_ref)
    pifs = _Patch(previous.pifs)
    for ref in pif_refs:
        record = records["PIF"].get(ref)
        _swap(pifs, by_uuid, ref, pif_model(ref, record, host_view, net_view) if record is not None else None)

    indexes = InventoryIndexes(
        **{name: patch.result() for name, patch in raw.items()},
        vms_by_name=by_name.result(),
        vms_by_ip=by_ip.result(),
        by_uuid=by_uuid.result(),
    )
    new_hosts = hosts.result()
    master = previous.master if hosts.copy is None and not changes.get("pool") else None
    return PoolInventory(
        pool=previous.pool,
        master=master or pick_master(previous.pool, new_hosts, master_ref),
        hosts=new_hosts,
        vms=vms.result(),
        vifs=vifs.result(),
        pifs=pifs.result(),
        networks=networks.result(),
        indexes=indexes,
    )


def _rebuild(table: _Patch, refs: set[str], model: Callable[[str, Any], Any], records: Records) -> set[str]:
    """Rebuild ``refs`` in ``table``; returns those whose name changed (or that came or went)."""
    renamed = set()
    for ref in refs:
        record = records.get(ref)
        before, after = table.get(ref), model(ref, record) if record is not None else None
        table.set(ref, after)
        if name_of(before) != name_of(after):
            renamed.add(ref)
    return renamed


def _swap(table: _Patch, by_uuid: _Patch, ref: str, after: Vif | Pif | None) -> None:
    before = table.get(ref)
    if before is not None and by_uuid.get(before.uuid) is before:
        by_uuid.set(before.uuid, None)
    table.set(ref, after)
    if after is not None:
        by_uuid.set(after.uuid, after)
