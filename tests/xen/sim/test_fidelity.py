"""The simulator is not kinder than XAPI (issue 14): each test states one behaviour of the
real toolstack, cites the xen-api file it comes from, and checks it through the stock
``XenAPI`` client over HTTP. Arranging state and reading the effective offload state goes
through the simulator's Python API, as in test_conformance.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI

from bot.xen.sim import Simulator
from bot.xen.sim.pool import VIF_OFFLOAD_KEYS
from tests.xen.sim.test_conformance import failure, login

ALL_ON = dict.fromkeys(VIF_OFFLOAD_KEYS, "on")


@pytest.fixture
def xapi(sim: Simulator) -> Iterator[Any]:
    session = login(sim.url)
    yield session.xenapi
    session("close")()


# -------------------------------------------- item 2: exact values (vif-real, nm.ml)
def test_vif_real_case_is_exact_and_case_sensitive(sim: Simulator, xapi: Any) -> None:
    """ocaml/xenopsd/scripts/vif-real handle_ethtool: ``case "${arg}" in true|on) … false|off)``."""
    vif = sim.pool.vif("centos7-db01", 0)
    xapi.VIF.set_other_config(vif, {"ethtool-tx": " Off", "ethtool-rx": "TRUE", "ethtool-sg": "false",
                                    "ethtool-tso": "off ", "ethtool-gso": "on"})
    xapi.VIF.unplug(vif)
    xapi.VIF.plug(vif)
    assert sim.effective_offload(vif) == {**ALL_ON, "sg": "off"}


def test_nm_ml_ignores_pif_values_that_are_not_exact(sim: Simulator, xapi: Any) -> None:
    """ocaml/xapi/nm.ml determine_ethtool_settings: ``Some ("false" | "off")``; others warn and skip."""
    eth2 = sim.pool.pif("xcp-host1", "eth2")
    xapi.PIF.add_to_other_config(eth2, "ethtool-tso", "OFF")
    xapi.PIF.add_to_other_config(eth2, "ethtool-gso", "false")
    xapi.PIF.plug(eth2)
    effective = sim.effective_offload(eth2)
    assert (effective["tso"], effective["gso"]) == ("on", "off")


# ------------------------------ item 3: PIF lro is off unless given (network_server.ml)
def test_networkd_adds_lro_off_for_a_pif_key_not_given(sim: Simulator, xapi: Any) -> None:
    """ocaml/networkd/bin/network_server.ml set_ethtool_offload adds default_interface's
    ``[("lro", "off")]`` (ocaml/xapi-idl/network/network_interface.ml) for keys not given."""
    eth2 = sim.pool.pif("xcp-host1", "eth2")
    assert sim.effective_offload(eth2)["lro"] == "off"  # at host start
    assert sim.effective_offload(eth2)["gro"] == "on"
    xapi.PIF.add_to_other_config(eth2, "ethtool-lro", "on")
    xapi.PIF.plug(eth2)
    assert sim.effective_offload(eth2)["lro"] == "on"
    xapi.PIF.remove_from_other_config(eth2, "ethtool-lro")
    xapi.PIF.plug(eth2)  # unlike other absent keys, lro does not keep its last value
    assert sim.effective_offload(eth2)["lro"] == "off"
    # Bond members are configured the same way when the bond comes up (nm.ml create_bond).
    member = sim.pool.pif("xcp-host2", "eth0")
    assert sim.effective_offload(member)["lro"] == "off"


# ------------------------------------- item 8: guest metrics vanish at VM.start (xapi_vm.ml)
def test_vm_start_deletes_guest_metrics_until_the_agent_reports(sim: Simulator, xapi: Any) -> None:
    """ocaml/xapi/xapi_vm.ml start: ``Xapi_vm_helpers.delete_guest_metrics`` before booting."""
    vm = sim.pool.vm("win2019-dc01")
    old = xapi.VM.get_guest_metrics(vm)
    assert xapi.VM_guest_metrics.get_PV_drivers_detected(old) is True
    sim.set_guest_agent_delay(300)
    xapi.VM.clean_shutdown(vm)
    xapi.VM.start(vm, False, False)
    assert xapi.VM.get_guest_metrics(vm) == "OpaqueRef:NULL"
    assert failure(xapi.VM_guest_metrics.get_record, old) == ["HANDLE_INVALID", "VM_guest_metrics", old]
    deadline = time.monotonic() + 5
    while xapi.VM.get_guest_metrics(vm) == "OpaqueRef:NULL":
        assert time.monotonic() < deadline, "the agent never reported again"
        time.sleep(0.02)
    new = xapi.VM.get_guest_metrics(vm)
    assert new != old and xapi.VM_guest_metrics.get_PV_drivers_detected(new) is True


def test_an_agent_that_never_reports_leaves_guest_metrics_null(sim: Simulator, xapi: Any) -> None:
    vm = sim.pool.vm("win2019-dc01")
    sim.set_guest_agent_delay(None)
    xapi.VM.clean_shutdown(vm)
    xapi.VM.start(vm, False, False)
    assert xapi.VM.get_guest_metrics(vm) == "OpaqueRef:NULL"


# ------------------- item 6: bounded deletion memory, no EVENTS_LOST (db_cache_types.ml)
def test_event_from_forgets_old_deletions_silently_and_counts_stay_true(sim: Simulator, xapi: Any) -> None:
    """ocaml/database/db_cache_types.ml Table.remove keeps a table's deletions below 512, cut back
    to the newest 256; xapi_event.ml's event.from reports only those, never EVENTS_LOST, and its
    valid_ref_counts count the live rows (what clients must compare, message_forwarding.ml)."""
    made = [sim.pool.create("VM_guest_metrics", {}) for _ in range(600)]
    token = xapi.event.inject("pool", xapi.pool.get_all()[0])  # a token from after the creations
    for ref in made:
        sim.pool.destroy(ref)
    batch = getattr(xapi.event, "from")(["vm_guest_metrics"], token, 0.1)
    deleted = [e["ref"] for e in batch["events"] if e["operation"] == "del"]
    assert 256 < len(deleted) < 512
    assert deleted == made[-len(deleted):]  # the newest ones; the oldest are silently gone
    assert int(batch["valid_ref_counts"]["vm_guest_metrics"]) == len(xapi.VM_guest_metrics.get_all())


def test_a_xapi_restart_forgets_every_deletion_without_events_lost(sim: Simulator, xapi: Any) -> None:
    token = getattr(xapi.event, "from")(["vif"], "", 0.1)["token"]
    vif = sim.pool.vif("win7-kiosk", 0)
    sim.pool.destroy_object(vif)
    sim.pool.forget_events()  # the deletion queues are in memory only
    batch = getattr(xapi.event, "from")(["vif"], token, 0.1)
    assert [e for e in batch["events"] if e["operation"] == "del"] == []
    assert int(batch["valid_ref_counts"]["vif"]) == len(xapi.VIF.get_all())


# ---------------- item 7: members in emergency mode while the master is down (api_server.ml)
def _members(sim: Simulator) -> list[tuple[str, str]]:
    master = sim.pool.fields(sim.pool.master_ref)["name_label"]
    return [(name, url) for name, url in sim.host_urls.items() if name != master]


def test_members_answer_every_call_with_their_emergency_error(sim: Simulator, xapi: Any) -> None:
    """ocaml/xapi/api_server.ml: in slave_emergency_mode every call but Datamodel.emergency_calls
    raises emergency_mode_error — login included, never HOST_IS_SLAVE (set in ocaml/xapi/xapi.ml)."""
    (_first, first_url), (second, second_url) = _members(sim)
    assert failure(login, first_url)[0] == "HOST_IS_SLAVE"  # the master is up: the usual answer
    sim.stop_master()
    with pytest.raises(OSError):  # the master answers nothing at all
        login(sim.url)
    assert failure(login, first_url)[0] == "INTERNAL_ERROR"  # it cannot reach the master
    sim.set_emergency_error(second, ["HOST_STILL_BOOTING"])
    assert failure(login, second_url) == ["HOST_STILL_BOOTING"]
    sim.set_emergency_error(second, ["HOST_MASTER_CANNOT_TALK_BACK", "127.0.0.3"])
    assert failure(login, second_url) == ["HOST_MASTER_CANNOT_TALK_BACK", "127.0.0.3"]


def test_emergency_transition_to_master_promotes_a_member(sim: Simulator) -> None:
    """pool.emergency_transition_to_master (ocaml/idl/datamodel_pool.ml transition_to_master) is an
    emergency call, made with a session from session.slave_local_login_with_password."""
    (first, first_url), (_second, second_url) = _members(sim)
    sim.stop_master()
    local = login_local(first_url)
    assert local.xenapi.host.is_in_emergency_mode() is True
    local.xenapi.pool.emergency_transition_to_master()
    xs = login(first_url)  # the promoted member now takes ordinary logins
    assert xs.xenapi.host.get_name_label(xs.xenapi.pool.get_master(xs.xenapi.pool.get_all()[0])) == first
    assert failure(login, second_url)[0] == "INTERNAL_ERROR"  # the others still wait for their master
    xs.xenapi.pool.recover_slaves()
    assert failure(login, second_url)[0:1] == ["HOST_IS_SLAVE"]  # now they point at the new master
    xs("close")()


def login_local(url: str) -> Any:
    session = XenAPI.Session(url)
    session.slave_local_login_with_password("root", "xenroot")
    return session


# ------------------------------------------- lifecycle over XML-RPC (xapi_vif.ml, xapi_vm_clone.ml)
def _net(xapi: Any, name: str) -> str:
    return str(xapi.network.get_by_name_label(name)[0])


def test_vif_create_and_destroy_as_xapi_checks_them(sim: Simulator, xapi: Any) -> None:
    """ocaml/xapi/xapi_vif.ml create: currently_attached is forced false unless the VM is suspended;
    xapi_vif_helpers.ml: unique numeric device, destroy refused while attached to a running VM."""
    vm = sim.pool.vm("win2019-dc01")
    net = _net(xapi, "DMZ VLAN 100")
    record = {"device": "7", "network": net, "VM": vm, "MAC": "", "MTU": "1500",
              "other_config": {"ethtool-tx": "off"}, "currently_attached": True,
              "qos_algorithm_type": "", "qos_algorithm_params": {}}
    vif = xapi.VIF.create(record)
    rec = xapi.VIF.get_record(vif)
    assert (rec["currently_attached"], rec["other_config"], rec["device"]) == (False, {"ethtool-tx": "off"}, "7")
    assert vif in xapi.VM.get_VIFs(vm) and rec["MAC"]
    assert failure(xapi.VIF.create, record) == ["DEVICE_ALREADY_EXISTS", "7"]
    assert failure(xapi.VIF.create, {**record, "device": "eth0"}) == ["INVALID_DEVICE", "eth0"]
    xapi.VIF.plug(vif)
    assert sim.effective_offload(vif)["tx"] == "off"
    assert failure(xapi.VIF.destroy, vif) == ["OPERATION_NOT_ALLOWED", "VIF currently attached to a running VM"]
    xapi.VIF.unplug(vif)
    xapi.VIF.destroy(vif)
    assert vif not in xapi.VM.get_VIFs(vm)
    assert failure(xapi.VIF.get_record, vif) == ["HANDLE_INVALID", "VIF", vif]


def test_clone_copies_every_vif_other_config_key_and_starts_halted(sim: Simulator, xapi: Any) -> None:
    """ocaml/xapi/xapi_vm_clone.ml copies VIFs with Xapi_vif_helpers.copy: the whole other_config
    (ignored values too), a new MAC, not attached; the clone is Halted without guest metrics."""
    source = sim.pool.vm("ubuntu-build02")  # halted
    src_vif = xapi.VM.get_VIFs(source)[0]
    xapi.VIF.set_other_config(src_vif, {"ethtool-tx": "off", "ethtool-rx": " Off", "owner": "ops"})
    for call in (lambda: xapi.VM.clone(source, "build-clone"), lambda: xapi.VM.copy(source, "build-copy", "")):
        clone = call()
        assert xapi.VM.get_power_state(clone) == "Halted"
        assert xapi.VM.get_guest_metrics(clone) == "OpaqueRef:NULL"
        seed = xapi.VM.get_other_config(clone)["mac_seed"]
        assert seed and seed != xapi.VM.get_other_config(source).get("mac_seed")
        [vif] = xapi.VM.get_VIFs(clone)
        rec = xapi.VIF.get_record(vif)
        assert rec["other_config"] == {"ethtool-tx": "off", "ethtool-rx": " Off", "owner": "ops"}
        assert rec["MAC"] != xapi.VIF.get_MAC(src_vif) and rec["currently_attached"] is False
        assert rec["device"] == xapi.VIF.get_device(src_vif)
    running = sim.pool.vm("win2019-dc01")
    assert failure(xapi.VM.clone, running, "x")[:1] == ["VM_BAD_POWER_STATE"]


def test_vm_destroy_needs_halted_and_takes_its_vifs(sim: Simulator, xapi: Any) -> None:
    """ocaml/xapi/xapi_vm_lifecycle.ml: destroy only from Halted/Suspended; xapi_vm_helpers.ml destroy."""
    running = sim.pool.vm("win2019-dc01")
    assert failure(xapi.VM.destroy, running) == ["VM_BAD_POWER_STATE", running, "halted, suspended", "running"]
    clone = xapi.VM.clone(sim.pool.vm("ubuntu-build02"), "doomed")
    vifs = xapi.VM.get_VIFs(clone)
    token = xapi.event.inject("pool", xapi.pool.get_all()[0])
    xapi.VM.destroy(clone)
    batch = getattr(xapi.event, "from")(["vm", "vif"], token, 0.1)
    assert {(e["class"], e["ref"]) for e in batch["events"] if e["operation"] == "del"} == {
        ("vm", clone), *(("vif", v) for v in vifs)}
