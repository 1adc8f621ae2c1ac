"""Targets renamed or destroyed between request and approval, and tries that never end.

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
from bot.services.housekeeping import Housekeeper
from bot.settings import Settings, SlackSettings
from bot.wiring import build
from tests.conftest_xen import pool_settings
from tests.services.test_apply import LEAD, RecordingMessenger, request, stack, state


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


def test_an_approved_change_whose_pool_stays_down_fails_after_the_configured_tries(sim, db_url):
    services, messenger = stack(sim, db_url, apply_attempts=3)
    services.recorder = messenger  # type: ignore[attr-defined]
    try:
        request_id = request(services, Scope("vm", "win2019-dc01"))
        sim.faults.drop("*", share=1.0)
        approve(services, request_id)  # try 1: the pool does not answer
        assert state(services, request_id) == State.APPROVED
        assert services.apply.recover(lease=timedelta(0)) == [request_id]  # try 2
        assert state(services, request_id) == State.APPROVED
        services.apply.recover(lease=timedelta(0))  # try 3: the last
        assert state(services, request_id) == State.FAILED
        assert services.apply.recover(lease=timedelta(0)) == []  # never again
        texts = thread_texts(services, request_id)
        assert "try 1 of 3" in texts[0] and "try 2 of 3" in texts[1]
        assert "Change #1 failed: xenbot tried 3 time(s)" in texts[-1] and "Nothing was written" in texts[-1]
        assert "Last reason: pool 'demo' is unreachable" in texts[-1]
        actions = audit_actions(services, request_id)
        assert actions.count("change.attempt_failed") == 3 and actions[-1] == "change.failed"
        with services.sessions() as session:
            row = session.get(ChangeRequest, request_id)
            assert row.attempts == 3 and "gave_up" in row.summary and row.reported_at is not None
        assert "failed" in messenger.updates[-1][2].text
        sim.clear_faults()
        assert services.apply.report_unreported(grace=timedelta(0)) == []  # the thread has it already
    finally:
        sim.clear_faults()
        services.close()


def test_a_resumed_change_whose_pool_stays_down_fails_after_the_configured_tries(sim, db_url):
    services, messenger = stack(sim, db_url, apply_attempts=2)
    services.recorder = messenger  # type: ignore[attr-defined]
    try:
        request_id = request(services, Scope("vm", "win2019-dc01"))
        services.changes.approve(LEAD, request_id)
        with services.sessions.begin() as session:  # a replica took it and died
            row = session.get(ChangeRequest, request_id)
            row.state, row.executor = State.APPLYING, "dead:1:0"
            row.heartbeat_at = datetime.now(UTC) - timedelta(hours=1)
        sim.faults.drop("*", share=1.0)
        services.apply.recover(lease=timedelta(0))
        assert state(services, request_id) == State.APPLYING
        services.apply.recover(lease=timedelta(0))
        assert state(services, request_id) == State.FAILED
        assert "tried 2 time(s)" in thread_texts(services, request_id)[-1]
    finally:
        sim.clear_faults()
        services.close()


def test_a_request_for_a_pool_no_longer_configured_fails_instead_of_looping(sim, db_url):
    """Not a pool error but a lookup error (before: logged by the housekeeper every 30 s, forever)."""
    first, _ = stack(sim, db_url)
    request_id = request(first, Scope("vm", "win2019-dc01"))
    first.changes.approve(LEAD, request_id)
    first.close()
    # The operator renamed the pool in the configuration; the approved request still names "demo".
    settings = Settings(
        pools=[pool_settings(sim, name="prod")],
        slack=SlackSettings(approvers=[LEAD], approvals_channel="C0APPROVE", apply_attempts=2),
    ).model_copy(update={"database_url": db_url})
    services = build(settings, messenger=RecordingMessenger())
    services.recorder = services.messenger  # type: ignore[attr-defined]
    try:
        now = [datetime.now(UTC)]

        def clock() -> datetime:
            return now[0]

        services.changes.clock = services.apply.clock = clock
        housekeeper = Housekeeper(services.changes, services.apply)
        for _ in range(2):
            now[0] += timedelta(minutes=5)
            housekeeper.run_once()
        assert state(services, request_id) == State.FAILED
        assert "No pool matches" in thread_texts(services, request_id)[-1]
        now[0] += timedelta(minutes=5)
        assert services.apply.recover() == []
    finally:
        services.close()
