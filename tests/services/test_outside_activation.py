"""Activations done by someone else clear xenbot's pending state (issue 14 item 12): a live
migration rebuilds a VM's VIF devices (ocaml/xenopsd/scripts/vif-real), a toolstack restart plugs
a host's PIFs again at xapi's start of day (ocaml/xapi/xapi_pif.ml, agent_start_time written by
ocaml/xapi/dbsync_slave.ml); the watcher sees both in event.from and records who activated what."""

from __future__ import annotations

import pytest
import XenAPI
from sqlalchemy import select

from bot.db.models import AuditEvent, ChangeRequest, PendingActivation
from bot.domain.approvals import State
from bot.services.changes import Scope
from tests.services.test_apply import LEAD, stack
from tests.services.test_policies import wait_for, watcher


@pytest.fixture
def services(sim, db_url):
    built, _messenger = stack(sim, db_url)
    yield built
    built.close()


def _apply(services, scope: Scope, modes: str) -> int:
    services.changes.request(requester="U123", channel="C123", action="off", scope=scope, modes_text=modes,
                             reason="test")
    with services.sessions() as session:
        change = max(session.scalars(select(ChangeRequest.id)))
    services.changes.approve(LEAD, change)
    assert services.apply.execute(change, LEAD) == State.APPLIED
    return change


def _pending(services, labels: str) -> list[PendingActivation]:
    with services.sessions() as session:
        return [p for p in session.scalars(select(PendingActivation)) if p.label.startswith(labels)]


def _by_others(services) -> list[AuditEvent]:
    with services.sessions() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == "activation.by_others")))


def test_a_live_migration_by_someone_else_clears_the_pending_vif_activation(sim, services):
    vm = sim.pool.vm("ubuntu-web02")
    _apply(services, Scope("vm", "ubuntu-web02"), "tx")
    assert {p.method for p in _pending(services, "ubuntu-web02:")} == {"vif-replug"}
    w = watcher(services)
    w.start()
    try:
        wait_for(lambda: w.scans >= 1)
        colleague = XenAPI.Session(sim.url)
        colleague.xenapi.login_with_password("root", sim.password, "1.0", "xencenter")
        colleague.xenapi.VM.pool_migrate(vm, sim.pool.host("xcp-host3"), {"live": "true"})
        wait_for(lambda: not _pending(services, "ubuntu-web02:"))
    finally:
        w.stop()
    assert sim.effective_offload(sim.pool.vif("ubuntu-web02", 0))["tx"] == "off"
    [entry] = _by_others(services)
    assert "live migration of VM ubuntu-web02" in entry.details["activated_by"]
    assert {i["label"] for i in entry.details["interfaces"]} == {"ubuntu-web02:0", "ubuntu-web02:1"}


def test_a_toolstack_restart_by_someone_else_clears_the_pending_pif_activation(sim, services):
    _apply(services, Scope("host", "xcp-host2"), "tso")
    assert _pending(services, "xcp-host2")
    w = watcher(services)
    w.start()
    try:
        wait_for(lambda: w.scans >= 1)
        sim.restart_agent("xcp-host2")  # xe-toolstack-restart in dom0's shell
        wait_for(lambda: not _pending(services, "xcp-host2"))
    finally:
        w.stop()
    assert sim.effective_offload(sim.pool.pif("xcp-host2", "eth0"))["tso"] == "off"
    [entry] = _by_others(services)
    assert "toolstack restart on host xcp-host2" in entry.details["activated_by"]
