"""A patched inventory equals a rebuilt one, whatever events arrive and in whatever order.

The gateway patches its inventory with each ``event.from`` batch (bot/xen/patch.py
``patch_inventory``) instead of rebuilding it from every record. Hypothesis drives random
batches (renames of hosts, networks and VMs, a master moving, VMs turning into templates,
guest metrics changing addresses, VIFs and PIFs moving between VMs, hosts and networks,
objects coming and going, a class read again after forgotten deletions) through the
mirror exactly as the gateway does, and after each batch the patched inventory, indexes
included, must equal ``build_inventory`` of the same records. Snapshots handed out before
a batch must not change.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.domain.model import Interface, InventoryIndexes, PoolInventory
from bot.xen.mirror import INVENTORY_CLASSES, RecordMirror
from bot.xen.records import build_inventory

HOSTS = [f"OpaqueRef:h{i}" for i in range(3)]
NETWORKS = [f"OpaqueRef:n{i}" for i in range(3)]
VMS = [f"OpaqueRef:v{i}" for i in range(5)]
METRICS = [f"OpaqueRef:g{i}" for i in range(4)]
VIFS = [f"OpaqueRef:f{i}" for i in range(8)]
PIFS = [f"OpaqueRef:p{i}" for i in range(5)]
NULL = "OpaqueRef:NULL"
NAMES = ["alpha", "Alpha", "beta", ""]
IPS = ["10.0.0.1", "10.0.0.2", "fe80::1"]


def names() -> st.SearchStrategy[str]:
    return st.sampled_from(NAMES)


def other_config() -> st.SearchStrategy[dict[str, str]]:
    return st.dictionaries(st.sampled_from(["ethtool-tx", "ethtool-gso", "mtu"]), st.sampled_from(["on", "off"]))


def record(cls: str, ref: str) -> st.SearchStrategy[dict[str, Any]]:
    """A fresh record of ``cls`` (uuids derive from the ref: XAPI never reuses one)."""
    uuid = st.just(f"uuid-{ref}")
    if cls == "pool":
        return st.fixed_dictionaries({"uuid": uuid, "master": st.sampled_from([*HOSTS, NULL])})
    if cls == "host":
        return st.fixed_dictionaries({
            "uuid": uuid, "name_label": names(), "hostname": names(), "address": st.sampled_from(["", "10.1.1.1"]),
            "enabled": st.booleans(),
        })
    if cls == "network":
        return st.fixed_dictionaries({"uuid": uuid, "name_label": names(), "bridge": st.just("xenbr0"),
                                      "MTU": st.sampled_from(["1500", "9000"])})
    if cls == "VM_guest_metrics":
        return st.fixed_dictionaries({
            "uuid": uuid, "PV_drivers_detected": st.booleans(),
            "networks": st.dictionaries(st.sampled_from(["0/ip", "0/ipv6/0", "1/ip"]), st.sampled_from(IPS)),
            "os_version": st.just({"name": "Debian"}),
        })
    if cls == "VM":
        return st.fixed_dictionaries({
            "uuid": uuid, "name_label": names(), "power_state": st.sampled_from(["Running", "Halted"]),
            "is_a_template": st.booleans(), "is_a_snapshot": st.just(False), "is_control_domain": st.booleans(),
            "resident_on": st.sampled_from([*HOSTS, NULL]), "guest_metrics": st.sampled_from([*METRICS, NULL]),
            "VIFs": st.lists(st.sampled_from(VIFS), max_size=3, unique=True), "tags": st.just([]),
            "other_config": other_config(),
        })
    if cls == "VIF":
        return st.fixed_dictionaries({
            "uuid": uuid, "device": st.sampled_from(["0", "1"]), "MAC": st.just("aa"), "MTU": st.just("1500"),
            "VM": st.sampled_from([*VMS, NULL]), "network": st.sampled_from([*NETWORKS, NULL]),
            "currently_attached": st.booleans(), "other_config": other_config(),
        })
    return st.fixed_dictionaries({
        "uuid": uuid, "device": st.sampled_from(["eth0", "eth1"]), "MAC": st.just("bb"), "MTU": st.just("1500"),
        "VLAN": st.sampled_from(["-1", "100"]), "host": st.sampled_from([*HOSTS, NULL]),
        "network": st.sampled_from([*NETWORKS, NULL]), "physical": st.booleans(), "other_config": other_config(),
        "bond_slave_of": st.just(NULL), "bond_master_of": st.just([]),
    })


REFS = {"pool": ["OpaqueRef:pool"], "host": HOSTS, "network": NETWORKS, "VM_guest_metrics": METRICS,
        "VM": VMS, "VIF": VIFS, "PIF": PIFS}


@st.composite
def table(draw: st.DrawFn, cls: str) -> dict[str, dict[str, Any]]:
    refs = REFS[cls] if cls in ("pool", "host") else draw(st.lists(st.sampled_from(REFS[cls]), unique=True))
    return {ref: draw(record(cls, ref)) for ref in refs}


@st.composite
def event(draw: st.DrawFn) -> dict[str, Any]:
    cls = draw(st.sampled_from(INVENTORY_CLASSES))
    ref = draw(st.sampled_from(REFS[cls]))
    if cls not in ("pool", "host") and draw(st.integers(0, 4)) == 0:
        return {"class": cls.lower(), "ref": ref, "operation": "del"}
    return {"class": cls.lower(), "ref": ref, "operation": "mod", "snapshot": draw(record(cls, ref))}


@st.composite
def step(draw: st.DrawFn) -> tuple[str, Any]:
    """An event.from batch, or (rarely) a class read again (valid_ref_counts disagreed)."""
    if draw(st.integers(0, 9)) == 0:
        cls = draw(st.sampled_from([c for c in INVENTORY_CLASSES if c not in ("pool", "host")]))
        return "reread", (cls, draw(table(cls)))
    return "events", draw(st.lists(event(), min_size=1, max_size=6))


def rebuilt(mirror: RecordMirror) -> PoolInventory:
    return build_inventory("prod", copy.deepcopy(mirror.records))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.fixed_dictionaries({cls: table(cls) for cls in INVENTORY_CLASSES}),
    steps=st.lists(step(), min_size=1, max_size=8),
)
def test_a_patched_inventory_equals_a_rebuilt_one(start: dict[str, Any], steps: list[tuple[str, Any]]) -> None:
    mirror = RecordMirror("token", 0, start, build_inventory("prod", start))
    for kind, what in steps:
        before = mirror.inventory
        before_copy = rebuilt_from(before)
        if kind == "events":
            mirror.absorb({"events": what, "token": "t"})
        else:
            mirror.replace(*what)
        after = mirror.refresh()
        assert after == rebuilt(mirror)
        assert after.indexes == rebuilt(mirror).indexes
        assert before == before_copy, "a snapshot handed out earlier changed under its reader"
        # The queries that used to scan answer the same from the indexes.
        for host in after.hosts.values():
            pifs = {p.ref for p in after.pifs.values() if p.host_ref == host.ref}
            assert {p.ref for p in after.pifs_of(host)} == pifs
            vms = {v.ref for v in after.vms.values() if v.resident_on == host.ref}
            assert {v.ref for v in after.vms_on(host)} == vms
        for vm in after.vms.values():
            assert vm in after.vms_named(vm.name.upper())
            for ip in vm.guest.ips if vm.guest else ():
                assert vm in after.vms_with_ip(ip)
        interfaces: list[Interface] = [*after.vifs.values(), *after.pifs.values()]
        for interface in interfaces:
            assert after.interface(interface.uuid) == interface


def rebuilt_from(inventory: PoolInventory) -> PoolInventory:
    """A detached copy of a snapshot's contents, to compare it with later."""
    return PoolInventory(
        inventory.pool, inventory.master, dict(inventory.hosts), dict(inventory.vms), dict(inventory.vifs),
        dict(inventory.pifs), dict(inventory.networks),
        indexes=None if inventory.indexes is None else InventoryIndexes(
            **{f.name: dict(getattr(inventory.indexes, f.name)) for f in dataclasses.fields(InventoryIndexes)}
        ),
    )


def test_an_unchanged_batch_returns_the_same_snapshot() -> None:
    records: dict[str, dict[str, Any]] = {cls: {} for cls in INVENTORY_CLASSES}
    records["host"] = {HOSTS[0]: {"uuid": "h", "name_label": "h"}}
    records["pool"] = {"OpaqueRef:pool": {"master": HOSTS[0]}}
    mirror = RecordMirror("token", 0, records, build_inventory("prod", records))
    first = mirror.inventory
    assert not mirror.absorb({"events": [{"class": "host", "ref": HOSTS[0], "operation": "mod",
                                          "snapshot": {"uuid": "h", "name_label": "h"}}], "token": "t"})
    assert mirror.refresh() is first
