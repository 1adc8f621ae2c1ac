"""Conformance of what activation depends on, through the stock ``XenAPI`` client over HTTP.

Each test names the xen-api source it follows. The ``fragile`` fixture holds the
cases: an HVM guest without PV drivers, a VM that blocks ``clean_shutdown``, a bond
carrying the management interface, an IP-configured storage PIF with
``disallow_unplug``, and a paused VM.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import XenAPI

from bot.xen.sim import Simulator


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator.start("fragile", task_delay_ms=5, event_batch_ms=5) as simulator:
        yield simulator


@pytest.fixture
def xapi(sim: Simulator) -> Iterator[Any]:
    session = XenAPI.Session(sim.url)
    session.xenapi.login_with_password("root", "xenroot", "1.0", "xenbot-conformance")
    yield session.xenapi
    session.xenapi.session.logout()


def failure(fn: Callable[..., Any], *args: Any) -> list[str]:
    with pytest.raises(XenAPI.Failure) as caught:
        fn(*args)
    return list(caught.value.details)


def vm_named(xapi: Any, name: str) -> str:
    return str(xapi.VM.get_by_name_label(name)[0])


def test_clean_shutdown_of_an_hvm_guest_without_pv_drivers_is_vm_lacks_feature(sim: Simulator, xapi: Any) -> None:
    """XA ocaml/xapi/xapi_vm_lifecycle.ml check_op_for_feature: no PV driver version, no
    feature-shutdown/-poweroff -> VM_LACKS_FEATURE [vm] (strict, as with_vm_operation checks)."""
    vm = vm_named(xapi, "hvm-nopv")
    assert xapi.VM.get_guest_metrics(vm) == "OpaqueRef:NULL"
    assert failure(xapi.VM.clean_shutdown, vm) == ["VM_LACKS_FEATURE", vm]
    assert failure(xapi.VM.clean_reboot, vm) == ["VM_LACKS_FEATURE", vm]
    assert "clean_shutdown" not in xapi.VM.get_allowed_operations(vm)
    assert xapi.VM.get_power_state(vm) == "Running"
    # The guest advertising feature-shutdown is enough, PV drivers or not.
    with_feature = vm_named(xapi, "hvm-features")
    assert "clean_shutdown" in xapi.VM.get_allowed_operations(with_feature)
    xapi.VM.clean_shutdown(with_feature)
    assert xapi.VM.get_power_state(with_feature) == "Halted"
    # Once the agent reports PV drivers the check no longer applies (implicit support)...
    sim.pool.set_guest_metrics(vm, pv_drivers_version={"major": "9", "minor": "3"})
    assert "clean_shutdown" in xapi.VM.get_allowed_operations(vm)
    # ...and a halted VM is not live, so only the power state matters for start.
    xapi.VM.hard_shutdown(vm)
    sim.pool.remove_guest_metrics(vm)
    xapi.VM.start(vm, False, False)
    assert xapi.VM.get_power_state(vm) == "Running"


def test_pv_guests_never_lack_the_shutdown_feature(sim: Simulator, xapi: Any) -> None:
    """has_definitely_booted_pv: PV (and PVH) guests support power actions implicitly."""
    vm = vm_named(xapi, "hvm-nopv")
    sim.pool.set_field(vm, "domain_type", "pvh")
    xapi.VM.clean_shutdown(vm)
    assert xapi.VM.get_power_state(vm) == "Halted"


def test_blocked_operations_answer_operation_blocked_before_any_other_check(sim: Simulator, xapi: Any) -> None:
    """XA xapi_vm_lifecycle.ml check_operation_error: blocked_operations is checked first ->
    OPERATION_BLOCKED [ref, reason]; message_forwarding.ml recomputes allowed_operations on
    every blocked_operations write."""
    vm = vm_named(xapi, "erp-blocked")
    reason = "ERP month-end close: ask finance before any shutdown"
    assert xapi.VM.get_blocked_operations(vm) == {"clean_shutdown": reason}
    assert failure(xapi.VM.clean_shutdown, vm) == ["OPERATION_BLOCKED", vm, reason]
    assert "clean_shutdown" not in xapi.VM.get_allowed_operations(vm)
    task = xapi.Async.VM.clean_shutdown(vm)
    sim_wait(lambda: xapi.task.get_status(task) != "pending")
    assert xapi.task.get_error_info(task) == ["OPERATION_BLOCKED", vm, reason]
    # Before the power-state check too: blocking start on a running VM still says blocked.
    xapi.VM.add_to_blocked_operations(vm, "start", "licence server pinned")
    assert failure(xapi.VM.start, vm, False, False) == ["OPERATION_BLOCKED", vm, "licence server pinned"]
    xapi.VM.remove_from_blocked_operations(vm, "clean_shutdown")
    assert "clean_shutdown" in xapi.VM.get_allowed_operations(vm)
    xapi.VM.clean_shutdown(vm)
    assert xapi.VM.get_power_state(vm) == "Halted"
    assert failure(xapi.VM.start, vm, False, False) == ["OPERATION_BLOCKED", vm, "licence server pinned"]


def test_pif_plug_has_no_management_or_disallow_unplug_check(sim: Simulator, xapi: Any) -> None:
    """XA ocaml/xapi/xapi_pif.ml plug: only unplug refuses management and disallow_unplug;
    plug of the management bond or the storage PIF is accepted (and re-applies their config)."""
    host = xapi.host.get_by_name_label("xcp-edge1")[0]
    pifs = {xapi.PIF.get_device(p): p for p in xapi.host.get_PIFs(host)}
    bond, storage = pifs["bond0"], pifs["eth2"]
    assert xapi.PIF.get_management(bond) and xapi.PIF.get_ip_configuration_mode(bond) == "Static"
    assert xapi.PIF.get_bond_master_of(bond)
    assert xapi.PIF.get_disallow_unplug(storage) and xapi.PIF.get_ip_configuration_mode(storage) == "Static"
    assert xapi.PIF.get_IP(storage) == "10.20.0.11"
    assert failure(xapi.PIF.unplug, bond) == ["PIF_IS_MANAGEMENT_INTERFACE", bond]
    assert failure(xapi.PIF.unplug, storage) == ["PIF_DOES_NOT_ALLOW_UNPLUG", storage]
    xapi.PIF.add_to_other_config(storage, "ethtool-tso", "off")
    xapi.PIF.plug(storage)  # no refusal: networkd rebuilds the storage bridge
    xapi.PIF.plug(bond)
    assert xapi.PIF.get_currently_attached(storage) and xapi.PIF.get_currently_attached(bond)
    assert sim.effective_offload(storage)["tso"] == "off"


def test_a_paused_vm_keeps_its_devices_and_refuses_plug_and_shutdown(sim: Simulator, xapi: Any) -> None:
    """Paused is live but not running: VIF.plug/unplug and clean_shutdown want "running"
    (XA xapi_vif_helpers.ml, xapi_vm_lifecycle.ml allowed_power_states)."""
    vm = vm_named(xapi, "mon-paused")
    vif = xapi.VM.get_VIFs(vm)[0]
    assert xapi.VM.get_power_state(vm) == "Paused" and xapi.VIF.get_currently_attached(vif)
    assert failure(xapi.VIF.unplug, vif) == ["VM_BAD_POWER_STATE", vm, "running", "paused"]
    assert failure(xapi.VM.clean_shutdown, vm) == ["VM_BAD_POWER_STATE", vm, "running", "paused"]


def sim_wait(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
