"""Activation against XAPI's blocking operations (issue 14 item 9): a VIF.unplug that XAPI keeps
waiting (the VIF busy with someone else's operation, or a hot-unplug the guest is slow to finish)
outlives xenbot's call time-out; xenbot must watch the state (activate.settle) rather than fail,
since XAPI goes on and finishes the call (ocaml/xapi/helpers.ml retry_with_global_lock,
ocaml/xapi/message_forwarding.ml with_vif_marked)."""

from __future__ import annotations

import XenAPI
from sqlalchemy import select

from bot.db.models import ChangeRequest, ChangeResult
from bot.domain.approvals import State
from bot.services.changes import Scope
from tests.services.test_apply import LEAD, stack


def _activation(services) -> int:
    services.changes.request(requester="U123", channel="C123", action="off", scope=Scope("vm", "ubuntu-web02"),
                             modes_text="tx", reason="test")
    with services.sessions() as session:
        change = max(session.scalars(select(ChangeRequest.id)))
    services.changes.approve(LEAD, change)
    assert services.apply.execute(change, LEAD) == State.APPLIED
    services.changes.request_activation("U123", "C123", change)
    with services.sessions() as session:
        plan = session.get(ChangeRequest, change + 1).plan["interfaces"]
    assert {i["activation"] for i in plan} == {"vif-replug"}
    services.changes.approve(LEAD, change + 1)
    return change + 1


def _results(services, request_id: int) -> set[str]:
    with services.sessions() as session:
        rows = session.scalars(select(ChangeResult).where(ChangeResult.request_id == request_id)).all()
    return {r.status for r in rows}


def test_an_unplug_slower_than_the_call_timeout_is_settled_by_looking(sim, db_url):
    services, _ = stack(sim, db_url, pool={"timeout_seconds": 0.5})
    try:
        activation = _activation(services)
        sim.set_operation_time(1500, "VIF.unplug")  # XAPI holds the VIF and answers after 1.5 s
        assert services.apply.execute(activation, LEAD) == State.APPLIED
        assert _results(services, activation) == {"activated"}
        vif = sim.pool.vif("ubuntu-web02", 0)
        assert sim.effective_offload(vif)["tx"] == "off"
        counts = sim.call_counts()
        assert counts.get("VIF.unplug") == counts.get("VIF.plug") == 2  # its two VIFs, each once: not re-sent
    finally:
        services.close()


def test_a_vif_busy_with_another_operation_blocks_xenbots_call_then_settles(sim, db_url):
    services, _ = stack(sim, db_url, pool={"timeout_seconds": 0.5})
    try:
        activation = _activation(services)
        vif = sim.pool.vif("ubuntu-web02", 0)
        other = XenAPI.Session(sim.url)
        other.xenapi.login_with_password("root", sim.password, "1.0", "colleague")
        sim.set_task_delay(1500)
        other.xenapi.Async.VIF.unplug(vif)  # a colleague's unplug holds the VIF for 1.5 s
        assert services.apply.execute(activation, LEAD) == State.APPLIED
        assert _results(services, activation) == {"activated"}
        assert sim.pool.fields(vif)["currently_attached"] is True
        assert sim.effective_offload(vif)["tx"] == "off"
    finally:
        services.close()
