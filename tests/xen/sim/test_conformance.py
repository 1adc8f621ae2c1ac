"""Conformance of the XAPI simulator, checked through the stock ``XenAPI`` client over HTTP.

Each test states one XAPI fact the bot relies on. State is arranged (and the
simulator-only effective-offload namespace read) through the Python API; every
XAPI behaviour is observed over the wire, the way production code will see it.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import xmlrpc.client
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import XenAPI

from bot.xen.sim import Simulator, load_fixture, scale_fixture
from bot.xen.sim.pool import PIF_OFFLOAD_KEYS, VIF_OFFLOAD_KEYS, ethtool_settings

REF_RE = re.compile(r"^OpaqueRef:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
NULL = "OpaqueRef:NULL"
ALL_ON = dict.fromkeys(VIF_OFFLOAD_KEYS, "on")


# ----------------------------------------------------------------- fixtures
@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator.start("demo", task_delay_ms=30, event_batch_ms=5, login_failure_delay_ms=0) as simulator:
        yield simulator


def login(url: str, user: str = "root", password: str = "xenroot") -> Any:
    session = XenAPI.Session(url)
    session.xenapi.login_with_password(user, password, "1.0", "xenbot-conformance")
    return session


@pytest.fixture
def session(sim: Simulator) -> Iterator[Any]:
    xs = login(sim.url)
    yield xs
    xs("close")()


@pytest.fixture
def xapi(session: Any) -> Any:
    return session.xenapi


def raw(url: str) -> Any:
    """A plain ServerProxy: sees envelopes and SESSION_INVALID that XenAPI.Session hides."""
    return xmlrpc.client.ServerProxy(url)


def raw_call(url: str, method: str, *params: Any) -> dict[str, Any]:
    proxy = raw(url)
    try:
        return dict(getattr(proxy, method)(*params))
    finally:
        proxy("close")()


def failure(fn: Callable[..., Any], *args: Any) -> list[str]:
    with pytest.raises(XenAPI.Failure) as excinfo:
        fn(*args)
    return list(excinfo.value.details)


def event_from(xapi: Any, classes: list[str], token: str, timeout: float) -> dict[str, Any]:
    return dict(getattr(xapi.event, "from")(classes, token, timeout))


# ---------------------------------------------------------------- wire format
def test_envelopes_success_failure_and_void(sim: Simulator) -> None:
    ok = raw_call(sim.url, "session.login_with_password", "root", "xenroot", "1.0", "t")
    assert ok["Status"] == "Success" and REF_RE.match(ok["Value"])
    bad = raw_call(sim.url, "session.login_with_password", "root", "nope", "1.0", "t")
    assert bad == {"Status": "Failure", "ErrorDescription": ["SESSION_AUTHENTICATION_FAILED", "root",
                                                             "Authentication failure"]}
    vif = sim.pool.vif("win2019-dc01", 0)
    void = raw_call(sim.url, "VIF.add_to_other_config", ok["Value"], vif, "k", "v")
    assert void == {"Status": "Success", "Value": ""}


def test_rpc2_path_and_other_paths(sim: Simulator) -> None:
    ok = raw_call(sim.url + "RPC2", "session.login_with_password", "root", "xenroot")
    assert ok["Status"] == "Success"
    parts = urlsplit(sim.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    conn.request("GET", "/")
    assert conn.getresponse().status == 404
    conn.close()


def test_ints_floats_and_enums_travel_as_xapi_encodes_them(sim: Simulator, xapi: Any) -> None:
    net = xapi.network.get_by_name_label("Bond 0+1")[0]
    assert xapi.network.get_MTU(net) == "1500"
    pif = sim.pool.pif("xcp-host1", "eth2")
    rec = xapi.PIF.get_record(pif)
    assert rec["VLAN"] == "-1" and rec["MTU"] == "1500"
    assert rec["physical"] is True and rec["management"] is True
    assert rec["ip_configuration_mode"] == "Static"
    vm = xapi.VM.get_by_name_label("win2008r2-sql01")[0]
    gm = xapi.VM.get_guest_metrics(vm)
    pv = xapi.VM_guest_metrics.get_PV_drivers_version(gm)
    assert pv == {"major": "6", "minor": "2", "micro": "0", "build": "62"}
    assert xapi.VM.get_power_state(vm) == "Running"
    assert xapi.VM.get_memory_static_max(vm) == str(16384 * 1024 * 1024)
    last = xapi.VM_guest_metrics.get_last_updated(gm)
    assert isinstance(last, xmlrpc.client.DateTime) and re.match(r"^\d{8}T\d\d:\d\d:\d\dZ$", last.value)


def test_refs_are_opaque_and_null_ref(sim: Simulator, xapi: Any) -> None:
    for ref in xapi.VM.get_all():
        assert REF_RE.match(ref)
    halted = xapi.VM.get_by_name_label("ubuntu-build02")[0]
    assert xapi.VM.get_resident_on(halted) == NULL
    nopv = xapi.VM.get_by_name_label("win2012r2-nopv")[0]
    assert xapi.VM.get_guest_metrics(nopv) == NULL
    pif = sim.pool.pif("xcp-host1", "eth2")
    assert xapi.PIF.get_bond_slave_of(pif) == NULL


def test_keep_alive_serves_many_calls_on_one_connection(sim: Simulator) -> None:
    parts = urlsplit(sim.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    body = xmlrpc.client.dumps(("root", "xenroot"), "session.login_with_password").encode()
    socks = []
    for _ in range(3):
        conn.request("POST", "/", body, {"Content-Type": "text/xml"})
        resp = conn.getresponse()
        assert resp.status == 200
        assert xmlrpc.client.loads(resp.read())[0][0]["Status"] == "Success"
        socks.append(conn.sock)
    assert socks[0] is not None and socks[0] is socks[1] is socks[2]
    conn.close()


def test_concurrent_sessions(sim: Simulator) -> None:
    results: list[int] = []

    def worker() -> None:
        session = login(sim.url)
        for _ in range(50):
            assert session.xenapi.VM.get_all()
        results.append(1)
        session("close")()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 6


def test_throughput(sim: Simulator, xapi: Any) -> None:
    vm = xapi.VM.get_by_name_label("win7-kiosk")[0]
    n = 1500
    start = time.perf_counter()
    for _ in range(n):
        xapi.VM.get_power_state(vm)
    rate = n / (time.perf_counter() - start)
    print(f"\nsimulator throughput: {rate:.0f} calls/s (one XenAPI.Session, keep-alive, no latency)")
    assert rate > 200


# ------------------------------------------------------------------ sessions
def test_login_errors(sim: Simulator) -> None:
    assert failure(login, sim.url, "root", "wrong") == [
        "SESSION_AUTHENTICATION_FAILED", "root", "Authentication failure"]
    assert failure(login, sim.url, "admin", "xenroot")[0] == "SESSION_AUTHENTICATION_FAILED"


def test_logout_invalidates_the_session(sim: Simulator) -> None:
    ref = raw_call(sim.url, "session.login_with_password", "root", "xenroot", "1.0", "t")["Value"]
    assert raw_call(sim.url, "VM.get_all", ref)["Status"] == "Success"
    assert raw_call(sim.url, "session.logout", ref) == {"Status": "Success", "Value": ""}
    assert raw_call(sim.url, "VM.get_all", ref)["ErrorDescription"] == ["SESSION_INVALID", ref]


def test_expired_sessions_are_invalid_and_xenapi_relogs_in(sim: Simulator) -> None:
    session = login(sim.url)
    old = session.handle
    sim.expire_sessions()
    assert raw_call(sim.url, "VM.get_all", old)["ErrorDescription"] == ["SESSION_INVALID", old]
    sim.reset_call_counts()
    assert session.xenapi.VM.get_all()  # XenAPI.Session logs in again by itself
    assert session.handle != old
    assert sim.call_counts()["session.login_with_password"] == 1


def test_least_recently_used_sessions_beyond_the_limit_are_destroyed(sim: Simulator) -> None:
    sim.dispatcher.sessions.max_per_originator = 3  # XAPI: 500 per originator, 400 without one
    refs = [raw_call(sim.url, "session.login_with_password", "root", "xenroot", "1.0", "cron")["Value"]
            for _ in range(3)]
    assert raw_call(sim.url, "VM.get_all", refs[0])["Status"] == "Success"  # refs[1] is now the LRU
    raw_call(sim.url, "session.login_with_password", "root", "xenroot", "1.0", "cron")
    assert raw_call(sim.url, "VM.get_all", refs[1])["ErrorDescription"] == ["SESSION_INVALID", refs[1]]
    assert raw_call(sim.url, "VM.get_all", refs[0])["Status"] == "Success"


def test_members_answer_host_is_slave_with_the_master_address(sim: Simulator, session: Any) -> None:
    xapi = session.xenapi
    urls = sim.host_urls
    assert urls["xcp-host1"] == sim.url
    master_ip = urlsplit(sim.url).hostname
    assert {urlsplit(u).port for u in urls.values()} == {urlsplit(sim.url).port}  # same port, other IPs
    host1 = xapi.host.get_by_name_label("xcp-host1")[0]
    assert xapi.host.get_address(host1) == master_ip
    assert failure(login, urls["xcp-host2"]) == ["HOST_IS_SLAVE", master_ip]
    assert xapi.session.get_this_host(session.handle) == host1
    # A valid session used on a member: HOST_IS_SLAVE, for any call, not only at login.
    answer = raw_call(urls["xcp-host3"], "VM.get_all", session.handle)
    assert answer["ErrorDescription"] == ["HOST_IS_SLAVE", master_ip]


def test_master_move(sim: Simulator) -> None:
    old_url = sim.url
    session = login(old_url)
    old_ref = session.handle
    sim.move_master("xcp-host2")
    new_ip = urlsplit(sim.host_url("xcp-host2")).hostname
    assert sim.url == sim.host_url("xcp-host2")
    assert failure(login, old_url) == ["HOST_IS_SLAVE", new_ip]
    # The old session is gone (emergency transition): XenAPI re-logs in on the old master and is told to move.
    assert failure(session.xenapi.VM.get_all) == ["HOST_IS_SLAVE", new_ip]
    assert raw_call(sim.url, "VM.get_all", old_ref)["ErrorDescription"] == ["SESSION_INVALID", old_ref]
    new = login(sim.url)
    assert new.xenapi.host.get_name_label(new.xenapi.pool.get_master(new.xenapi.pool.get_all()[0])) == "xcp-host2"
    # designate_new_master keeps sessions: the old master now refuses them with HOST_IS_SLAVE.
    ref = new.handle
    sim.move_master("xcp-host3", keep_sessions=True)
    host3_ip = urlsplit(sim.host_url("xcp-host3")).hostname
    assert raw_call(sim.host_url("xcp-host2"), "VM.get_all", ref)["ErrorDescription"] == ["HOST_IS_SLAVE", host3_ip]
    assert raw_call(sim.host_url("xcp-host3"), "VM.get_all", ref)["Status"] == "Success"


def test_fallback_to_one_port_per_host_when_ips_are_unavailable() -> None:
    with Simulator.start("demo", host="localhost") as fallback:  # not a literal 127.x address
        assert not fallback.server.shared_port
        ports = {urlsplit(u).port for u in fallback.host_urls.values()}
        assert len(ports) == 3
        session = login(fallback.url)
        master = session.xenapi.pool.get_master(session.xenapi.pool.get_all()[0])
        address = session.xenapi.host.get_address(master)
        assert address == f"localhost:{urlsplit(fallback.url).port}"
        assert failure(login, fallback.host_urls["xcp-host2"]) == ["HOST_IS_SLAVE", address]


def test_fallback_when_the_port_is_taken_on_another_ip() -> None:
    blocker = None
    for _ in range(20):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        blocker = socket.socket()
        try:
            blocker.bind(("127.0.0.2", port))
            blocker.listen()
            break
        except OSError:
            blocker.close()
            blocker = None
    assert blocker is not None
    try:
        with Simulator.start("demo", port=port) as fallback:
            assert not fallback.server.shared_port
            assert fallback.url == f"http://127.0.0.1:{port}/"
            host2 = urlsplit(fallback.host_urls["xcp-host2"])
            assert (host2.hostname, host2.port != port) == ("127.0.0.1", True)
            assert failure(login, fallback.host_urls["xcp-host2"]) == ["HOST_IS_SLAVE", f"127.0.0.1:{port}"]
    finally:
        blocker.close()


# -------------------------------------------------------------------- errors
def test_handle_invalid(sim: Simulator, xapi: Any) -> None:
    bogus = f"OpaqueRef:{uuid.uuid4()}"
    assert failure(xapi.VM.get_record, bogus) == ["HANDLE_INVALID", "VM", bogus]
    vm = xapi.VM.get_by_name_label("win7-kiosk")[0]
    assert failure(xapi.VIF.get_record, vm) == ["HANDLE_INVALID", "VIF", vm]
    assert failure(xapi.VIF.plug, NULL) == ["HANDLE_INVALID", "VIF", NULL]
    assert failure(xapi.PIF.get_other_config, vm) == ["HANDLE_INVALID", "PIF", vm]


def test_uuid_invalid_and_get_by_uuid(sim: Simulator, xapi: Any) -> None:
    missing = str(uuid.uuid4())
    assert failure(xapi.VM.get_by_uuid, missing) == ["UUID_INVALID", "VM", missing]
    vm = xapi.VM.get_by_name_label("win7-kiosk")[0]
    assert xapi.VM.get_by_uuid(xapi.VM.get_uuid(vm)) == vm
    vif_uuid = xapi.VIF.get_uuid(xapi.VM.get_VIFs(vm)[0])
    assert failure(xapi.VM.get_by_uuid, vif_uuid) == ["UUID_INVALID", "VM", vif_uuid]


def test_unknown_methods(sim: Simulator, xapi: Any) -> None:
    assert failure(xapi.VM.frobnicate) == ["MESSAGE_METHOD_UNKNOWN", "VM.frobnicate"]
    pif = sim.pool.pif("xcp-host1", "eth2")
    # properties is read-only on a real pool: no add_to_ / set_ messages exist for it.
    assert failure(xapi.PIF.add_to_properties, pif, "gro", "off")[0] == "MESSAGE_METHOD_UNKNOWN"
    assert failure(xapi.VIF.get_by_name_label, "x") == ["MESSAGE_METHOD_UNKNOWN", "VIF.get_by_name_label"]
    assert failure(xapi.Async.VM.get_record, NULL) == ["MESSAGE_METHOD_UNKNOWN", "Async.VM.get_record"]


def test_parameter_count_includes_the_session(sim: Simulator, xapi: Any) -> None:
    assert failure(xapi.VM.get_record) == ["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.get_record", "2", "1"]
    vif = sim.pool.vif("win7-kiosk", 0)
    assert failure(xapi.VIF.add_to_other_config, vif, "k") == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH", "VIF.add_to_other_config", "4", "3"]
    assert failure(getattr(xapi.event, "from"), ["vm"], "") == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH", "event.from", "4", "3"]


def test_every_field_getter_matches_get_record(sim: Simulator, xapi: Any) -> None:
    samples = {
        "pool": xapi.pool.get_all()[0],
        "host": xapi.host.get_all()[0],
        "VM": xapi.VM.get_by_name_label("pfsense-fw01")[0],
        "VIF": sim.pool.vif("pfsense-fw01", 1),
        "PIF": sim.pool.pif("xcp-host2", "bond0"),
        "Bond": xapi.Bond.get_all()[0],
        "VLAN": xapi.VLAN.get_all()[0],
        "network": xapi.network.get_by_name_label("Bond 0+1")[0],
    }
    samples["VM_guest_metrics"] = xapi.VM.get_guest_metrics(samples["VM"])
    for cls, ref in samples.items():
        proxy = getattr(xapi, cls)
        record = proxy.get_record(ref)
        for field, value in record.items():
            got = getattr(proxy, f"get_{field}")(ref)
            if isinstance(value, xmlrpc.client.DateTime):
                got, value = got.value, value.value
            assert got == value, (cls, field)
        assert ref in proxy.get_all() and proxy.get_all_records()[ref]["uuid"] == record["uuid"]
    assert set(xapi.VIF.get_record(samples["VIF"])) >= {
        "uuid", "device", "MAC", "MTU", "network", "VM", "currently_attached", "other_config",
        "qos_algorithm_type", "qos_algorithm_params", "locking_mode", "ipv4_allowed", "ipv6_allowed",
        "status_code", "status_detail", "runtime_properties", "allowed_operations"}
    assert "metrics" not in xapi.VIF.get_record(samples["VIF"])


def test_relations_are_kept_in_both_directions(sim: Simulator, xapi: Any) -> None:
    vm = xapi.VM.get_by_name_label("pfsense-fw01")[0]
    vifs = xapi.VM.get_VIFs(vm)
    assert len(vifs) == 3 and all(xapi.VIF.get_VM(v) == vm for v in vifs)
    host = xapi.VM.get_resident_on(vm)
    assert vm in xapi.host.get_resident_VMs(host)
    bond = xapi.PIF.get_bond_master_of(sim.pool.pif("xcp-host1", "bond0"))[0]
    slaves = xapi.Bond.get_slaves(bond)
    assert sorted(xapi.PIF.get_device(s) for s in slaves) == ["eth0", "eth1"]
    assert all(xapi.PIF.get_bond_slave_of(s) == bond for s in slaves)
    net = xapi.VIF.get_network(vifs[1])
    assert vifs[1] in xapi.network.get_VIFs(net)


# ---------------------------------------------------------------------- maps
def test_map_semantics(sim: Simulator, xapi: Any) -> None:
    vif = sim.pool.vif("ubuntu-web01", 0)
    assert xapi.VIF.get_other_config(vif)["ethtool-sg"] == "off"
    # Same key, same value: still a duplicate.
    assert failure(xapi.VIF.add_to_other_config, vif, "ethtool-sg", "off") == [
        "MAP_DUPLICATE_KEY", "VIF", "other_config", vif, "ethtool-sg"]
    xapi.VIF.remove_from_other_config(vif, "no-such-key")  # silent no-op
    xapi.VIF.remove_from_other_config(vif, "ethtool-sg")
    xapi.VIF.add_to_other_config(vif, "ethtool-sg", "on")
    assert xapi.VIF.get_other_config(vif)["ethtool-sg"] == "on"
    assert "mac_seed" in xapi.VIF.get_other_config(vif)
    xapi.VIF.set_other_config(vif, {"ethtool-tx": "off"})  # replaces the whole map
    assert xapi.VIF.get_other_config(vif) == {"ethtool-tx": "off"}
    assert failure(xapi.VIF.set_other_config, vif, {"ethtool-tx": False}) == ["FIELD_TYPE_ERROR", "value"]
    vm = xapi.VM.get_by_name_label("ubuntu-web01")[0]
    xapi.VM.add_tags(vm, "web")  # sets are idempotent, unlike maps
    assert xapi.VM.get_tags(vm).count("web") == 1
    xapi.VM.remove_tags(vm, "absent")


# --------------------------------------------------------------- plug errors
def test_vif_plug_errors(sim: Simulator, xapi: Any) -> None:
    halted_vm = sim.pool.vm("ubuntu-build02")
    halted = sim.pool.vif("ubuntu-build02", 0)
    assert failure(xapi.VIF.plug, halted) == ["VM_BAD_POWER_STATE", halted_vm, "running", "halted"]
    paused = sim.pool.vif("ubuntu-mon01", 0)
    assert failure(xapi.VIF.unplug, paused) == ["VM_BAD_POWER_STATE", sim.pool.vm("ubuntu-mon01"),
                                                "running", "paused"]
    attached = sim.pool.vif("win2019-dc01", 0)
    assert failure(xapi.VIF.plug, attached) == ["DEVICE_ALREADY_ATTACHED", attached]
    xapi.VIF.unplug(attached)
    assert failure(xapi.VIF.unplug, attached) == ["DEVICE_ALREADY_DETACHED", attached]
    assert failure(xapi.VIF.unplug_force, attached) == ["DEVICE_ALREADY_DETACHED", attached]
    nopv = sim.pool.vif("win2012r2-nopv", 0)
    assert failure(xapi.VIF.unplug, nopv) == ["VM_MISSING_PV_DRIVERS", sim.pool.vm("win2012r2-nopv")]
    scada = sim.pool.vif("winxp-scada", 0)
    assert failure(xapi.VIF.unplug, scada) == ["OPERATION_NOT_ALLOWED", "VM states it does not support VIF hotplug."]
    assert "unplug" not in xapi.VIF.get_allowed_operations(scada)
    assert sorted(xapi.VIF.get_allowed_operations(sim.pool.vif("win7-kiosk", 0))) == ["attach", "unplug"]


def test_pif_errors(sim: Simulator, xapi: Any) -> None:
    slave = sim.pool.pif("xcp-host1", "eth0")
    assert failure(xapi.PIF.plug, slave) == ["CANNOT_PLUG_BOND_SLAVE", slave]
    mgmt = sim.pool.pif("xcp-host1", "eth2")
    assert failure(xapi.PIF.unplug, mgmt) == ["PIF_IS_MANAGEMENT_INTERFACE", mgmt]
    assert failure(xapi.PIF.set_property, mgmt, "gro", "maybe") == ["INVALID_VALUE", "properties", "gro = maybe"]
    assert failure(xapi.PIF.set_property, mgmt, "tso", "off") == ["INVALID_VALUE", "properties", "tso = off"]
    assert failure(xapi.PIF.set_property, slave, "gro", "off") == ["CANNOT_CHANGE_PIF_PROPERTIES", slave]
    bond = sim.pool.pif("xcp-host1", "bond0")
    busy = failure(xapi.PIF.unplug, bond)  # running VMs on host1 use Bond 0+1
    assert busy[0] == "VIF_IN_USE" and busy[1] == xapi.PIF.get_network(bond)


# --------------------------------------------------------------- power states
def test_power_state_errors(sim: Simulator, xapi: Any) -> None:
    running = sim.pool.vm("win7-kiosk")
    halted = sim.pool.vm("ubuntu-build02")
    paused = sim.pool.vm("ubuntu-mon01")
    assert failure(xapi.VM.start, running, False, False) == ["VM_BAD_POWER_STATE", running, "halted", "running"]
    assert failure(xapi.VM.clean_shutdown, halted) == ["VM_BAD_POWER_STATE", halted, "running", "halted"]
    assert failure(xapi.VM.hard_shutdown, halted) == [
        "VM_BAD_POWER_STATE", halted, "paused, suspended, running", "halted"]
    assert failure(xapi.VM.clean_reboot, paused) == ["VM_BAD_POWER_STATE", paused, "running", "paused"]
    template = sim.pool.vm("Windows Server 2019 (64-bit)")
    assert failure(xapi.VM.start, template, False, False) == ["VM_IS_TEMPLATE", template, "start"]
    snapshot = sim.pool.vm("win2008r2-sql01 (pre-KB5034439)")
    assert failure(xapi.VM.start, snapshot, False, False) == ["VM_IS_SNAPSHOT", snapshot, "start"]
    dom0 = xapi.host.get_control_domain(xapi.host.get_by_name_label("xcp-host1")[0])
    assert failure(xapi.VM.clean_shutdown, dom0) == [
        "OPERATION_NOT_ALLOWED", "This operation is not allowed on a control domain"]
    assert failure(xapi.VM.start, running, "no", False) == ["FIELD_TYPE_ERROR", "start_paused"]


def test_power_cycle(sim: Simulator, xapi: Any) -> None:
    vm = sim.pool.vm("ubuntu-web02")
    vifs = xapi.VM.get_VIFs(vm)
    host = xapi.VM.get_resident_on(vm)
    xapi.VM.clean_shutdown(vm)
    assert xapi.VM.get_power_state(vm) == "Halted"
    assert xapi.VM.get_resident_on(vm) == NULL and vm not in xapi.host.get_resident_VMs(host)
    assert not any(xapi.VIF.get_currently_attached(v) for v in vifs)
    assert xapi.VM.get_allowed_operations(vm) == ["start"]
    xapi.VM.start(vm, True, False)
    assert xapi.VM.get_power_state(vm) == "Paused"
    xapi.VM.hard_reboot(vm)
    assert xapi.VM.get_power_state(vm) == "Running"
    assert all(xapi.VIF.get_currently_attached(v) for v in vifs)
    assert xapi.VM.get_resident_on(vm) == host  # affinity host
    xapi.VM.hard_shutdown(vm)
    xapi.VM.start_on(vm, xapi.host.get_by_name_label("xcp-host3")[0], False, False)
    assert xapi.host.get_name_label(xapi.VM.get_resident_on(vm)) == "xcp-host3"


# ---------------------------------------------------------- effective offload
def test_demo_effective_state_matches_config_at_load(sim: Simulator, xapi: Any) -> None:
    for ref, rec in xapi.VIF.get_all_records().items():
        effective = sim.effective_offload(ref)
        if rec["currently_attached"]:
            assert effective == {**ALL_ON, **ethtool_settings(rec["other_config"], VIF_OFFLOAD_KEYS)}
        else:
            assert effective == {}
    assert sim.effective_offload(sim.pool.vif("pfsense-fw01", 0))["tx"] == "off"  # classic "off"
    assert sim.effective_offload(sim.pool.vif("pfsense-fw01", 2))["tx"] == "on"  # the forgotten one
    sql = sim.effective_offload(sim.pool.vif("win2008r2-sql01", 0))
    assert (sql["tx"], sql["rx"]) == ("off", "on")  # Xen Orchestra's "false"/"true"
    assert sim.effective_offload(sim.pool.vif("win7-kiosk", 0))["tx"] == "on"  # "disabled" is ignored
    assert sim.effective_offload(sim.pool.vif("ubuntu-build02", 0)) == {}  # halted


def test_editing_a_plugged_vif_changes_nothing_until_replug(sim: Simulator, xapi: Any) -> None:
    vif = sim.pool.vif("pfsense-fw01", 2)
    before = sim.effective_offload(vif)
    xapi.VIF.add_to_other_config(vif, "ethtool-tx", "off")
    assert sim.effective_offload(vif) == before == ALL_ON
    xapi.VIF.unplug(vif)
    assert sim.effective_offload(vif) == {}
    xapi.VIF.plug(vif)
    assert sim.effective_offload(vif) == {**ALL_ON, "tx": "off"}
    # Removing the key and replugging gives a fresh device with driver defaults.
    xapi.VIF.remove_from_other_config(vif, "ethtool-tx")
    xapi.VIF.unplug(vif)
    xapi.VIF.plug(vif)
    assert sim.effective_offload(vif) == ALL_ON


def test_vm_shutdown_start_and_reboot_apply_vif_config(sim: Simulator, xapi: Any) -> None:
    vm = sim.pool.vm("win2019-dc01")
    vif = sim.pool.vif("win2019-dc01", 0)
    xapi.VIF.add_to_other_config(vif, "ethtool-tx", "off")
    assert sim.effective_offload(vif)["tx"] == "on"
    xapi.VM.clean_shutdown(vm)
    assert sim.effective_offload(vif) == {}
    xapi.VM.start(vm, False, False)
    assert sim.effective_offload(vif)["tx"] == "off"
    xapi.VIF.add_to_other_config(vif, "ethtool-tso", "false")
    assert sim.effective_offload(vif)["tso"] == "on"
    xapi.VM.clean_reboot(vm)
    assert sim.effective_offload(vif) == {**ALL_ON, "tx": "off", "tso": "off"}


def test_only_valid_vif_keys_and_values_are_honoured(sim: Simulator, xapi: Any) -> None:
    vif = sim.pool.vif("centos7-db01", 0)
    xapi.VIF.set_other_config(vif, {"ethtool-gro": "off", "ethtool-lro": "off", "ethtool-rx": "Off",
                                    "ethtool-tx": "", "ethtool-sg": "0", "ethtool-gso": "off"})
    xapi.VIF.unplug(vif)
    xapi.VIF.plug(vif)
    effective = sim.effective_offload(vif)
    assert effective == {**ALL_ON, "gso": "off"}  # gro/lro not honoured on VIFs; Off/""/0 ignored
    assert "gro" not in effective


def test_pif_config_applies_on_plug_and_property_at_once(sim: Simulator, xapi: Any) -> None:
    eth2 = sim.pool.pif("xcp-host1", "eth2")
    assert sim.effective_offload(eth2)["tso"] == "on"
    xapi.PIF.add_to_other_config(eth2, "ethtool-tso", "off")
    xapi.PIF.add_to_other_config(eth2, "ethtool-lro", "false")
    assert sim.effective_offload(eth2)["tso"] == "on"  # stored only
    xapi.PIF.plug(eth2)  # already plugged: re-plugging is how it is applied
    assert (sim.effective_offload(eth2)["tso"], sim.effective_offload(eth2)["lro"]) == ("off", "off")
    xapi.PIF.set_property(eth2, "gro", "off")
    assert sim.effective_offload(eth2)["gro"] == "off"
    assert xapi.PIF.get_properties(eth2) == {"gro": "off"}
    # An explicit ethtool-gro key wins over the property on the next bring-up.
    xapi.PIF.add_to_other_config(eth2, "ethtool-gro", "on")
    xapi.PIF.set_property(eth2, "gro", "off")
    assert sim.effective_offload(eth2)["gro"] == "on"


def test_pif_nic_keeps_state_until_host_restart(sim: Simulator, xapi: Any) -> None:
    eth2 = sim.pool.pif("xcp-host3", "eth2")
    assert sim.effective_offload(eth2)["tso"] == "off"
    xapi.PIF.remove_from_other_config(eth2, "ethtool-tso")
    xapi.PIF.plug(eth2)
    assert sim.effective_offload(eth2)["tso"] == "off"  # an absent key is not applied at all
    sim.pool.start_of_day("xcp-host3")
    assert sim.effective_offload(eth2)["tso"] == "on"


def test_bond_offload_lives_on_the_slaves(sim: Simulator, xapi: Any) -> None:
    bond1 = sim.pool.pif("xcp-host1", "bond0")
    host1_eth0 = sim.pool.pif("xcp-host1", "eth0")
    assert xapi.PIF.get_other_config(bond1) == {"ethtool-tx": "off"}
    assert sim.effective_offload(host1_eth0)["tx"] == "on"  # the bond master's key reaches nothing (OVS)
    assert sim.effective_offload(bond1) == {}
    assert sim.effective_offload(sim.pool.pif("xcp-host2", "eth1"))["tx"] == "off"
    xapi.PIF.add_to_other_config(host1_eth0, "ethtool-tx", "off")
    assert sim.effective_offload(host1_eth0)["tx"] == "on"
    xapi.PIF.plug(bond1)
    assert sim.effective_offload(host1_eth0)["tx"] == "off"
    assert sim.effective_offload(sim.pool.pif("xcp-host1", "eth1"))["tx"] == "on"
    assert xapi.PIF.get_currently_attached(host1_eth0) is False


def test_unplugged_pif_has_no_effective_state() -> None:
    with Simulator.start("demo", network_backend="bridge") as bridge_sim:
        xapi = login(bridge_sim.url).xenapi
        bond = bridge_sim.pool.pif("xcp-host1", "bond0")
        assert bridge_sim.effective_offload(bond)["tx"] == "off"  # Linux bridge: the bond is a netdev
        vlan = bridge_sim.pool.pif("xcp-host2", "bond0", vlan=200)  # nothing uses WAN on host2
        assert bridge_sim.effective_offload(vlan) == {**dict.fromkeys(PIF_OFFLOAD_KEYS, "on"), "lro": "off"}
        xapi.PIF.unplug(vlan)
        assert xapi.PIF.get_currently_attached(vlan) is False
        assert bridge_sim.effective_offload(vlan) == {}
        xapi.PIF.plug(vlan)
        assert bridge_sim.effective_offload(vlan)["gro"] == "on"


# ---------------------------------------------------------------------- tasks
def test_async_task_lifecycle(sim: Simulator, xapi: Any) -> None:
    vif = sim.pool.vif("ubuntu-web01", 1)
    task = xapi.Async.VIF.unplug(vif)
    assert REF_RE.match(task)
    assert xapi.task.get_status(task) == "pending"
    assert xapi.task.get_progress(task) == 0.0
    # While it runs, the VIF is busy: a synchronous call waits, at most busy_wait (XAPI: 2 h).
    sim.set_busy_wait(0)
    busy = failure(xapi.VIF.unplug, vif)
    assert busy == ["OTHER_OPERATION_IN_PROGRESS", "VIF", vif, "{unplug}", "{" + task + "}"]
    _wait_task(xapi, task)
    rec = xapi.task.get_record(task)
    # A void result is "<value></value>", not "" (ocaml/xapi/taskHelper.ml, gen_server.ml marshaller).
    assert (rec["status"], rec["progress"], rec["result"], rec["error_info"]) == (
        "success", 1.0, "<value></value>", [])
    assert rec["name_label"] == "Async.VIF.unplug"
    assert xapi.VIF.get_currently_attached(vif) is False
    xapi.task.destroy(task)
    assert failure(xapi.task.get_status, task) == ["HANDLE_INVALID", "task", task]


def test_async_failure_goes_into_the_task(sim: Simulator, xapi: Any) -> None:
    vif = sim.pool.vif("ubuntu-web01", 0)
    task = xapi.Async.VIF.plug(vif)  # already attached: the call itself succeeds
    _wait_task(xapi, task)
    assert xapi.task.get_status(task) == "failure"
    assert xapi.task.get_error_info(task) == ["DEVICE_ALREADY_ATTACHED", vif]
    vm = sim.pool.vm("ubuntu-build02")
    start = xapi.Async.VM.start(vm, False, False)
    _wait_task(xapi, start)
    assert xapi.task.get_status(start) == "success"
    assert xapi.VM.get_power_state(vm) == "Running"


def test_old_completed_tasks_are_deleted(sim: Simulator, xapi: Any) -> None:
    sim.dispatcher.max_completed_tasks = 2  # XAPI: 200
    sim.set_task_delay(0)
    tasks = []
    for _ in range(3):
        tasks.append(xapi.Async.VIF.plug(sim.pool.vif("ubuntu-web01", 0)))
        _wait_task(xapi, tasks[-1])
    assert failure(xapi.task.get_status, tasks[0]) == ["HANDLE_INVALID", "task", tasks[0]]
    assert xapi.task.get_status(tasks[2]) == "failure"


def _wait_task(xapi: Any, task: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while xapi.task.get_status(task) == "pending":
        assert time.monotonic() < deadline
        time.sleep(0.01)


# --------------------------------------------------------------------- events
def test_event_from_initial_snapshot(sim: Simulator, xapi: Any) -> None:
    batch = event_from(xapi, ["vm", "VIF"], "", 5.0)
    assert re.match(r"^\d{20},\d{20}$", batch["token"])
    vm_events = [e for e in batch["events"] if e["class"] == "vm"]
    assert len(vm_events) == len(xapi.VM.get_all())
    assert {e["operation"] for e in batch["events"]} == {"add"}
    assert {e["class"] for e in batch["events"]} == {"vm", "vif"}
    event = vm_events[0]
    assert set(event) == {"id", "timestamp", "class", "operation", "ref", "snapshot"}
    assert event["snapshot"] == xapi.VM.get_record(event["ref"])
    assert batch["valid_ref_counts"]["vm"] == len(xapi.VM.get_all())
    assert batch["valid_ref_counts"]["vif"] == len(xapi.VIF.get_all())


def test_event_from_mod_add_del_and_coalescing(sim: Simulator, xapi: Any) -> None:
    token = event_from(xapi, ["vif"], "", 1.0)["token"]
    vif = sim.pool.vif("win7-kiosk", 0)
    xapi.VIF.add_to_other_config(vif, "ethtool-sg", "off")
    xapi.VIF.add_to_other_config(vif, "ethtool-rx", "off")
    batch = event_from(xapi, ["vif"], token, 5.0)
    assert [(e["operation"], e["ref"]) for e in batch["events"]] == [("mod", vif)]  # two edits, one event
    assert batch["events"][0]["snapshot"]["other_config"]["ethtool-rx"] == "off"
    token = batch["token"]
    new = sim.pool.create_vif("win7-kiosk", "DMZ VLAN 100", other_config={"ethtool-tx": "off"})
    batch = event_from(xapi, ["vif"], token, 5.0)
    assert [(e["operation"], e["ref"]) for e in batch["events"]] == [("add", new)]
    token = batch["token"]
    sim.pool.destroy_object(new)
    batch = event_from(xapi, ["vif"], token, 5.0)
    assert batch["events"] == [{"id": batch["events"][0]["id"], "timestamp": "0.0", "class": "vif",
                                "operation": "del", "ref": new}]
    token = batch["token"]
    # Created and destroyed between two polls: never seen.
    ghost = sim.pool.create_vif("win7-kiosk", "DMZ VLAN 100")
    sim.pool.destroy_object(ghost)
    xapi.VIF.remove_from_other_config(vif, "ethtool-rx")
    batch = event_from(xapi, ["vif"], token, 5.0)
    assert [(e["operation"], e["ref"]) for e in batch["events"]] == [("mod", vif)]


def test_event_from_per_object_and_star_subscriptions(sim: Simulator, xapi: Any) -> None:
    vm = sim.pool.vm("win7-kiosk")
    token = event_from(xapi, ["*"], "", 1.0)["token"]
    xapi.VM.add_to_other_config(vm, "k", "v")
    xapi.network.add_to_other_config(xapi.network.get_by_name_label("Bond 0+1")[0], "k", "v")
    star = event_from(xapi, ["*"], token, 5.0)
    assert {e["class"] for e in star["events"]} == {"vm", "network"}
    only = event_from(xapi, [f"VM/{vm}"], token, 5.0)
    assert [e["ref"] for e in only["events"]] == [vm]


def test_event_from_long_poll_times_out_with_a_token(sim: Simulator, xapi: Any) -> None:
    token = event_from(xapi, ["vm"], "", 1.0)["token"]
    start = time.monotonic()
    batch = event_from(xapi, ["vm"], token, 0.3)
    elapsed = time.monotonic() - start
    assert batch["events"] == [] and re.match(r"^\d{20},\d{20}$", batch["token"])
    assert 0.25 <= elapsed < 2.0


def test_event_from_wakes_on_change_and_does_not_block_others(sim: Simulator, xapi: Any) -> None:
    token = event_from(xapi, ["vif"], "", 1.0)["token"]
    result: dict[str, Any] = {}

    def waiter() -> None:
        session = login(sim.url)
        result["batch"] = getattr(session.xenapi.event, "from")(["vif"], token, 10.0)
        session("close")()

    thread = threading.Thread(target=waiter)
    start = time.monotonic()
    thread.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    for _ in range(20):
        xapi.VM.get_all()
    assert time.monotonic() - t0 < 1.0  # the long-poll holds no lock
    xapi.VIF.add_to_other_config(sim.pool.vif("win7-kiosk", 0), "x", "y")
    thread.join(5)
    assert time.monotonic() - start < 3.0
    assert [e["operation"] for e in result["batch"]["events"]] == ["mod"]


def test_event_from_errors(sim: Simulator, xapi: Any) -> None:
    assert failure(getattr(xapi.event, "from"), ["vm"], "garbage", 0.1) == [
        "EVENT_FROM_TOKEN_PARSE_FAILURE", "garbage"]
    token = event_from(xapi, ["vm"], "", 1.0)["token"]
    xapi.VM.add_to_other_config(sim.pool.vm("win7-kiosk"), "k", "v")
    sim.pool.forget_events()  # as a xapi restart: deletions forgotten, and still no EVENTS_LOST
    assert [e["operation"] for e in event_from(xapi, ["vm"], token, 0.1)["events"]] == ["mod"]
    assert event_from(xapi, ["vm"], "", 0.1)["events"]  # a fresh start still works


def test_logout_ends_a_long_poll_with_session_invalid(sim: Simulator) -> None:
    ref = raw_call(sim.url, "session.login_with_password", "root", "xenroot")["Value"]
    token = raw_call(sim.url, "event.from", ref, ["vm"], "", 1.0)["Value"]["token"]
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(raw_call(sim.url, "event.from", ref, ["vm"], token, 10.0)))
    thread.start()
    time.sleep(0.1)
    raw_call(sim.url, "session.logout", ref)
    thread.join(5)
    assert result["ErrorDescription"] == ["SESSION_INVALID", ref]


# --------------------------------------------------------------------- faults
def test_fail_a_share_of_calls_deterministically(sim: Simulator, xapi: Any) -> None:
    def pattern() -> list[bool]:
        sim.faults.clear()
        sim.faults.fail("VM.get_all", "INTERNAL_ERROR", ["injected"], share=0.3, seed=42)
        outcome = []
        for _ in range(100):
            try:
                xapi.VM.get_all()
                outcome.append(True)
            except XenAPI.Failure as exc:
                assert exc.details == ["INTERNAL_ERROR", "injected"]
                outcome.append(False)
        return outcome

    first = pattern()
    assert 15 <= first.count(False) <= 45
    assert pattern() == first
    assert xapi.VM.get_all_records()  # other methods are untouched


def test_dropped_connections(sim: Simulator, xapi: Any) -> None:
    sim.faults.drop("VM.get_all")
    sim.reset_call_counts()
    with pytest.raises(ConnectionError):  # http.client.RemoteDisconnected
        xapi.VM.get_all()
    assert sim.call_counts()["VM.get_all"] == 2  # xmlrpc.client retried once on a fresh connection
    sim.clear_faults()
    assert xapi.VM.get_all()


def test_drop_after_execute_makes_the_silent_retry_repeat_the_edit(sim: Simulator, xapi: Any) -> None:
    vif = sim.pool.vif("win7-kiosk", 0)
    sim.faults.drop("VIF.add_to_other_config", after_execute=True, times=1)
    # Executed, answer lost, xmlrpc.client retries by itself: the retry meets its own first write.
    assert failure(xapi.VIF.add_to_other_config, vif, "ethtool-sg", "off") == [
        "MAP_DUPLICATE_KEY", "VIF", "other_config", vif, "ethtool-sg"]
    assert xapi.VIF.get_other_config(vif)["ethtool-sg"] == "off"


def test_hang_until_released(sim: Simulator, xapi: Any) -> None:
    sim.faults.hang("host.get_all")
    done = threading.Event()
    threading.Thread(target=lambda: (login(sim.url).xenapi.host.get_all(), done.set()), daemon=True).start()
    assert not done.wait(0.2)
    assert xapi.VM.get_all()  # only the pattern hangs
    sim.faults.release()
    assert done.wait(2)


def test_latency_and_call_counts(sim: Simulator, xapi: Any) -> None:
    sim.reset_call_counts()
    for _ in range(3):
        xapi.VM.get_all()
    xapi.Async.VM.clean_shutdown(sim.pool.vm("win7-kiosk"))
    assert sim.call_counts() == {"VM.get_all": 3, "Async.VM.clean_shutdown": 1}
    sim.faults.latency(60, "VM.get_all")
    start = time.monotonic()
    xapi.VM.get_all()
    assert time.monotonic() - start >= 0.06
    sim.set_latency(30)
    start = time.monotonic()
    xapi.network.get_all()
    assert time.monotonic() - start >= 0.03
    sim.reset_call_counts()
    assert sim.call_counts() == {}


def test_sim_namespace_over_xml_rpc(sim: Simulator, xapi: Any) -> None:
    proxy = raw(sim.host_url("xcp-host2"))  # any host answers sim.* without a session
    vif = sim.pool.vif("pfsense-fw01", 0)
    assert proxy.sim.get_effective_offload(vif)["tx"] == "off"
    info = proxy.sim.info()
    assert info["pool"] == "demo" and info["url"] == sim.url and info["password"] == "xenroot"
    rule = proxy.sim.fail_calls("VM.get_all", "HOST_OFFLINE", ["x"], 1.0)
    assert failure(xapi.VM.get_all) == ["HOST_OFFLINE", "x"]
    assert proxy.sim.list_faults()[0]["id"] == rule
    proxy.sim.clear_faults()
    assert xapi.VM.get_all()
    proxy.sim.reset_call_counts()
    xapi.VM.get_all()
    assert proxy.sim.get_call_counts() == {"VM.get_all": 1}
    assert proxy.sim.expire_sessions() >= 1
    proxy.sim.move_master("xcp-host2")
    assert proxy.sim.info()["url"] == sim.host_url("xcp-host2")
    with pytest.raises(xmlrpc.client.Fault):
        proxy.sim.no_such_thing()
    proxy("close")()


# ------------------------------------------------------------------- fixtures
def test_demo_fixture_content(sim: Simulator, xapi: Any) -> None:
    vms = xapi.VM.get_all_records()
    by_name = {r["name_label"]: r for r in vms.values()}
    dom0s = [r for r in vms.values() if r["is_control_domain"]]
    assert len(dom0s) == 3 and all(r["power_state"] == "Running" for r in dom0s)
    templates = [r for r in vms.values() if r["is_a_template"] and not r["is_a_snapshot"]]
    assert sorted(r["name_label"] for r in templates) == ["Windows Server 2019 (64-bit)", "tpl-ubuntu2204-base"]
    snap = by_name["win2008r2-sql01 (pre-KB5034439)"]
    assert snap["is_a_snapshot"] and snap["is_a_template"]
    assert snap["snapshot_of"] == sim.pool.vm("win2008r2-sql01")
    assert snap["snapshot_of"] and by_name["win2008r2-sql01"]["snapshots"] == [sim.pool.vm(snap["name_label"])]
    real = [r for r in vms.values() if not r["is_a_template"] and not r["is_control_domain"]]
    assert 10 <= len(real) <= 14
    assert by_name["ubuntu-build02"]["power_state"] == "Halted"
    gms = xapi.VM_guest_metrics.get_all_records()

    def gm(name: str) -> dict[str, Any]:
        return gms[by_name[name]["guest_metrics"]]

    assert gm("win2008r2-sql01")["os_version"]["distro"] == "windows"
    assert "uname" not in gm("win2008r2-sql01")["os_version"]
    assert gm("win7-kiosk")["PV_drivers_version"]["major"] == "7"
    assert gm("win2003-legacy")["os_version"]["major"] == "5"
    assert gm("win2019-dc01")["can_use_hotplug_vif"] == "yes"
    assert gm("ubuntu-web01")["PV_drivers_detected"] is True
    assert gm("ubuntu-web01")["networks"]["0/ip"] == "10.10.0.101"
    assert gm("ubuntu-web01")["networks"]["0/ipv4/0"] == "10.10.0.101"
    assert gm("ubuntu-web01")["networks"]["0/ipv6/0"].startswith("fe80:")
    assert gm("centos7-db01")["os_version"]["distro"] == "centos"
    assert gm("win2019-dc01")["other"]["feature-shutdown"] == "1"
    pfsense = gm("pfsense-fw01")["os_version"]
    assert pfsense["distro"] == "freebsd" and pfsense["name"].startswith("FreeBSD 13")
    assert len(by_name["pfsense-fw01"]["VIFs"]) >= 2
    assert by_name["win2012r2-nopv"]["guest_metrics"] == NULL
    assert gm("winxp-scada")["can_use_hotplug_vif"] == "no"
    hosts = xapi.host.get_all_records()
    assert sorted(h["name_label"] for h in hosts.values()) == ["xcp-host1", "xcp-host2", "xcp-host3"]
    for host in hosts.values():
        pifs = [xapi.PIF.get_record(p) for p in host["PIFs"]]
        devices = {(p["device"], p["VLAN"]) for p in pifs}
        assert {("eth0", "-1"), ("eth1", "-1"), ("eth2", "-1"), ("bond0", "-1")} <= devices
        assert [p["device"] for p in pifs if p["management"]] == ["eth2"]
        assert all(p["bond_slave_of"] != NULL for p in pifs if p["device"] in ("eth0", "eth1"))
        assert any(p["VLAN"] != "-1" for p in pifs)
    offloaded = [r["other_config"] for r in xapi.VIF.get_all_records().values() if r["other_config"]]
    values = {v for oc in offloaded for k, v in oc.items() if k.startswith("ethtool-")}
    assert {"off", "true", "false"} <= values
    assert any("mac_seed" in oc for oc in offloaded)


def test_scale_fixture_counts_and_determinism() -> None:
    with Simulator.start("scale:250") as big:
        session = login(big.url)
        vms = [r for r in session.xenapi.VM.get_all_records().values() if not r["is_control_domain"]]
        assert len(vms) == 250
        assert len(session.xenapi.VIF.get_all()) == 750
        assert len(session.xenapi.host.get_all()) == 3
        assert len(big.host_urls) == 3
        first = sorted(session.xenapi.VM.get_all())
    assert load_fixture("scale:250") == scale_fixture(250)
    with Simulator.start("scale:250") as again:
        assert sorted(login(again.url).xenapi.VM.get_all()) == first  # same seed, same refs


def test_fixture_files_yaml_and_json(tmp_path: Path) -> None:
    doc = {
        "pool": {"name": "tiny"},
        "networks": [{"name": "lan", "bridge": "xenbr0"}],
        "hosts": [{"name": "h1", "pifs": [{"device": "eth0", "network": "lan", "management": True,
                                            "other_config": {"ethtool-gro": "off"}}]}],
        "vms": [{"name": "vm1", "host": "h1", "guest": {"os": {"distro": "debian"}, "pv_drivers": "7.30.0"},
                 "vifs": [{"network": "lan", "other_config": {"ethtool-tx": "off"}}]}],
    }
    json_path = tmp_path / "tiny.json"
    json_path.write_text(json.dumps(doc))
    yaml_path = tmp_path / "tiny.yaml"
    yaml_path.write_text(
        "pool: {name: tiny}\n"
        "networks: [{name: lan, bridge: xenbr0}]\n"
        "hosts:\n  - name: h1\n    pifs: [{device: eth0, network: lan, management: true,"
        " other_config: {ethtool-gro: off}}]\n"
        "vms:\n  - name: vm1\n    host: h1\n    guest: {os: {distro: debian}, pv_drivers: 7.30.0, hotplug_vif: no}\n"
        "    vifs: [{network: lan, other_config: {ethtool-tx: off}}]\n"
    )
    for path in (json_path, yaml_path):
        with Simulator.start(path) as tiny:
            xapi = login(tiny.url).xenapi
            vm = xapi.VM.get_by_name_label("vm1")[0]
            vif = xapi.VM.get_VIFs(vm)[0]
            assert xapi.VIF.get_other_config(vif) == {"ethtool-tx": "off"}  # YAML `off` stays the string
            assert tiny.effective_offload(vif)["tx"] == "off"
            assert tiny.effective_offload(tiny.pool.pif("h1", "eth0"))["gro"] == "off"
            assert tiny.name == "tiny"
    with Simulator.start(yaml_path) as tiny:
        gm = tiny.pool.fields(tiny.pool.fields(tiny.pool.vm("vm1"))["guest_metrics"])
        assert gm["can_use_hotplug_vif"] == "no"


def test_cli_prints_one_line_and_serves(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "sim", "--fixture", "demo", "--port", "0", "--password", "s3cret"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(
            r'xenbot-sim: serving pool "demo" at (http://127\.0\.0\.1:\d+/) \(user root, password s3cret\)\n', line
        )
        assert match, line
        session = login(match.group(1), password="s3cret")
        assert len(session.xenapi.host.get_all()) == 3
        session("close")()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert proc.stdout.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
