"""The gateway's inventory after the first read: only what event.from says changed.

Against the simulator over HTTP through the stock XenAPI client; changes are made the
way an operator's other tools make them (XAPI calls on another session, new objects in
the pool), and the inventory must show each of them without reading the pool again.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI

from bot.xen.gateway import PoolGateway
from bot.xen.sim import Simulator
from tests.conftest_xen import pool_settings


@pytest.fixture
def other_tool(sim: Simulator) -> Iterator[Any]:
    session = XenAPI.Session(sim.url)
    session.xenapi.login_with_password(sim.user, sim.password, "2.0", "another-tool")
    yield session.xenapi
    session.xenapi.session.logout()


def full_reads(sim: Simulator) -> int:
    return sum(n for method, n in sim.call_counts().items() if method.endswith("get_all_records"))


def vif_of(gateway: PoolGateway, vm_name: str) -> Any:
    inventory = gateway.inventory()
    return next(v for v in inventory.vifs.values() if v.vm_name == vm_name)


def test_edits_made_elsewhere_show_up_without_a_full_read(sim, gateway, other_tool):
    before = vif_of(gateway, "win7-kiosk")
    assert "ethtool-gso" not in before.other_config
    sim.reset_call_counts()

    other_tool.VIF.add_to_other_config(before.ref, "ethtool-gso", "off")
    vm_ref = other_tool.VM.get_by_name_label("win7-kiosk")[0]
    other_tool.VM.set_name_label(vm_ref, "win7-kiosk-renamed")

    inventory = gateway.inventory()
    after = inventory.vifs[before.ref]
    assert after.other_config["ethtool-gso"] == "off"
    assert inventory.vms[vm_ref].name == "win7-kiosk-renamed"
    assert after.vm_name == "win7-kiosk-renamed"  # derived fields are rebuilt, not patched
    assert full_reads(sim) == 0
    assert sim.call_counts()["event.from"] == 1


def test_new_and_destroyed_objects(sim, gateway):
    gateway.inventory()
    sim.reset_call_counts()
    vm = sim.pool.create_vm("fresh-vm", host="xcp-host1", power_state="Running")
    network = next(n.ref for n in gateway.inventory().networks.values() if n.name == "DMZ VLAN 100")
    new_vif = sim.pool.create_vif(vm, network, device="0", plugged=True)

    inventory = gateway.inventory()
    assert inventory.vms[vm].name == "fresh-vm"
    assert [v.ref for v in inventory.vifs_of(inventory.vms[vm])] == [new_vif]

    sim.pool.destroy_object(new_vif)
    assert new_vif not in gateway.inventory().vifs
    assert full_reads(sim) == 0


def test_an_idle_pool_costs_one_small_call_and_no_rebuild(sim, gateway):
    gateway.inventory()
    first = gateway.inventory()  # takes in the pool object event.inject touched for the token
    sim.reset_call_counts()
    assert gateway.inventory() is first  # nothing changed: the same snapshot, not a copy
    assert sim.call_counts() == {"event.from": 1}


def test_max_age_spares_even_the_event_call(sim, gateway):
    gateway.inventory()
    sim.reset_call_counts()
    gateway.inventory(max_age=60)
    assert sim.call_counts() == {}


def test_an_event_error_means_one_full_read_then_incremental_again(sim, gateway, other_tool):
    vif = vif_of(gateway, "win7-kiosk")
    other_tool.VIF.add_to_other_config(vif.ref, "ethtool-rx", "off")
    sim.faults.fail("event.from", "EVENT_FROM_TOKEN_PARSE_FAILURE", ["?"], times=1)
    sim.reset_call_counts()

    assert gateway.inventory().vifs[vif.ref].other_config["ethtool-rx"] == "off"
    assert full_reads(sim) == 7

    sim.reset_call_counts()
    other_tool.VIF.remove_from_other_config(vif.ref, "ethtool-rx")
    assert "ethtool-rx" not in gateway.inventory().vifs[vif.ref].other_config
    assert full_reads(sim) == 0


def test_deletions_xapi_forgot_are_found_by_valid_ref_counts(sim, gateway):
    """XAPI's event.from skips deletions older than each table's last 256-512, and a xapi restart
    forgets them all, without EVENTS_LOST (ocaml/database/db_cache_types.ml); clients compare
    valid_ref_counts with what they hold (ocaml/xapi/message_forwarding.ml)."""
    inventory = gateway.inventory()
    vm = next(v for v in inventory.vms.values() if v.name == "win7-kiosk")
    vif_refs = set(vm.vif_refs)
    sim.pool.destroy_object(vm.ref)
    sim.pool.forget_events()  # as a xapi restart: the deletions are gone from memory
    sim.reset_call_counts()
    inventory = gateway.inventory()
    assert vm.ref not in inventory.vms and not vif_refs & set(inventory.vifs)
    # Only the classes whose counts disagree are read again, not the whole pool.
    reads = {m for m in sim.call_counts() if m.endswith(".get_all_records")}
    assert reads and reads <= {"VM.get_all_records", "VIF.get_all_records", "VM_guest_metrics.get_all_records"}


def test_a_new_master_means_a_full_read(sim, gateway):
    gateway.inventory()
    new_master = next(name for name, url in sim.host_urls.items() if url != sim.url)
    sim.move_master(new_master)
    sim.reset_call_counts()
    inventory = gateway.inventory()
    assert inventory.master.name == new_master
    # The old master's token means nothing to the new one: read everything from it instead.
    assert full_reads(sim) == 7


def test_the_token_is_current_even_when_the_pool_object_is_old(sim, gateway, other_tool):
    """XAPI's event.from token is the newest generation among the *subscribed* objects, so a
    token from event.from(["pool"], "") lags behind; event.inject's does not. After the full
    read, the first poll must carry only what changed since, not every VM edited before."""
    for vm in other_tool.VM.get_all()[:5]:
        other_tool.VM.add_to_other_config(vm, "touched", "1")  # edits newer than the pool object
    gateway.inventory()
    sim.reset_call_counts()
    mirror = gateway._mirror
    assert mirror is not None
    result = gateway.call("event.from", ["VM", "VIF"], mirror.token, 0.0)
    assert result["events"] == []


def test_a_role_that_may_not_inject_still_gets_a_safe_token(sim, gateway, other_tool):
    sim.faults.fail("event.inject", "RBAC_PERMISSION_DENIED", ["event.inject"], share=1.0)
    vif = vif_of(gateway, "win7-kiosk")
    other_tool.VIF.add_to_other_config(vif.ref, "ethtool-ufo", "off")
    sim.reset_call_counts()
    assert gateway.inventory().vifs[vif.ref].other_config["ethtool-ufo"] == "off"
    assert full_reads(sim) == 0  # a lagging token costs a bigger poll, never a missed change


def test_without_event_access_every_refresh_is_a_full_read(sim, gateway):
    sim.faults.fail("event.from", "RBAC_PERMISSION_DENIED", ["event.from"], share=1.0)
    gateway.inventory()
    sim.reset_call_counts()
    assert gateway.inventory().vms
    assert full_reads(sim) == 7


def test_a_write_during_the_full_read_is_not_missed(sim, other_tool):
    """The token is taken before the records are read: a write racing the read comes back
    in the next poll (as a ``mod`` with the current record) instead of falling between."""
    gateway = PoolGateway(pool_settings(sim))
    try:
        vif_ref = other_tool.VM.get_VIFs(other_tool.VM.get_by_name_label("win7-kiosk")[0])[0]
        original_call = gateway.call

        def call(method: str, *args: Any, **kwargs: Any) -> Any:
            result = original_call(method, *args, **kwargs)
            if method == "VIF.get_all_records":  # the read is done; this write is after it
                other_tool.VIF.add_to_other_config(vif_ref, "ethtool-sg", "off")
            return result

        gateway.call = call  # type: ignore[method-assign]
        first = gateway.inventory()
        assert "ethtool-sg" not in first.vifs[vif_ref].other_config
        assert gateway.inventory().vifs[vif_ref].other_config["ethtool-sg"] == "off"
    finally:
        gateway.close()



def test_one_copy_of_each_record_and_of_each_string(sim, gateway, other_tool):
    """At 5,000 VMs the records are most of serve's memory: the models keep views of the mirror's
    records (no copy per model or index), and field names and refs are stored once (interned)."""
    inventory = gateway.inventory()
    vif = vif_of(gateway, "win7-kiosk")
    other_tool.VIF.add_to_other_config(vif.ref, "ethtool-gso", "off")  # one record arrives as an event
    inventory = gateway.inventory()
    records = gateway._mirror.records  # type: ignore[union-attr]
    for model in [inventory.vifs[vif.ref], *list(inventory.vifs.values())[:3], *list(inventory.pifs.values())[:3]]:
        table = records["VIF" if model.kind == "vif" else "PIF"]
        assert gc.get_referents(model.params) == [table[model.ref]]
        assert gc.get_referents(model.other_config) == [table[model.ref]["other_config"]]
    evented, read = records["VIF"][vif.ref], next(r for ref, r in records["VIF"].items() if ref != vif.ref)
    assert next(k for k in evented if k == "uuid") is next(k for k in read if k == "uuid")
    vm_refs = {id(ref) for ref in records["VM"]}
    assert id(evented["VM"]) in vm_refs and id(read["VM"]) in vm_refs
