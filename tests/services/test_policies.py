"""Policies that hold: drift seen through event.from, reported once, enforced on new interfaces.

Real parts: the simulator's event.from over HTTP, SQLite and PostgreSQL, two watchers
competing for one lease row. The time from a new VIF to the drift message or the
enforced change is printed (``-s`` shows it) and documented in the README.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.db.models import ChangeApproval, ChangeRequest, Policy
from bot.domain.approvals import State
from bot.domain.policy import PolicySpec
from bot.services.watcher import Lease, PoolWatcher
from tests.services.test_apply import LEAD, RecordingMessenger, stack

MODES = ("rx", "tx", "sg", "tso", "ufo", "gso")


def make_policy(services, mode: str = "report", **extra) -> int:
    spec = PolicySpec(pool="demo", target="vifs", action="off", modes=MODES, mode=mode, **extra)  # type: ignore[arg-type]
    services.policies.request_set("U123", "C123", spec)
    with services.sessions() as session:
        request_id = max(session.scalars(select(ChangeRequest.id)))
    _reply, approved = services.changes.approve(LEAD, request_id)
    assert approved
    assert services.apply.execute(request_id, LEAD) == State.APPLIED
    with services.sessions() as session:
        return max(session.scalars(select(Policy.id)))


def watcher(services, holder: str = "replica-a", ttl: float = 3.0) -> PoolWatcher:
    lease = Lease(services.sessions, holder, services.changes.clock)
    return PoolWatcher(
        services.gateways.get("demo"),
        services.policies,
        lease,
        poll_seconds=0.5,
        lease_ttl=timedelta(seconds=ttl),
        quiet_seconds=0.3,
        max_burst_seconds=2.0,
    )


def drift_posts(messenger: RecordingMessenger) -> list[str]:
    return [str(r.blocks) for _c, r, _t in messenger.posts if "Drift from policy" in r.text]


def wait_for(predicate, timeout: float = 15.0) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
    return time.monotonic() - started


def new_vm(sim, name: str, vifs: int = 3) -> str:
    vm = sim.pool.create_vm(name, host="xcp-host1", power_state="Running")
    network = sim.pool.network("Bond 0+1")
    for device in range(vifs):
        sim.pool.create_vif(vm, network, device=device, plugged=True)
    return vm


@pytest.fixture
def services(sim, db_url):
    built, messenger = stack(sim, db_url)
    built.recorder = messenger  # type: ignore[attr-defined]
    yield built
    built.close()


def test_policy_request_needs_approval_and_reports_compliance(services):
    policy_id = make_policy(services)
    report = services.policies.compliance_report("demo")
    assert [(row.id, c.total > 10, len(c.drifting) > 0) for row, c in report] == [(policy_id, True, True)]
    _row, compliance = services.policies.show(policy_id)
    assert compliance.complying + len(compliance.drifting) == compliance.total


def test_new_vm_in_report_mode_is_one_message_and_reported_once(sim, services):
    make_policy(services)
    w = watcher(services)
    w.start()
    try:
        wait_for(lambda: w.scans >= 1)
        baseline = len(drift_posts(services.recorder))  # the initial scan reports existing drift once
        started = time.monotonic()
        new_vm(sim, "web-new01")
        wait_for(lambda: len(drift_posts(services.recorder)) > baseline)
        print(f"\nreport mode: new VM with 3 VIFs -> drift message in {time.monotonic() - started:.2f} s")
        posts = drift_posts(services.recorder)[baseline:]
        assert len(posts) == 1 and posts[0].count("web-new01:") == 3
        # A re-scan (as after a gap) does not report the same drift again.
        w.request_rescan()
        wait_for(lambda: w.scans >= 2)
        time.sleep(0.5)
        assert len(drift_posts(services.recorder)) == baseline + 1
    finally:
        w.stop()


def test_enforce_mode_fixes_new_interfaces_and_only_reports_hand_edits(sim, services):
    policy_id = make_policy(services, mode="enforce", exclude_names=("win*",))
    w = watcher(services)
    w.start()
    try:
        wait_for(lambda: w.scans >= 1)
        started = time.monotonic()
        vm = new_vm(sim, "app-new02", vifs=2)
        vifs = sim.pool.fields(vm)["VIFs"]
        wait_for(lambda: all(sim.pool.fields(v)["other_config"].get("ethtool-gso") == "off" for v in vifs))
        print(f"\nenforce mode: new VM with 2 VIFs -> change applied in {time.monotonic() - started:.2f} s")

        def enforced_requests() -> list[ChangeRequest]:
            with services.sessions() as session:
                return list(
                    session.scalars(select(ChangeRequest).where(ChangeRequest.requester == f"policy:{policy_id}"))
                )

        wait_for(lambda: [r.state for r in enforced_requests()] == [State.APPLIED])
        with services.sessions() as session:
            enforced = session.scalars(
                select(ChangeRequest).where(ChangeRequest.requester == f"policy:{policy_id}")
            ).all()
            assert [r.state for r in enforced] == [State.APPLIED]
            approvers = session.scalars(
                select(ChangeApproval.approver).where(ChangeApproval.request_id == enforced[0].id)
            ).all()
        assert approvers == [LEAD]
        # Someone switches rx back on by hand on an existing VIF: reported, not reverted.
        existing = sim.pool.vif("ubuntu-web02", "0")
        before = len(drift_posts(services.recorder))
        sim.pool.set_field(existing, "other_config", {"ethtool-rx": "on"})
        wait_for(lambda: len(drift_posts(services.recorder)) > before)
        assert sim.pool.fields(existing)["other_config"] == {"ethtool-rx": "on"}
        # Excluded VMs are left alone.
        excluded = new_vm(sim, "win-new03", vifs=1)
        time.sleep(1.5)
        assert sim.pool.fields(sim.pool.fields(excluded)["VIFs"][0])["other_config"] == {}
    finally:
        w.stop()


def test_events_lost_master_change_and_restart_are_recovered(sim, services):
    make_policy(services)
    w = watcher(services)
    w.start()
    try:
        wait_for(lambda: w.scans >= 1)
        baseline = len(drift_posts(services.recorder))
        # XAPI dropped our events (queue overflow): the next poll says EVENTS_LOST.
        sim.faults.fail("event.from", "EVENTS_LOST", [], times=1)
        new_vm(sim, "lost-01", vifs=1)
        wait_for(lambda: len(drift_posts(services.recorder)) > baseline)
        assert w.scans >= 2
        sim.move_master("xcp-host2")
        new_vm(sim, "after-master-move", vifs=1)
        wait_for(lambda: any("after-master-move" in p for p in drift_posts(services.recorder)))
    finally:
        w.stop()
    # While no watcher runs, a VM appears; the next watcher's full scan reports it, once.
    new_vm(sim, "while-down", vifs=1)
    restarted = watcher(services, holder="replica-a")
    restarted.start()
    try:
        wait_for(lambda: any("while-down" in p for p in drift_posts(services.recorder)))
        time.sleep(0.5)
        assert sum("while-down" in p for p in drift_posts(services.recorder)) == 1
        assert sum("lost-01:" in p for p in drift_posts(services.recorder)) == 1
    finally:
        restarted.stop()


def test_two_replicas_one_lease(sim, db_url):
    first, first_messages = stack(sim, db_url)
    second, second_messages = stack(sim, db_url)
    try:
        make_policy(first)
        a = watcher(first, holder="replica-a", ttl=2.0)
        b = watcher(second, holder="replica-b", ttl=2.0)
        a.start()
        wait_for(lambda: a.scans >= 1)
        b.start()
        new_vm(sim, "one-message", vifs=1)
        wait_for(lambda: any("one-message" in p for p in drift_posts(first_messages) + drift_posts(second_messages)))
        time.sleep(1.0)
        assert sum("one-message" in p for p in drift_posts(first_messages) + drift_posts(second_messages)) == 1
        assert b.scans == 0
        a._stop.set()  # replica a dies without releasing its lease
        a._thread.join(5)
        wait_for(lambda: b.scans >= 1, timeout=15)
        new_vm(sim, "after-takeover", vifs=1)
        wait_for(lambda: any("after-takeover" in p for p in drift_posts(second_messages)))
    finally:
        b.stop()
        first.close()
        second.close()


def test_daily_compliance_summary_is_posted_once(sim, services):
    from datetime import UTC, datetime

    from bot.services.housekeeping import Housekeeper

    make_policy(services)
    at_nine = datetime(2026, 11, 28, 9, 5, tzinfo=UTC)
    services.changes.clock = lambda: at_nine
    keeper = Housekeeper(
        services.changes, services.apply, policies=services.policies,
        compliance_channel="C0COMPLY", compliance_hour_utc=9,
    )
    assert keeper.daily_compliance() is True
    assert keeper.daily_compliance() is False  # once a day, even across replicas
    channel, reply, _ = services.recorder.posts[-1]
    assert channel == "C0COMPLY" and "Daily compliance 2026-11-28" in reply.text
    services.changes.clock = lambda: at_nine.replace(hour=10)
    assert keeper.daily_compliance() is False


def test_stop_does_not_wait_out_the_long_poll_and_hands_the_lease_over(sim, db_url):
    first, _ = stack(sim, db_url)
    second, _ = stack(sim, db_url)
    try:
        a = watcher(first, holder="replica-a", ttl=60.0)
        a.poll_seconds = 60.0  # a poll that would outlast any sensible shutdown
        a.start()
        wait_for(lambda: a.scans >= 1 and a._waiting.is_set())
        a.stop()
        assert a._thread is not None and a._thread.is_alive()  # still in its poll: not waited for
        # The lease is released at once, so another replica takes the pool over now, not in 60 s.
        b = watcher(second, holder="replica-b", ttl=60.0)
        b.start()
        wait_for(lambda: b.scans >= 1, timeout=10)
        new_vm(sim, "after-stop", vifs=1)  # wakes a's poll, so its thread can end
        b.stop()
        a._thread.join(10)
        assert not a._thread.is_alive()
    finally:
        first.close()
        second.close()


def test_a_poll_cut_short_by_shutdown_is_not_reported_as_an_unreachable_pool(sim, db_url, caplog):
    services, _ = stack(sim, db_url)
    a = watcher(services, holder="replica-a", ttl=60.0)
    a.poll_seconds = 60.0
    a.start()
    wait_for(lambda: a.scans >= 1 and a._waiting.is_set())
    a.stop()
    services.close()  # as serve does next: the gateway closes under the poll still in flight
    new_vm(sim, "wakes-the-poll", vifs=1)
    assert a._thread is not None
    a._thread.join(10)
    assert not a._thread.is_alive()
    assert not [r for r in caplog.records if r.name == "bot.services.watcher" and r.levelno >= logging.WARNING]


def test_a_vm_cloned_and_a_vif_created_with_the_stock_client_are_reported(sim, services):
    """Issue 14's done-means: someone clones a VM and adds a VIF with the stock XenAPI client
    (xapi_vm_clone.ml copies each VIF's other_config; VIF.create as xapi_vif.ml checks it), and
    the watcher reports both as drift, as it would on a real pool."""
    import XenAPI

    make_policy(services)
    w = watcher(services)
    w.start()
    other = XenAPI.Session(sim.url)
    other.xenapi.login_with_password(sim.user, sim.password, "2.0", "colleague")
    try:
        wait_for(lambda: w.scans >= 1)
        baseline = len(drift_posts(services.recorder))
        clone = other.xenapi.VM.clone(sim.pool.vm("ubuntu-build02"), "build-clone01")
        wait_for(lambda: any("build-clone01:" in p for p in drift_posts(services.recorder)[baseline:]))
        running = sim.pool.vm("ubuntu-web02")
        network = other.xenapi.VIF.get_network(other.xenapi.VM.get_VIFs(running)[0])
        other.xenapi.VIF.create({
            "device": "5", "network": network, "VM": running, "MAC": "", "MTU": "1500", "other_config": {},
            "qos_algorithm_type": "", "qos_algorithm_params": {},
        })
        wait_for(lambda: any("ubuntu-web02:5" in p for p in drift_posts(services.recorder)[baseline:]))
        assert other.xenapi.VM.get_power_state(clone) == "Halted"
    finally:
        other.xenapi.session.logout()
        w.stop()
