"""Conformance: users, roles and login failures, through the stock ``XenAPI`` client.

XA ``ocaml/xapi/xapi_session.ml`` (login, the 5 s delay), ``ocaml/xapi/rbac.ml`` (the denial and
its message), ``ocaml/idl/datamodel_roles.ml`` and the ``allowed_roles`` in ``ocaml/idl/datamodel*.ml``.
"""

from __future__ import annotations

import time
import xmlrpc.client
from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI

from bot.xen.sim import Simulator

USERS = [
    {"name": "ops", "password": "pw-ops", "role": "pool-operator"},
    {"name": "vmadmin", "password": "pw-vm", "role": "vm-admin"},
    {"name": "viewer", "password": "pw-ro", "role": "read-only"},
    {"name": "norole", "password": "pw-nr"},
    {"name": "stranger", "password": "pw-st", "subject": False},
]


@pytest.fixture
def sim() -> Iterator[Simulator]:
    from bot.xen.sim import load_fixture

    data = {**load_fixture("demo"), "users": USERS}
    with Simulator.start(data, task_delay_ms=5, event_batch_ms=5, login_failure_delay_ms=0) as simulator:
        yield simulator


def login(sim: Simulator, user: str, password: str) -> Any:
    session = XenAPI.Session(sim.url)
    session.xenapi.login_with_password(user, password, "1.0", "xenbot-rbac")
    return session.xenapi


def failure(fn: Any, *args: Any) -> list[str]:
    with pytest.raises(XenAPI.Failure) as excinfo:
        fn(*args)
    return list(excinfo.value.details)


def test_login_failures_per_xapi_session_ml(sim: Simulator) -> None:
    assert failure(login, sim, "ops", "wrong") == ["SESSION_AUTHENTICATION_FAILED", "ops", "Authentication failure"]
    assert failure(login, sim, "nobody", "x")[:2] == ["SESSION_AUTHENTICATION_FAILED", "nobody"]
    denied = failure(login, sim, "stranger", "pw-st")
    assert denied[:2] == ["SESSION_AUTHORIZATION_FAILED", "stranger"]
    assert "has no access rights in this pool" in denied[2]
    no_role = failure(login, sim, "norole", "pw-nr")
    assert no_role[:2] == ["RBAC_PERMISSION_DENIED", "session.login_with_password"]
    assert "has no roles in this pool" in no_role[2]


def test_a_failed_login_takes_the_configured_delay(sim: Simulator) -> None:
    sim.set_login_failure_delay(300)  # XAPI: 5000 ms (thread_delay_and_raise_error)
    started = time.monotonic()
    assert failure(login, sim, "root", "wrong")[0] == "SESSION_AUTHENTICATION_FAILED"
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    login(sim, "root", "xenroot")  # success is not delayed
    assert time.monotonic() - started < 0.3


def test_a_role_without_the_permission_is_denied_with_the_roles_that_have_it(sim: Simulator) -> None:
    vm_admin = login(sim, "vmadmin", "pw-vm")
    pif = sim.pool.pif("xcp-host2", "eth0")
    vif = sim.pool.vif("ubuntu-web01", 0)
    assert vm_admin.PIF.get_other_config(pif) == {"ethtool-tx": "off"}  # reading is for everyone
    assert failure(vm_admin.PIF.add_to_other_config, pif, "ethtool-tso", "off") == [
        "RBAC_PERMISSION_DENIED", "pif.add_to_other_config",
        "No permission in user session. (Roles with this permission: pool-admin, pool-operator)"]
    vm_admin.VIF.add_to_other_config(vif, "ethtool-tso", "off")  # VIF fields: vm-admin and above
    viewer = login(sim, "viewer", "pw-ro")
    denied = failure(viewer.VIF.plug, vif)
    assert denied[:2] == ["RBAC_PERMISSION_DENIED", "vif.plug"]
    assert denied[2].endswith("(Roles with this permission: pool-admin, pool-operator, vm-power-admin, vm-admin)")
    ops = login(sim, "ops", "pw-ops")
    ops.PIF.add_to_other_config(pif, "ethtool-tso", "off")
    assert ops.PIF.get_other_config(pif)["ethtool-tso"] == "off"


def test_async_denial_lands_in_the_task(sim: Simulator) -> None:
    viewer = login(sim, "viewer", "pw-ro")
    vm = sim.pool.vm("ubuntu-web02")
    task = viewer.Async.VM.clean_shutdown(vm)  # gen_server.ml: RBAC is checked inside the operation
    deadline = time.monotonic() + 5
    while viewer.task.get_status(task) == "pending" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert viewer.task.get_error_info(task)[:2] == ["RBAC_PERMISSION_DENIED", "vm.clean_shutdown"]
    assert viewer.VM.get_power_state(vm) == "Running"


def test_session_permissions_as_a_client_reads_them(sim: Simulator) -> None:
    session = XenAPI.Session(sim.url)
    session.xenapi.login_with_password("root", "xenroot", "1.0", "t")
    ref = session._session
    assert session.xenapi.session.get_is_local_superuser(ref) is True
    assert session.xenapi.session.get_rbac_permissions(ref) == []  # root: empty, yet allowed everything
    ops = XenAPI.Session(sim.url)
    ops.xenapi.login_with_password("vmadmin", "pw-vm", "1.0", "t")
    perms = ops.xenapi.session.get_rbac_permissions(ops._session)
    assert ops.xenapi.session.get_is_local_superuser(ops._session) is False
    assert "vif.add_to_other_config" in perms and "vif.plug" in perms
    assert "pif.add_to_other_config" not in perms and "pif.plug" not in perms


def test_users_are_added_over_the_control_namespace(sim: Simulator) -> None:
    proxy = xmlrpc.client.ServerProxy(sim.url)
    proxy.sim.add_user("late", "pw", "read-only")
    assert login(sim, "late", "pw").VM.get_all()
