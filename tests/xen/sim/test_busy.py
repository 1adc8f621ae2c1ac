"""Conformance: synchronous operations on a busy object wait inside XAPI (issue 14 item 9).

XA ``ocaml/xapi/message_forwarding.ml`` (``with_vif_marked``, ``with_vm_operation``) and
``ocaml/xapi/helpers.ml`` (``retry_with_global_lock``: OTHER_OPERATION_IN_PROGRESS is retried
in the server for up to 2 hours); ``ocaml/xapi/xapi_vif_helpers.ml`` (a VIF operation while the
VM shuts down: OPERATION_NOT_ALLOWED, not retried).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI

from bot.xen.sim import Simulator


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator.start("demo", task_delay_ms=300, event_batch_ms=5, login_failure_delay_ms=0) as simulator:
        yield simulator


@pytest.fixture
def xapi(sim: Simulator) -> Any:
    session = XenAPI.Session(sim.url)
    session.xenapi.login_with_password("root", "xenroot", "1.0", "busy")
    return session.xenapi


def failure(fn: Any, *args: Any) -> list[str]:
    with pytest.raises(XenAPI.Failure) as excinfo:
        fn(*args)
    return list(excinfo.value.details)


def test_a_sync_vif_call_waits_for_the_operation_in_progress(sim: Simulator, xapi: Any) -> None:
    vif = sim.pool.vif("ubuntu-web01", 1)
    task = xapi.Async.VIF.unplug(vif)  # holds the VIF for the task's 300 ms
    started = time.monotonic()
    xapi.VIF.plug(vif)  # waits (no OTHER_OPERATION_IN_PROGRESS), then runs after the unplug
    assert time.monotonic() - started >= 0.2
    assert xapi.task.get_status(task) == "success"
    assert xapi.VIF.get_currently_attached(vif) is True


def test_the_wait_is_bounded_then_the_error_is_xapis(sim: Simulator, xapi: Any) -> None:
    sim.set_busy_wait(50)  # XAPI: 7200 s
    vm = sim.pool.vm("ubuntu-web02")
    task = xapi.Async.VM.clean_reboot(vm)
    started = time.monotonic()
    assert failure(xapi.VM.clean_shutdown, vm) == ["OTHER_OPERATION_IN_PROGRESS", "VM", vm, "clean_reboot", task]
    assert 0.05 <= time.monotonic() - started < 0.3


def test_a_vm_power_operation_waits_and_then_runs(sim: Simulator, xapi: Any) -> None:
    vm = sim.pool.vm("ubuntu-web02")
    xapi.Async.VM.clean_reboot(vm)
    xapi.VM.clean_shutdown(vm)
    assert xapi.VM.get_power_state(vm) == "Halted"


def test_a_vif_call_during_a_vm_shutdown_is_not_allowed_at_once(sim: Simulator, xapi: Any) -> None:
    vm = sim.pool.vm("ubuntu-web01")
    vif = sim.pool.vif("ubuntu-web01", 0)
    xapi.Async.VM.clean_shutdown(vm)
    started = time.monotonic()
    assert failure(xapi.VIF.unplug, vif) == [
        "OPERATION_NOT_ALLOWED", f"Current operation on VM:{vm} is clean_shutdown"]
    assert time.monotonic() - started < 0.2  # not retried: only OTHER_OPERATION_IN_PROGRESS is


def test_a_slow_sync_operation_holds_its_object(sim: Simulator, xapi: Any) -> None:
    """A synchronous call marks its object for as long as it runs (set_operation_time), so a
    client whose socket times out has not failed: XAPI finishes the call later."""
    sim.set_operation_time(400, "VM.clean_shutdown")
    vm = sim.pool.vm("ubuntu-web02")
    vif = sim.pool.vif("ubuntu-web02", 0)
    done = threading.Event()
    threading.Thread(target=lambda: (xapi_other(sim).VM.clean_shutdown(vm), done.set()), daemon=True).start()
    deadline = time.monotonic() + 2
    while not xapi.VM.get_current_operations(vm) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list(xapi.VM.get_current_operations(vm).values()) == ["clean_shutdown"]
    assert failure(xapi.VIF.unplug, vif)[0] == "OPERATION_NOT_ALLOWED"
    assert xapi.VM.get_power_state(vm) == "Running"
    assert done.wait(2)
    assert xapi.VM.get_power_state(vm) == "Halted" and xapi.VM.get_current_operations(vm) == {}


def xapi_other(sim: Simulator) -> Any:
    session = XenAPI.Session(sim.url)
    session.xenapi.login_with_password("root", "xenroot", "1.0", "other")
    return session.xenapi
