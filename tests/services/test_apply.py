"""Applying exactly once: races between replicas, expiry, stale plans, partial failures, crashes.

Real parts throughout: the simulator over HTTP, SQLite and PostgreSQL (``db_url``); two
"replicas" are two complete service stacks with their own engines on one database.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from bot.db.models import ChangeRequest, ChangeResult
from bot.domain.approvals import State
from bot.render.blocks import Reply
from bot.services.changes import Scope
from bot.settings import Settings, SlackSettings
from bot.wiring import Services, build
from tests.conftest_xen import pool_settings

LEAD = "U0LEAD"


class RecordingMessenger:
    """Our own messaging port, recording what the services post (Slack itself is tested over HTTP)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, Reply, str | None]] = []
        self.updates: list[tuple[str, str, Reply]] = []
        self._n = 0
        self._lock = threading.Lock()

    def post(self, channel: str, reply: Reply, thread_ts: str | None = None) -> str | None:
        with self._lock:
            self._n += 1
            self.posts.append((channel, reply, thread_ts))
            return f"{self._n}.0"

    def update(self, channel: str, ts: str, reply: Reply) -> None:
        self.updates.append((channel, ts, reply))

    def texts(self) -> str:
        return "\n".join(str(r.blocks) for _c, r, _t in self.posts)


def stack(sim, db_url: str, pool: dict | None = None, **slack) -> tuple[Services, RecordingMessenger]:
    messenger = RecordingMessenger()
    settings = Settings(
        pools=[pool_settings(sim, **(pool or {}))],
        slack=SlackSettings(approvers=[LEAD], approvals_channel="C0APPROVE", **slack),
    ).model_copy(update={"database_url": db_url})
    return build(settings, messenger=messenger), messenger


@pytest.fixture
def services(sim, db_url):
    built, messenger = stack(sim, db_url)
    built.recorder = messenger  # type: ignore[attr-defined]
    yield built
    built.close()


def request(services: Services, scope: Scope, modes: str | None = None) -> int:
    services.changes.request(
        requester="U123", channel="C123", action="off", scope=scope, modes_text=modes, reason="test"
    )
    with services.sessions() as session:
        return max(session.scalars(select(ChangeRequest.id)))


def state(services: Services, request_id: int) -> str:
    with services.sessions() as session:
        row = session.get(ChangeRequest, request_id)
        assert row is not None
        return row.state


def test_two_replicas_racing_apply_once(sim, db_url):
    first, _ = stack(sim, db_url)
    second, _ = stack(sim, db_url)
    try:
        request_id = request(first, Scope("pool", "demo"))
        _, approved = first.changes.approve(LEAD, request_id)
        assert approved
        with first.sessions() as session:
            writes = sum(len(r["changes"]) for r in session.get(ChangeRequest, request_id).plan["interfaces"])
        sim.reset_call_counts()
        barrier = threading.Barrier(2)
        outcomes: list[object] = []

        def run(services: Services) -> None:
            barrier.wait()
            outcomes.append(services.apply.execute(request_id, LEAD))

        threads = [threading.Thread(target=run, args=(s,)) for s in (first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(map(str, outcomes)) == sorted([str(State.APPLIED), "None"])
        counts = sim.call_counts()
        assert counts.get("VIF.add_to_other_config", 0) + counts.get("PIF.add_to_other_config", 0) <= writes
        with first.sessions() as session:
            results = session.scalars(select(ChangeResult).where(ChangeResult.request_id == request_id)).all()
        assert len(results) == len({r.interface_uuid for r in results}) > 10
        assert all(r.status == "applied" for r in results)
    finally:
        first.close()
        second.close()


def test_expired_requests_refuse_approval(sim, db_url):
    services, _ = stack(sim, db_url, approval_ttl_minutes=1)
    try:
        request_id = request(services, Scope("vm", "win7-kiosk"))
        later = datetime.now(UTC) + timedelta(minutes=2)
        services.changes.clock = lambda: later
        reply, approved = services.changes.approve(LEAD, request_id)
        assert not approved and "expired" in reply.text
        assert state(services, request_id) == State.EXPIRED
        assert services.changes.expire_overdue() == 0
    finally:
        services.close()


def test_stale_plan_is_not_applied_and_is_reposted(sim, services):
    request_id = request(services, Scope("vm", "pfsense-fw01"), "tx")
    # Someone edits one VIF by hand before the approval (to "on": "false" would now count as
    # already done, since dom0 reads it as "off", and leave nothing to repost).
    vif = sim.pool.vif("pfsense-fw01", "2")
    sim.pool.set_field(vif, "other_config", {"ethtool-tx": "on"})
    sim.reset_call_counts()
    services.changes.approve(LEAD, request_id)
    assert services.apply.execute(request_id, LEAD) == State.STALE
    assert state(services, request_id) == State.STALE
    assert sim.call_counts().get("VIF.add_to_other_config", 0) == 0
    assert "live state differs" in services.recorder.texts()
    assert state(services, request_id + 1) == State.PENDING


def test_partial_failure_is_recorded_per_interface(sim, services):
    request_id = request(services, Scope("pool", "demo"))
    sim.faults.fail("VIF.add_to_other_config", "INTERNAL_ERROR", ["disk full"], share=0.6, seed=7)
    services.changes.approve(LEAD, request_id)
    final = services.apply.execute(request_id, LEAD)
    assert final == State.PARTIALLY_FAILED
    with services.sessions() as session:
        results = session.scalars(select(ChangeResult).where(ChangeResult.request_id == request_id)).all()
    failed = [r for r in results if r.status in ("failed", "partial")]
    assert failed and all("INTERNAL_ERROR" in (r.error or "") for r in failed)
    assert all(r.after is not None for r in results)  # what XAPI shows, read back even on failure
    assert any(r.status == "applied" for r in results)
    summary = services.recorder.posts[-1][1]
    assert "Not fully changed" in str(summary.blocks) and "INTERNAL_ERROR" in str(summary.blocks)


def test_crash_between_approve_and_apply_is_finished_on_start(sim, services):
    request_id = request(services, Scope("vm", "win2019-dc01"))
    services.changes.approve(LEAD, request_id)  # ... and the process dies before applying
    assert state(services, request_id) == State.APPROVED
    assert services.apply.recover(lease=timedelta(0)) == [request_id]
    assert state(services, request_id) == State.APPLIED


def test_crash_mid_apply_is_resumed_without_writing_twice(sim, services):
    request_id = request(services, Scope("pool", "demo"), "tx")
    services.changes.approve(LEAD, request_id)
    with services.sessions() as session:
        plan = session.get(ChangeRequest, request_id).plan
    done, left = plan["interfaces"][:3], plan["interfaces"][3:]
    # A dead replica claimed it and wrote the first three interfaces (not all recorded).
    gateway = services.gateways.get("demo")
    for item in done:
        cls = "VIF" if item["kind"] == "vif" else "PIF"
        gateway.call(f"{cls}.remove_from_other_config", item["ref"], "ethtool-tx")
        gateway.call(f"{cls}.add_to_other_config", item["ref"], "ethtool-tx", "off")
    with services.sessions.begin() as session:
        session.execute(
            update(ChangeRequest)
            .where(ChangeRequest.id == request_id)
            .values(state=State.APPLYING, executor="dead:1:0", heartbeat_at=datetime.now(UTC) - timedelta(hours=1))
        )
    sim.reset_call_counts()
    assert services.apply.recover() == [request_id]
    assert state(services, request_id) == State.APPLIED
    counts = sim.call_counts()
    assert counts.get("VIF.add_to_other_config", 0) + counts.get("PIF.add_to_other_config", 0) == len(left)
    assert "interrupted" in services.recorder.texts()
    with services.sessions() as session:
        results = session.scalars(select(ChangeResult).where(ChangeResult.request_id == request_id)).all()
    assert len(results) == len(plan["interfaces"])


def test_xapi_down_at_apply_keeps_the_approved_request(sim, services):
    request_id = request(services, Scope("vm", "ubuntu-web02"))
    services.changes.approve(LEAD, request_id)
    sim.faults.drop("*", share=1.0)
    assert services.apply.execute(request_id, LEAD) == State.APPROVED
    assert "Nothing was written" in services.recorder.texts()
    sim.clear_faults()
    services.apply.recover(lease=timedelta(0))
    assert state(services, request_id) == State.APPLIED


def test_reset_removes_keys_and_other_keys_survive(sim, services):
    vif = sim.pool.vif("ubuntu-web01", "0")
    services.changes.request(
        requester="U123", channel="C123", action="reset", scope=Scope("vm", "ubuntu-web01"), modes_text=None,
        reason=None,
    )
    services.changes.approve(LEAD, 1)
    assert services.apply.execute(1, LEAD) == State.APPLIED
    config = sim.pool.fields(vif)["other_config"]
    assert not any(k.startswith("ethtool-") and k != "ethtool-gro" for k in config)
    assert config["mac_seed"]


def test_a_write_whose_answer_is_lost_is_read_back_and_finished_not_guessed_or_repeated(sim, services):
    """The connection dies after XAPI executed add_to_other_config: the outcome is read, not assumed."""
    request_id = request(services, Scope("vm", "win7-kiosk"))
    with services.sessions() as session:
        plan = session.get(ChangeRequest, request_id).plan["interfaces"]
    writes = sum(len(i["changes"]) for i in plan)
    assert writes >= 2
    services.changes.approve(LEAD, request_id)
    sim.reset_call_counts()
    # One add is executed, then its answer is lost; the keys after it were not written yet.
    sim.faults.drop("VIF.add_to_other_config", share=1.0, after_execute=True, times=1)
    assert services.apply.execute(request_id, LEAD) == State.APPLIED
    assert sim.call_counts().get("VIF.add_to_other_config", 0) == writes  # each key written once
    with services.sessions() as session:
        results = session.scalars(select(ChangeResult).where(ChangeResult.request_id == request_id)).all()
    assert [r.status for r in results] == ["applied"] * len(plan)


def test_a_slow_pool_that_times_out_mid_write_is_recorded_as_it_really_is(sim, db_url):
    """The read-back hangs past the pool's timeout: the value cannot be known, so nothing is
    recorded as a guess; the request stays applying and recovery reads it once XAPI answers."""
    services, messenger = stack(sim, db_url, pool={"timeout_seconds": 0.5})
    services.apply.settle_after_lost = 1.0
    try:
        request_id = request(services, Scope("vm", "win7-kiosk"), "tx")
        services.changes.approve(LEAD, request_id)
        sim.faults.hang("*.get_other_config")  # the read-back hangs: the value cannot be known
        try:
            final = services.apply.execute(request_id, LEAD)
        finally:
            sim.faults.release()
        assert final is None and state(services, request_id) == State.APPLYING
        with services.sessions() as session:
            assert session.scalars(select(ChangeResult).where(ChangeResult.request_id == request_id)).all() == []
        assert "could not be read back" in messenger.texts()
        assert services.apply.recover(lease=timedelta(0)) == [request_id]
        assert state(services, request_id) == State.APPLIED
    finally:
        services.close()


def _applied_then_activation_requested(services) -> tuple[int, list[dict]]:
    """A pool-wide change applied, and its activation requested: the activation's id and plan."""
    request_id = request(services, Scope("pool", "demo"), "tx")
    services.changes.approve(LEAD, request_id)
    assert services.apply.execute(request_id, LEAD) == State.APPLIED
    services.changes.request_activation("U123", "C123", request_id)
    activation = request_id + 1
    with services.sessions() as session:
        return activation, session.get(ChangeRequest, activation).plan["interfaces"]


def test_lost_answers_during_activation_are_settled_by_looking_not_by_guessing(sim, services):
    """A power cycle whose shutdown answer is lost must still start the VM; a lost plug is not a failure."""
    activation, plan = _applied_then_activation_requested(services)
    assert {"vm-power-cycle", "vif-replug"} <= {i["activation"] for i in plan}
    cycled = {i["owner"] for i in plan if i["activation"] == "vm-power-cycle"}  # VM refs in an activation
    sim.faults.drop("VM.clean_shutdown", share=1.0, after_execute=True, times=1)
    sim.faults.drop("VIF.plug", share=1.0, after_execute=True, times=1)
    services.changes.approve(LEAD, activation)
    assert services.apply.execute(activation, LEAD) == State.APPLIED
    with services.sessions() as session:
        results = session.scalars(select(ChangeResult).where(ChangeResult.request_id == activation)).all()
    assert {r.status for r in results} == {"activated"}
    gateway = services.gateways.get("demo")
    assert cycled and {gateway.call("VM.get_power_state", vm_ref) for vm_ref in cycled} == {"Running"}


def test_a_shutdown_slower_than_the_call_timeout_is_waited_for_then_the_vm_started(sim, db_url):
    """The shutdown's answer times out while the guest is still shutting down: xenbot watches
    the power state until it is Halted and starts the VM, instead of leaving it halted."""
    services, _ = stack(sim, db_url, pool={"timeout_seconds": 0.5})
    try:
        activation, plan = _applied_then_activation_requested(services)
        cycled = {i["owner"] for i in plan if i["activation"] == "vm-power-cycle"}
        assert cycled, "the demo pool has VMs whose offload takes effect only at a power cycle"
        sim.faults.latency(1500, "VM.clean_shutdown")  # the shutdown happens after the caller gave up
        services.changes.approve(LEAD, activation)
        assert services.apply.execute(activation, LEAD) == State.APPLIED
        gateway = services.gateways.get("demo")
        assert {gateway.call("VM.get_power_state", vm_ref) for vm_ref in cycled} == {"Running"}
        counts = sim.call_counts()
        assert counts.get("VM.clean_shutdown") == counts.get("VM.start") == len(cycled)  # each once
    finally:
        sim.clear_faults()
        services.close()


def test_the_claim_stays_alive_while_a_slow_shutdown_is_waited_for(sim, db_url):
    """No result arrives while a guest takes its time to shut down; the heartbeat must still be
    refreshed, or the lease lapses and another replica takes the activation over mid-way."""
    services, _ = stack(sim, db_url)
    services.apply.write_window = 0.6  # heartbeats every 0.2 s without results
    try:
        activation, plan = _applied_then_activation_requested(services)
        assert any(i["activation"] == "vm-power-cycle" for i in plan)
        sim.faults.latency(3000, "VM.clean_shutdown")
        services.changes.approve(LEAD, activation)
        outcome: list[object] = []
        worker = threading.Thread(target=lambda: outcome.append(services.apply.execute(activation, LEAD)))
        worker.start()
        deadline = time.monotonic() + 20
        while sim.call_counts().get("VM.clean_shutdown", 0) == 0:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        first = _heartbeat(services, activation)
        while _heartbeat(services, activation) == first:
            assert time.monotonic() < deadline, "no heartbeat while the shutdown was under way"
            time.sleep(0.05)
        assert sim.call_counts().get("VM.start", 0) == 0  # still waiting for the shutdown
        worker.join(60)
        assert outcome == [State.APPLIED]
    finally:
        sim.clear_faults()
        services.close()


def _heartbeat(services: Services, request_id: int) -> datetime | None:
    with services.sessions() as session:
        row = session.get(ChangeRequest, request_id)
        assert row is not None
        return row.heartbeat_at
