"""Targets renamed or destroyed between request and approval.

End to end through the service stack (the router's approve button, the apply path, the
housekeeper) against the simulator over HTTP, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.db.models import AuditEvent, ChangeRequest
from bot.domain.approvals import State
from bot.render.ids import Action
from bot.router import Actor
from bot.services.changes import Scope
from tests.services.test_apply import LEAD, request, stack, state


@pytest.fixture
def services(sim, db_url):
    built, messenger = stack(sim, db_url)
    built.recorder = messenger  # type: ignore[attr-defined]
    yield built
    built.close()


def approve(services, request_id: int) -> str:
    """The approver's click, through the router as Slack's would be; the answer they read."""
    reply = services.router.handle_action(Actor(LEAD, "C0APPROVE"), Action.APPROVE, str(request_id))
    return reply.text


def thread_texts(services, request_id: int) -> list[str]:
    with services.sessions() as session:
        ts = session.get(ChangeRequest, request_id).message_ts
    return [reply.text for _c, reply, thread in services.recorder.posts if thread == ts]


def audit_actions(services, request_id: int) -> list[str]:
    with services.sessions() as session:
        return list(session.scalars(
            select(AuditEvent.action).where(AuditEvent.target == f"change #{request_id}").order_by(AuditEvent.id)
        ))


def test_a_vm_renamed_before_approval_is_applied_by_its_vif_uuids(sim, services):
    """Issue 13 item 11: the re-plan looked the VM up by the name typed in the request."""
    request_id = request(services, Scope("vm", "pfsense-fw01"), "tx")
    gateway = services.gateways.get("demo")
    gateway.call("VM.set_name_label", sim.pool.vm("pfsense-fw01"), "edge-fw01")
    # A new VM taking the old name is not the approved one, and must not be touched.
    sim.pool.set_field(sim.pool.vm("win7-kiosk"), "name_label", "pfsense-fw01")
    sim.reset_call_counts()
    assert "applying it now" in approve(services, request_id)
    assert state(services, request_id) == State.APPLIED
    assert sim.pool.fields(sim.pool.vif("edge-fw01", 2))["other_config"]["ethtool-tx"] == "off"
    assert sim.call_counts().get("VIF.add_to_other_config") == 1
    assert any("applied" in t for t in thread_texts(services, request_id))


def test_a_vm_destroyed_before_approval_makes_the_request_stale_with_a_clear_message(sim, services):
    request_id = request(services, Scope("vm", "pfsense-fw01"), "tx")
    sim.pool.destroy_object(sim.pool.vm("pfsense-fw01"))
    assert "applying it now" in approve(services, request_id)  # answered before the apply starts
    assert state(services, request_id) == State.STALE
    [message] = thread_texts(services, request_id)
    assert "nothing was applied" in message and "no longer exist" in message and "pfsense-fw01:2" in message
    with services.sessions() as session:
        assert session.scalars(select(ChangeRequest.id)).all() == [request_id]  # nothing left to ask for
    card = services.recorder.updates[-1][2]
    assert "stale" in card.text and "Approve" not in str(card.blocks)
    services.apply.clock = lambda: datetime.now(UTC) + timedelta(minutes=5)
    assert services.apply.recover() == []  # nothing left for the housekeeper to retry


def test_a_pool_wide_change_with_a_vm_destroyed_asks_again_for_the_rest(sim, services):
    request_id = request(services, Scope("pool", "demo"), "tx")
    sim.pool.destroy_object(sim.pool.vm("pfsense-fw01"))
    sim.reset_call_counts()
    approve(services, request_id)
    assert state(services, request_id) == State.STALE
    assert state(services, request_id + 1) == State.PENDING
    assert sim.call_counts().get("VIF.add_to_other_config", 0) == 0
    [message] = thread_texts(services, request_id)
    assert "No longer exist: pfsense-fw01:2" in message and f"change #{request_id + 1}" in message
    new_card = next(r for _c, r, thread in services.recorder.posts if f"Change #{request_id + 1}:" in r.text)
    assert "No longer exist: pfsense-fw01:2" in str(new_card.blocks)
