"""Activation that cannot hurt: the service stack against the simulator over HTTP, both databases.

Faults come from the simulator (``sim.faults``) and from XAPI's own refusals as the simulator
models them (VM_LACKS_FEATURE, OPERATION_BLOCKED); each test names the case it guards.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.db.models import ChangeRequest, ChangeResult, PendingActivation
from bot.domain.approvals import State
from bot.domain.diagnosis import evidence_for
from bot.render.ids import Action
from bot.render.inspection import render_offload_status, render_vifs
from bot.services import activate as activation_module
from bot.services.changes import ChangeError, Scope
from bot.wiring import Services
from bot.xen.sim import Simulator
from tests.services.test_apply import LEAD, RecordingMessenger, stack

REQUESTER = "U123"


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The back-off between tries of a failed start or plug, shortened for tests (same number of tries)."""
    monkeypatch.setattr(activation_module, "RETRY_DELAYS", (0.01, 0.02, 0.03))


@pytest.fixture
def fragile() -> Iterator[Simulator]:
    with Simulator.start(fixture="fragile", task_delay_ms=5, event_batch_ms=5) as simulator:
        yield simulator


@pytest.fixture
def demo(sim: Simulator, db_url: str) -> Iterator[tuple[Services, RecordingMessenger]]:
    built, messenger = stack(sim, db_url)
    yield built, messenger
    built.close()


@pytest.fixture
def edge(fragile: Simulator, db_url: str) -> Iterator[tuple[Services, RecordingMessenger]]:
    built, messenger = stack(fragile, db_url)
    yield built, messenger
    built.close()


def applied(services: Services, scope: Scope, modes: str = "tx") -> int:
    services.changes.request(
        requester=REQUESTER, channel="C123", action="off", scope=scope, modes_text=modes, reason="test"
    )
    request_id = latest(services)
    services.changes.approve(LEAD, request_id)
    assert services.apply.execute(request_id, LEAD) == State.APPLIED
    return request_id


def latest(services: Services) -> int:
    with services.sessions() as session:
        return max(session.scalars(select(ChangeRequest.id)))


def plan_of(services: Services, request_id: int) -> dict[str, Any]:
    with services.sessions() as session:
        row = session.get(ChangeRequest, request_id)
        assert row is not None
        return dict(row.plan)


def results(services: Services, request_id: int) -> list[ChangeResult]:
    with services.sessions() as session:
        return list(session.scalars(select(ChangeResult).where(ChangeResult.request_id == request_id)))


def activated(services: Services, change_id: int) -> tuple[int, State | None]:
    """Request the activation of ``change_id``, approve and run it: its id and final state."""
    services.changes.request_activation(REQUESTER, "C123", change_id)
    activation = latest(services)
    services.changes.approve(LEAD, activation)
    return activation, services.apply.execute(activation, LEAD)


def card_of(messenger: RecordingMessenger, request_id: int) -> str:
    """The last rendering of a request's card (its updates, else its first post)."""
    for _channel, _ts, reply in reversed(messenger.updates):
        if f"Change #{request_id}:" in reply.text or f"— Change #{request_id}:" in reply.text:
            return str(reply.blocks)
    raise AssertionError(f"no card for #{request_id}")


# ----------------------------------------------------------------------------------- item 5
def test_a_start_failing_once_after_the_clean_shutdown_is_retried_and_the_vm_runs(sim, demo):
    """Issue 13 item 5: one failed VM.start used to leave the VM Halted; now it is tried again."""
    services, _ = demo
    change = applied(services, Scope("vm", "winxp-scada"))  # PV drivers, no VIF hotplug: power cycle
    sim.faults.fail("VM.start", "INTERNAL_ERROR", ["xenopsd: domain build failed"], times=1)
    activation, final = activated(services, change)
    assert final == State.APPLIED
    assert services.gateways.get("demo").call("VM.get_power_state", sim.pool.vm("winxp-scada")) == "Running"
    assert sim.call_counts()["VM.clean_shutdown"] == 1 and sim.call_counts()["VM.start"] == 2
    assert {r.status for r in results(services, activation)} == {"activated"}


def test_a_vm_left_off_is_paged_loudly_and_a_start_vm_request_puts_it_back(sim, demo):
    """Issue 13 item 5: start still failing after the retries: the card and thread say the VM is
    OFF, mention the requester and approvers, and offer Start VM (a request approved like any)."""
    services, messenger = demo
    vm = sim.pool.vm("winxp-scada")
    change = applied(services, Scope("vm", "winxp-scada"))
    sim.faults.fail("VM.start", "INTERNAL_ERROR", ["xenopsd: domain build failed"], times=4)
    activation, final = activated(services, change)
    assert final == State.FAILED
    assert sim.call_counts()["VM.start"] == 4  # one try and three more, then it gave up
    gateway = services.gateways.get("demo")
    assert gateway.call("VM.get_power_state", vm) == "Halted"
    [result] = results(services, activation)
    assert result.error and result.error.startswith("VM LEFT OFF") and "INTERNAL_ERROR" in result.error
    page = next(r for _c, r, thread in messenger.posts if thread and "now OFF" in r.text)
    page_text = str(page.blocks)
    assert f"<@{REQUESTER}>" in page_text and f"<@{LEAD}>" in page_text
    assert Action.START_VM.value in page_text
    card = card_of(messenger, activation)
    assert card.index("rotating_light") < card.index(f"Change #{activation}:")  # on top of the card
    assert "now OFF" in card and Action.START_VM.value in card and f"<@{LEAD}>" in card

    services.changes.request_repair(REQUESTER, "C123", activation, "start-vm")
    start = latest(services)
    with services.sessions() as session:
        row = session.get(ChangeRequest, start)
        assert row is not None and row.kind == "start-vm" and row.state == State.PENDING
        assert row.parent_id == activation
    assert services.apply.execute(start, LEAD) is None  # not approved yet: nothing happens
    assert gateway.call("VM.get_power_state", vm) == "Halted"
    services.changes.approve(LEAD, start)
    assert services.apply.execute(start, LEAD) == State.APPLIED
    assert gateway.call("VM.get_power_state", vm) == "Running"
    assert "rotating_light" not in card_of(messenger, activation)  # put back: the alarm is over
    with pytest.raises(ChangeError, match="not halted"):
        services.changes.request_repair(REQUESTER, "C123", activation, "start-vm")


def test_a_vif_left_unplugged_after_its_replug_is_retried_paged_and_plugged_back(sim, demo):
    """Issue 13 item 5, VIF side: VIF.unplug went through and VIF.plug kept failing."""
    services, messenger = demo
    vif = sim.pool.vif("win2019-dc01", 0)
    change = applied(services, Scope("vm", "win2019-dc01"))  # hotplug: replug
    sim.faults.fail("VIF.plug", "INTERNAL_ERROR", ["netback: backend not ready"], times=1)
    activation, final = activated(services, change)
    assert final == State.APPLIED and sim.call_counts()["VIF.plug"] == 2
    change = applied(services, Scope("vm", "win2019-dc01"), "sg")  # activated: a new change to activate
    sim.reset_call_counts()
    sim.faults.fail("VIF.plug", "INTERNAL_ERROR", ["netback: backend not ready"], times=4)
    activation, final = activated(services, change)
    assert final == State.FAILED and sim.call_counts()["VIF.plug"] == 4
    gateway = services.gateways.get("demo")
    assert gateway.call("VIF.get_currently_attached", vif) is False
    [result] = results(services, activation)
    assert result.error and result.error.startswith("VIF LEFT UNPLUGGED") and "no network on Bond 0+1" in result.error
    assert Action.PLUG_VIF.value in card_of(messenger, activation)
    services.changes.request_repair(REQUESTER, "C123", activation, "plug-vif")
    plug = latest(services)
    services.changes.approve(LEAD, plug)
    assert services.apply.execute(plug, LEAD) == State.APPLIED
    assert gateway.call("VIF.get_currently_attached", vif) is True
    assert sim.effective_offload(vif)["tx"] == "off"


def test_a_replica_dying_between_shutdown_and_start_is_finished_by_starting_the_vm(sim, demo):
    """Issue 13 item 5, crash case: the dead replica shut the VM down; recovery must start it,
    not record the activation as done and leave the VM off (no other-config write to re-read)."""
    services, messenger = demo
    vm = sim.pool.vm("winxp-scada")
    change = applied(services, Scope("vm", "winxp-scada"))
    services.changes.request_activation(REQUESTER, "C123", change)
    first = latest(services)
    services.changes.approve(LEAD, first)
    gateway = services.gateways.get("demo")
    gateway.call("VM.clean_shutdown", vm, idempotent=False)  # ... and then the replica died
    dead(services, first)
    assert services.apply.recover(lease=timedelta(0)) == [first]
    assert state_of(services, first) == State.APPLIED
    assert gateway.call("VM.get_power_state", vm) == "Running"
    assert sim.effective_offload(sim.pool.vif("winxp-scada", 0))["tx"] == "off"
    assert "interrupted" in messenger.texts()


def test_a_step_a_dead_replica_may_or_may_not_have_done_is_not_called_done(sim, demo):
    """A running VM / attached VIF after a crash: XAPI cannot show whether the step ran."""
    services, _ = demo
    change = applied(services, Scope("vm", "win2019-dc01"))
    services.changes.request_activation(REQUESTER, "C123", change)
    activation = latest(services)
    services.changes.approve(LEAD, activation)
    dead(services, activation)
    assert services.apply.recover(lease=timedelta(0)) == [activation]
    [result] = results(services, activation)
    assert result.status == "failed" and "interrupted" in (result.error or "")
    assert services.changes.pending_activation()  # still pending: activate again


def dead(services: Services, request_id: int) -> None:
    """The request as a replica that died while activating leaves it."""
    with services.sessions.begin() as session:
        session.execute(
            update(ChangeRequest)
            .where(ChangeRequest.id == request_id)
            .values(state=State.APPLYING, executor="dead:1:0", heartbeat_at=datetime.now(UTC) - timedelta(hours=1))
        )


def state_of(services: Services, request_id: int) -> str:
    with services.sessions() as session:
        row = session.get(ChangeRequest, request_id)
        assert row is not None
        return row.state


# ----------------------------------------------------------------------------------- item 6
def test_bonds_and_pifs_carrying_management_or_storage_are_never_plugged_automatically(fragile, edge):
    """Issue 13 item 6: PIF.plug has no management/disallow_unplug check (xapi_pif.ml plug), so
    xenbot must not plug the management bond or the storage PIF; it names what may drop."""
    services, _ = edge
    change = applied(services, Scope("host", "xcp-edge1"), "tso")
    plan = plan_of(services, change)
    methods = {i["label"]: i["activation"] for i in plan["interfaces"]}
    assert methods["xcp-edge1:eth0"] == methods["xcp-edge1:eth1"] == "bond-replug-manual"
    assert methods["xcp-edge1:eth2"] == "pif-plug-manual" and methods["xcp-edge1:eth3"] == "pif-plug"
    notes = " ".join(plan["notes"])
    assert "management interface of xcp-edge1" in notes and "192.168.50.11" in notes
    assert "10.20.0.11" in notes and "disallow_unplug" in notes
    services.changes.request_activation(REQUESTER, "C123", change)
    activation = latest(services)
    steps = plan_of(services, activation)["interfaces"]
    assert [s["label"] for s in steps] == ["xcp-edge1:eth3"]
    services.changes.approve(LEAD, activation)
    fragile.reset_call_counts()
    assert services.apply.execute(activation, LEAD) == State.APPLIED
    assert fragile.call_counts().get("PIF.plug") == 1
    with services.sessions() as session:
        still = set(session.scalars(select(PendingActivation.label)))
    assert {"xcp-edge1:eth0", "xcp-edge1:eth1", "xcp-edge1:eth2"} <= still


def test_a_lost_answer_on_a_plug_of_an_attached_pif_is_not_success(fragile, edge):
    """Issue 13 item 6: currently_attached was already true, so it proves nothing."""
    services, _ = edge
    change = applied(services, Scope("pif", "xcp-edge1:eth3"), "tso")
    fragile.faults.drop("PIF.plug", share=1.0, after_execute=False, times=1)
    activation, final = activated(services, change)
    assert final == State.FAILED
    [result] = results(services, activation)
    assert result.status == "failed" and "answer lost" in (result.error or "")
    with services.sessions() as session:
        assert session.scalar(select(PendingActivation.method)) == "pif-plug"  # still pending


# ----------------------------------------------------------------------------------- item 7
def test_an_hvm_guest_without_pv_drivers_gets_no_power_cycle_and_is_never_shown_in_effect(fragile, edge):
    """Issue 13 item 7 / issue 14 item 1: the keys never reach the emulated NIC (vif-real applies
    them to TYPE=vif only), so no activation is planned or offered and nothing says "in effect"."""
    services, _ = edge
    change = applied(services, Scope("vm", "hvm-features"))  # agent reports no PV drivers
    [item] = plan_of(services, change)["interfaces"]
    assert item["activation"] == "no-device"
    with pytest.raises(ChangeError, match="no PV drivers"):
        services.changes.request_activation(REQUESTER, "C123", change)
    vifs = services.inspection.vifs("hvm-features", None)
    listing = str(render_vifs(vifs, "/xen vifs hvm-features").blocks)
    assert "no (emulated)" in listing and " yes\\n" not in listing
    status = services.inspection.offload_status("vm", "hvm-features")
    assert status.no_device == 1
    assert "none of these settings is in effect" in str(render_offload_status(status, "x").blocks)
    inventory = services.gateways.get("demo").inventory()
    vm = next(v for v in inventory.vms.values() if v.name == "hvm-features")
    evidence = evidence_for(inventory, vm)
    assert evidence.vifs[0].effective("tx") is None
    assert "no device honours it" in str(evidence.table())
    # No guest metrics at all (no agent, or not reported since the start): XAPI would answer
    # VM_LACKS_FEATURE to a clean shutdown; it is never planned either.
    change = applied(services, Scope("vm", "hvm-nopv"))
    [item] = plan_of(services, change)["interfaces"]
    assert item["activation"] == "agent-unknown"
    with pytest.raises(ChangeError, match="agent reports"):
        services.changes.request_activation(REQUESTER, "C123", change)
    assert "VM.clean_shutdown" not in fragile.call_counts()


# ----------------------------------------------------------------------------------- item 8
def test_a_vm_that_blocks_clean_shutdown_is_never_planned_for_a_power_cycle(fragile, edge):
    """Issue 13 item 8: blocked_operations -> OPERATION_BLOCKED; the reason is shown instead."""
    services, _ = edge
    change = applied(services, Scope("vm", "erp-blocked"))
    plan = plan_of(services, change)
    assert [i["activation"] for i in plan["interfaces"]] == ["vm-op-blocked"]
    assert "ERP month-end close" in " ".join(plan["notes"])
    with pytest.raises(ChangeError, match="ERP month-end close"):
        services.changes.request_activation(REQUESTER, "C123", change)


def test_an_operation_blocked_after_the_activation_was_planned_is_not_attempted(sim, demo):
    """Issue 13 item 8: blocking ``start`` between request and approval must not let xenbot shut
    the VM down (it could not start it again)."""
    services, _ = demo
    vm = sim.pool.vm("winxp-scada")
    change = applied(services, Scope("vm", "winxp-scada"))
    services.changes.request_activation(REQUESTER, "C123", change)
    activation = latest(services)
    gateway = services.gateways.get("demo")
    gateway.call("VM.add_to_blocked_operations", vm, "start", "vendor support case 4711", idempotent=False)
    services.changes.approve(LEAD, activation)
    assert services.apply.execute(activation, LEAD) == State.FAILED
    assert "VM.clean_shutdown" not in sim.call_counts()
    assert gateway.call("VM.get_power_state", vm) == "Running"
    [result] = results(services, activation)
    assert "vendor support case 4711" in (result.error or "")


# ------------------------------------------------------------------------------ issue 14 item 5
def test_a_paused_vm_is_not_told_it_picks_the_setting_up_at_its_next_start(sim, demo):
    """Issue 14 item 5: unpausing rebuilds no device, so "applied when the halted VM next starts"
    is wrong for a paused VM; it stays pending and activation says why it cannot run now."""
    services, messenger = demo
    change = applied(services, Scope("vm", "ubuntu-mon01"))
    [item] = plan_of(services, change)["interfaces"]
    assert item["activation"] == "vm-paused"
    summary = str(messenger.posts[-1][1].blocks)
    assert "paused" in summary and "halted VM next starts" not in summary
    assert services.changes.pending_activation() == {item["uuid"]: "vm-paused"}
    with pytest.raises(ChangeError, match="paused"):
        services.changes.request_activation(REQUESTER, "C123", change)
