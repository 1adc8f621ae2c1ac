"""The gateway against the simulator over real HTTP, through the stock XenAPI client."""

from __future__ import annotations

import threading
import time

import pytest
from pydantic import SecretStr

from bot.xen.errors import XapiAuthFailed, XapiError, XapiUnavailable
from bot.xen.gateway import Gateways, PoolGateway, url_for_address
from tests.conftest_xen import pool_settings


def test_inventory_reads_each_class_once_and_converts_types(sim, gateway):
    sim.reset_call_counts()
    inventory = gateway.inventory()
    counts = sim.call_counts()
    assert {k: v for k, v in counts.items() if k.endswith("get_all_records")} == {
        f"{cls}.get_all_records": 1
        for cls in ("pool", "host", "VM", "VM_guest_metrics", "VIF", "PIF", "network")
    }
    assert sum(counts.values()) <= 10  # 7 reads, the event token (pool.get_all, event.inject), the login
    names = {vm.name for vm in inventory.vms.values()}
    assert "win7-kiosk" in names
    # Templates, snapshots and control domains are not VMs to an operator.
    assert not any(n.startswith(("Control domain", "tpl-", "Windows Server 2019 (64")) for n in names)
    assert "win2008r2-sql01 (pre-KB5034439)" not in names
    vif = next(v for v in inventory.vifs.values() if v.vm_name == "win7-kiosk")
    assert isinstance(vif.mtu, int) and vif.mtu == 1500
    pif = next(iter(inventory.pifs.values()))
    assert isinstance(pif.vlan, int)
    assert inventory.master.is_master


def test_follows_host_is_slave_to_the_master(sim):
    member_url = next(url for name, url in sim.host_urls.items() if url != sim.url)
    gw = PoolGateway(pool_settings(sim, url=member_url))
    try:
        assert gw.check() == sim.url
        assert gw.inventory().master.name
    finally:
        gw.close()


def test_survives_a_master_change(sim, gateway):
    gateway.inventory()
    new_master = next(name for name, url in sim.host_urls.items() if url != sim.url)
    sim.move_master(new_master)
    inventory = gateway.inventory()
    assert inventory.master.name == new_master
    assert gateway.master_url == sim.host_url(new_master)


def test_relogs_in_once_when_sessions_expire(sim, gateway):
    gateway.inventory()
    sim.reset_call_counts()
    sim.expire_sessions()
    gateway.inventory()
    assert sim.call_counts().get("session.login_with_password") == 1


def test_wrong_password_is_not_retried(sim):
    gw = PoolGateway(pool_settings(sim, password=SecretStr("wrong")))
    with pytest.raises(XapiAuthFailed, match="refused the credentials"):
        gw.inventory()
    assert sim.call_counts().get("session.login_with_password") == 1


def test_unreachable_pool_is_reported(sim):
    gw = PoolGateway(pool_settings(sim, url="http://127.0.0.1:9/"), retry_delays=(0.01,))
    with pytest.raises(XapiUnavailable, match="connection refused"):
        gw.inventory()


def test_reads_are_retried_after_dropped_connections(sim, gateway):
    gateway.check()
    sim.faults.drop("VIF.get_all_records", share=1.0)
    threading.Timer(0.02, sim.clear_faults).start()
    # The first attempts are dropped; a retry after the fault clears succeeds.
    gw = PoolGateway(pool_settings(sim), retry_delays=(0.05, 0.1, 0.2))
    try:
        assert gw.inventory().vifs
    finally:
        gw.close()


def test_xapi_failures_become_xapi_errors(sim, gateway):
    with pytest.raises(XapiError) as info:
        gateway.call("VIF.get_record", "OpaqueRef:nope")
    assert info.value.code == "HANDLE_INVALID"
    assert info.value.params[0] == "VIF"


def test_injected_failures_surface_with_their_code(sim, gateway):
    sim.faults.fail("VIF.get_other_config", "INTERNAL_ERROR", ["boom"], share=1.0)
    vif = next(iter(gateway.inventory().vifs.values()))
    with pytest.raises(XapiError, match="INTERNAL_ERROR"):
        gateway.other_config("vif", vif.ref)


def test_key_writes_keep_other_keys_and_never_overwrite_a_key_someone_else_added(sim, gateway):
    """add_key is add_to_other_config and nothing more: a key that appeared meanwhile answers
    MAP_DUPLICATE_KEY (even for the same value, as xapi's db_actions ``add_to_map`` does), and the
    caller decides; the gateway used to remove and re-add it, overwriting a colleague's value."""
    inventory = gateway.inventory()
    vif = next(v for v in inventory.vifs.values() if v.vm_name == "win7-kiosk")
    gateway.call("VIF.add_to_other_config", vif.ref, "mac_seed", "keep-me")
    gateway.call("VIF.add_to_other_config", vif.ref, "ethtool-rx", "on")  # someone else's
    with pytest.raises(XapiError) as duplicate:
        gateway.add_key("vif", vif.ref, "ethtool-rx", "off")
    assert duplicate.value.code == "MAP_DUPLICATE_KEY"
    gateway.add_key("vif", vif.ref, "ethtool-tso", "off")
    after = gateway.other_config("vif", vif.ref)
    assert after["ethtool-rx"] == "on" and after["ethtool-tso"] == "off" and after["mac_seed"] == "keep-me"
    gateway.remove_key("vif", vif.ref, "ethtool-tso")
    gateway.remove_key("vif", vif.ref, "ethtool-tso")  # absent: a no-op, as in xapi
    after = gateway.other_config("vif", vif.ref)
    assert "ethtool-tso" not in after and after["mac_seed"] == "keep-me"


def test_a_key_write_whose_answer_is_lost_is_not_sent_again(sim, gateway):
    vif = next(v for v in gateway.inventory().vifs.values() if v.vm_name == "win7-kiosk")
    sim.reset_call_counts()
    sim.faults.drop("VIF.add_to_other_config", after_execute=True, times=1)
    with pytest.raises(XapiUnavailable) as lost:
        gateway.add_key("vif", vif.ref, "ethtool-sg", "off")
    assert not lost.value.unsent  # it may have run: the caller must look, not re-send
    assert sim.call_counts()["VIF.add_to_other_config"] == 1
    assert gateway.other_config("vif", vif.ref)["ethtool-sg"] == "off"


def test_parallel_calls_share_one_session_within_the_concurrency_bound(sim, gateway):
    gateway.check()
    sim.reset_call_counts()
    vifs = list(gateway.inventory().vifs.values())
    results = gateway.map(lambda v: gateway.other_config("vif", v.ref), vifs * 5)
    assert len(results) == len(vifs) * 5
    assert sim.call_counts().get("session.login_with_password", 0) == 0


def test_tls_is_verified_by_default():
    from bot.settings import PoolSettings
    from bot.xen.gateway import tls_context

    verified = tls_context(PoolSettings(name="a", url="https://a/", password=SecretStr("x")))
    assert verified.check_hostname and verified.verify_mode.name == "CERT_REQUIRED"
    relaxed = tls_context(PoolSettings(name="a", url="https://a/", password=SecretStr("x"), verify_tls=False))
    assert relaxed.verify_mode.name == "CERT_NONE"


@pytest.mark.parametrize(
    ("base", "address", "expected"),
    [
        ("https://pool.example:443/", "10.0.0.2", "https://10.0.0.2:443/"),
        ("https://pool.example/", "10.0.0.2", "https://10.0.0.2/"),
        ("http://127.0.0.1:8080/", "127.0.0.3", "http://127.0.0.3:8080/"),
        ("http://127.0.0.1:8080/", "127.0.0.1:9000", "http://127.0.0.1:9000/"),
        ("https://pool.example/", "fd00::2", "https://[fd00::2]/"),
    ],
)
def test_master_address_to_url(base, address, expected):
    assert url_for_address(base, address) == expected


def test_a_call_in_flight_at_close_does_not_log_in_again(sim):
    """A watcher's long-poll is still waiting when shutdown logs the session out: it must end,
    not open a new session that nobody would ever log out."""
    gw = PoolGateway(pool_settings(sim), retry_delays=(0.01,))
    token = gw.event_token()
    errors: list[Exception] = []

    def poll() -> None:
        try:
            gw.call("event.from", ["VM"], token, 30.0)
        except (XapiError, XapiUnavailable) as exc:
            errors.append(exc)

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.3)
    logins = sim.call_counts().get("session.login_with_password", 0)
    gw.close()
    poller.join(10)
    assert not poller.is_alive() and errors
    assert sim.call_counts().get("session.login_with_password", 0) == logins



def test_warm_up_reads_every_pool_so_their_first_commands_ask_xapi_nothing(sim):
    pools = Gateways([pool_settings(sim, name="demo"), pool_settings(sim, name="again")])
    try:
        assert pools.warm_up(timeout=30) == {"demo": "read", "again": "read"}
        sim.reset_call_counts()
        pools.get("demo").inventory(max_age=60)
        assert sim.call_counts() == {}
    finally:
        pools.close()


def test_warm_up_names_a_pool_it_could_not_read_and_does_not_wait_past_its_timeout(sim):
    down = Gateways([pool_settings(sim, name="down", url="http://127.0.0.1:9/")], retry_delays=(0.01,))
    sim.faults.hang("*.get_all_records")
    slow = Gateways([pool_settings(sim, name="slow")])
    try:
        assert "unreachable" in down.warm_up(timeout=10)["down"]
        started = time.monotonic()
        assert slow.warm_up(timeout=0.5) == {"slow": "still reading"}
        assert time.monotonic() - started < 5  # start-up goes on; the first command reads it
    finally:
        sim.faults.release()
        down.close()
        slow.close()
