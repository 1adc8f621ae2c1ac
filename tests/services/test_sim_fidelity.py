"""The client reads the pool as dom0 and XAPI really behave (issue 14), checked against the
simulator over HTTP with real databases: exact ethtool values, bond/VLAN PIFs that take no
setting under Open vSwitch, and guest metrics that vanish at every VM.start.
"""

from __future__ import annotations

import pytest

from bot.domain.policy import PolicySpec, compliance
from bot.render.inspection import render_pifs
from bot.services.changes import Scope
from tests.services.test_apply import stack
from tests.services.test_policies import wait_for


@pytest.fixture
def services(sim, db_url):
    built, _messenger = stack(sim, db_url)
    yield built
    built.close()


def _sql_vif(sim) -> str:
    return sim.pool.vif("win2008r2-sql01", 0)  # Xen Orchestra style: ethtool-tx "false", ethtool-rx "true"


def test_on_for_a_key_that_says_true_plans_no_write_and_no_replug(sim, services):
    plan = services.changes.plan("on", ("rx",), Scope("vm", "win2008r2-sql01"))
    assert plan.interfaces == () and plan.unchanged == 1  # was: "true -> on" with a VIF replug


def test_a_value_dom0_ignores_is_planned_as_a_change(sim, services):
    sim.pool.set_field(_sql_vif(sim), "other_config", {"ethtool-tx": " Off", "ethtool-rx": "TRUE"})
    plan = services.changes.plan("off", ("tx", "rx"), Scope("vm", "win2008r2-sql01"))
    [iface] = plan.interfaces
    assert {(c.key, c.before, c.after) for c in iface.changes} == {
        ("ethtool-tx", " Off", "off"), ("ethtool-rx", "TRUE", "off")}
    # "reset" of a value dom0 ignores changes nothing dom0 does: no write.
    assert services.changes.plan("reset", ("tx",), Scope("vm", "win2008r2-sql01")).interfaces == ()


def test_compliance_reads_false_as_off_and_ignored_values_as_drift(sim, services):
    spec = PolicySpec(pool="demo", target="vifs", action="off", modes=("tx",))
    inventory = services.inspection.gateway("demo").inventory()
    drifting = {d.interface.label for d in compliance(1, spec, inventory).drifting}
    assert "win2008r2-sql01:0" not in drifting  # "false" is off for dom0: complies
    sim.pool.set_field(_sql_vif(sim), "other_config", {"ethtool-tx": " Off"})
    inventory = services.inspection.gateway("demo").inventory()
    drifting = {d.interface.label for d in compliance(1, spec, inventory).drifting}
    assert "win2008r2-sql01:0" in drifting  # dom0 ignores " Off": tx stays on


def test_a_vlan_pif_is_never_shown_in_effect_and_its_plan_warns(sim, services):
    vlan_ref = sim.pool.pif("xcp-host1", "bond0", vlan=100)
    vlan_uuid = sim.pool.fields(vlan_ref)["uuid"]
    plan = services.changes.plan("off", ("tx",), Scope("pif", vlan_uuid))
    assert any("VLAN 100 PIF" in n and "take effect nowhere" in n for n in plan.notes)
    reply = render_pifs(services.inspection.pifs("xcp-host1", None), "/xen pifs xcp-host1")
    listing = str(reply.blocks) + (reply.file.content if reply.file else "")
    rows = [line for line in listing.replace("\\n", "\n").splitlines() if " bond0 " in line]
    assert rows and all(line.rstrip().endswith("no (OVS)") for line in rows), rows


def test_a_vlan_pif_changed_and_activated_is_still_not_in_effect(sim, services):
    """The issue's case: offload off pif=<VLAN PIF>, activate, and /xen pifs said "in effect: yes"
    while the simulator's own effective state for it is empty (nm.ml configures the tagged PIF)."""
    from sqlalchemy import select

    from bot.db.models import ChangeRequest
    from bot.domain.approvals import State
    from tests.services.test_apply import LEAD

    vlan_ref = sim.pool.pif("xcp-host2", "bond0", vlan=200)
    vlan_uuid = sim.pool.fields(vlan_ref)["uuid"]
    services.changes.request(requester="U123", channel="C123", action="off", scope=Scope("pif", vlan_uuid),
                             modes_text="tx", reason="test")
    with services.sessions() as session:
        change = max(session.scalars(select(ChangeRequest.id)))
    services.changes.approve(LEAD, change)
    assert services.apply.execute(change, LEAD) == State.APPLIED
    services.changes.request_activation("U123", "C123", change)
    services.changes.approve(LEAD, change + 1)
    assert services.apply.execute(change + 1, LEAD) == State.APPLIED
    assert sim.effective_offload(vlan_ref) == {}  # nothing took effect on it
    reply = render_pifs(services.inspection.pifs("xcp-host2", None), "/xen pifs xcp-host2")
    listing = (str(reply.blocks) + (reply.file.content if reply.file else "")).replace("\\n", "\n")
    [row] = {line.rstrip() for line in listing.splitlines() if " bond0 " in line and " 200 " in line}
    assert row.endswith("no (OVS)") and not row.endswith("yes")


def test_a_started_vm_without_guest_metrics_is_unknown_not_a_power_cycle(sim, services):
    """VM.start clears VM.guest_metrics until the agent reports (ocaml/xapi/xapi_vm.ml)."""
    vm = sim.pool.vm("win2019-dc01")
    sim.set_guest_agent_delay(None)
    sim.pool.vm_shutdown(vm)
    sim.pool.vm_start(vm)
    gateway = services.inspection.gateway("demo")
    wait_for(lambda: gateway.inventory().vms[vm].guest is None and gateway.inventory().vms[vm].running)
    plan = services.changes.plan("off", ("tx",), Scope("vm", "win2019-dc01"))
    assert plan.interfaces and {i.activation for i in plan.interfaces} == {"agent-unknown"}


def test_readyz_and_pools_say_what_each_host_answered_while_the_master_is_down(sim, services):
    """Members answer HOST_STILL_BOOTING / INTERNAL_ERROR … to every call (ocaml/xapi/api_server.ml)."""
    from bot.health import readiness
    from bot.render.inspection import render_pools

    services.inspection.pools()  # a good read: every host's address is known
    master = sim.stop_master()
    booting = next(name for name in sim.host_urls if name != master)
    sim.set_emergency_error(booting, ["HOST_STILL_BOOTING"])
    statuses: list = []
    wait_for(lambda: bool(statuses.extend(services.inspection.pools()) or statuses[-1].error))
    status = statuses[-1]
    assert status.answers[sim.host_urls[booting]] == "HOST_STILL_BOOTING"
    reply = render_pools([status], "/xen pools")
    listing = str(reply.blocks) + (reply.file.content if reply.file else "")
    assert "what each host answered" in listing and "HOST_STILL_BOOTING" in listing
    ok, report = readiness(services)
    assert not ok and report["pools"]["demo"]["hosts"][sim.host_urls[booting]] == "HOST_STILL_BOOTING"


def test_a_role_that_cannot_write_pifs_gets_a_plan_that_says_so(sim, db_url):
    """RBAC (ocaml/xapi/rbac.ml; PIF fields are written by pool-operator and above in
    ocaml/idl/datamodel.ml): the request is refused with the reason before anyone approves,
    instead of an apply whose every write fails with RBAC_PERMISSION_DENIED."""
    from pydantic import SecretStr

    from bot.services.changes import ChangeError
    from tests.services.test_apply import stack

    sim.add_user("netbot", "pw", "vm-admin")
    built, _ = stack(sim, db_url, pool={"username": "netbot", "password": SecretStr("pw")})
    try:
        plan = built.changes.plan("off", ("tso",), Scope("host", "xcp-host1"))
        assert plan.interfaces and any("may not write PIF settings" in n for n in plan.notes)
        with pytest.raises(ChangeError, match="pool-admin or pool-operator"):
            built.changes.request(requester="U123", channel="C123", action="off", scope=Scope("host", "xcp-host1"),
                                  modes_text="tso", reason="test")
        vif_plan = built.changes.plan("off", ("tx",), Scope("vm", "ubuntu-web02"))
        assert vif_plan.interfaces and not any("may not write" in n for n in vif_plan.notes)  # VIFs: vm-admin may
    finally:
        built.close()
