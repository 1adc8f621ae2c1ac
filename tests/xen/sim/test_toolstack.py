"""Conformance: a toolstack restart re-applies PIF keys, a live migration VIF keys (issue 14 item 12).

XA ``ocaml/xapi/xapi_host.ml`` ``restart_agent``, ``ocaml/xapi/xapi_pif.ml``
``start_of_day_best_effort_bring_up``, ``ocaml/xapi/dbsync_slave.ml`` (``agent_start_time``),
``ocaml/xapi/xapi_vm_lifecycle.ml`` (pool_migrate from Running only), ``ocaml/xenopsd/scripts/vif-real``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI

from bot.xen.sim import Simulator


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator.start("demo", task_delay_ms=5, event_batch_ms=5, login_failure_delay_ms=0) as simulator:
        yield simulator


@pytest.fixture
def xapi(sim: Simulator) -> Any:
    session = XenAPI.Session(sim.url)
    session.xenapi.login_with_password("root", "xenroot", "1.0", "toolstack")
    return session.xenapi


def failure(fn: Any, *args: Any) -> list[str]:
    with pytest.raises(XenAPI.Failure) as excinfo:
        fn(*args)
    return list(excinfo.value.details)


def test_restart_agent_reapplies_pif_keys_without_a_reboot(sim: Simulator, xapi: Any) -> None:
    host = xapi.host.get_by_name_label("xcp-host2")[0]
    mgmt = sim.pool.pif("xcp-host2", "eth2")
    slave = sim.pool.pif("xcp-host2", "eth0")  # a bond member: applied through its bond master's plug
    xapi.PIF.add_to_other_config(mgmt, "ethtool-tso", "off")
    xapi.PIF.add_to_other_config(slave, "ethtool-sg", "off")
    assert sim.effective_offload(mgmt)["tso"] == "on" and sim.effective_offload(slave)["sg"] == "on"
    assert "agent_start_time" not in xapi.host.get_other_config(host)
    xapi.host.restart_agent(host)
    assert sim.effective_offload(mgmt)["tso"] == "off" and sim.effective_offload(slave)["sg"] == "off"
    assert sim.effective_offload(slave)["tx"] == "off"  # unchanged keys stay as they were
    stamp = xapi.host.get_other_config(host)["agent_start_time"]
    assert stamp.endswith(".") and float(stamp) > 0  # OCaml string_of_float


def test_restart_agent_on_the_master_loses_every_session(sim: Simulator, xapi: Any) -> None:
    import xmlrpc.client

    proxy = xmlrpc.client.ServerProxy(sim.url)
    ref = proxy.session.login_with_password("root", "xenroot", "1.0", "t")["Value"]
    master = xapi.pool.get_master(xapi.pool.get_all()[0])
    xapi.host.restart_agent(master)
    assert proxy.VM.get_all(ref)["ErrorDescription"] == ["SESSION_INVALID", ref]


def test_pool_migrate_rebuilds_vif_devices_so_keys_take_effect(sim: Simulator, xapi: Any) -> None:
    vm = sim.pool.vm("ubuntu-web02")
    vif = sim.pool.vif("ubuntu-web02", 0)
    xapi.VIF.add_to_other_config(vif, "ethtool-tx", "off")
    assert sim.effective_offload(vif)["tx"] == "on"  # stored, not applied
    host3 = xapi.host.get_by_name_label("xcp-host3")[0]
    domid = xapi.VM.get_domid(vm)
    xapi.VM.pool_migrate(vm, host3, {"live": "true"})
    assert sim.effective_offload(vif)["tx"] == "off"
    assert xapi.VM.get_resident_on(vm) == host3 and xapi.VM.get_domid(vm) != domid
    assert xapi.VM.get_power_state(vm) == "Running" and xapi.VM.get_guest_metrics(vm) != "OpaqueRef:NULL"
    halted = sim.pool.vm("ubuntu-build02")
    assert failure(xapi.VM.pool_migrate, halted, host3, {}) == ["VM_BAD_POWER_STATE", halted, "running", "halted"]
