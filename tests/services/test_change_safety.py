"""Change safety under partial failure (issue 13, items 1-4): after any fault, every key is at its
target, untouched, or someone else's value, the records say which, and a revert undoes all xenbot wrote.

Real parts: the simulator over HTTP through the stock XenAPI client, SQLite and PostgreSQL.
Faults are injected with the simulator's own fault rules (bot/xen/sim/faults.py).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from bot.db.models import ChangeRequest, ChangeResult
from bot.domain.approvals import State
from bot.domain.changes import Plan
from bot.render import changes as render
from bot.services.changes import Scope
from bot.wiring import Services
from tests.services.invariants import check_change, check_reverted, live_config
from tests.services.test_apply import LEAD, stack


def _request(services: Services, scope: Scope, modes: str | None, action: str = "off") -> int:
    services.changes.request(
        requester="U123", channel="C123", action=action, scope=scope, modes_text=modes, reason="test"  # type: ignore[arg-type]
    )
    with services.sessions() as session:
        return max(session.scalars(select(ChangeRequest.id)))


def _plan(services: Services, request_id: int) -> Plan:
    with services.sessions() as session:
        row = session.get(ChangeRequest, request_id)
        assert row is not None
        return Plan.from_json(row.plan)


def _state(services: Services, request_id: int) -> str:
    with services.sessions() as session:
        row = session.get(ChangeRequest, request_id)
        assert row is not None
        return row.state


def _revert(services: Services, request_id: int) -> State | None:
    services.changes.request_revert("U123", "C123", request_id)
    with services.sessions() as session:
        revert_id = max(session.scalars(select(ChangeRequest.id)))
    assert revert_id != request_id, "a revert request was created"
    services.changes.approve(LEAD, revert_id)
    return services.apply.execute(revert_id, LEAD)


def test_recovery_finishes_xenbots_interrupted_writes_key_by_key_and_names_only_someone_elses(sim, db_url):
    """Item 1: a dead apply left keys at their old value, at the target, and absent midway through a
    replace; only a key at a third value is someone else's. Before, the whole interface was
    "changed by someone else while xenbot was down" unless all its keys agreed."""
    services, messenger = stack(sim, db_url)
    try:
        request_id = _request(services, Scope("pool", "demo"), "rx,tx,sg")
        services.changes.approve(LEAD, request_id)
        plan = _plan(services, request_id)
        replacing = [i for i in plan.interfaces if sum(c.before is not None for c in i.changes) >= 1]
        adding = [i for i in plan.interfaces if len(i.changes) >= 2 and i not in replacing]
        assert replacing and len(adding) >= 2
        gateway = services.gateways.get("demo")
        cls = {"vif": "VIF", "pif": "PIF"}
        # The dead replica: one interface half written (first key at target, the rest untouched) ...
        half = adding[0]
        first = half.changes[0]
        gateway.call(f"{cls[half.kind]}.add_to_other_config", half.ref, first.key, first.after)
        # ... one removed but not re-added (midway through a replace) ...
        midway = replacing[0]
        present = next(c for c in midway.changes if c.before is not None)
        gateway.call(f"{cls[midway.kind]}.remove_from_other_config", midway.ref, present.key)
        # ... and on a third, a colleague set a value of their own while xenbot was down.
        colleague = adding[1]
        theirs_key = colleague.changes[-1].key
        gateway.call(f"{cls[colleague.kind]}.add_to_other_config", colleague.ref, theirs_key, "on")
        with services.sessions.begin() as session:
            session.execute(
                update(ChangeRequest)
                .where(ChangeRequest.id == request_id)
                .values(state=State.APPLYING, executor="dead:1:0", heartbeat_at=datetime.now(UTC) - timedelta(hours=1))
            )
        assert services.apply.recover() == [request_id]
        assert _state(services, request_id) == State.PARTIALLY_FAILED
        statuses = check_change(services, sim, request_id, theirs={(colleague.uuid, theirs_key): "on"})
        assert statuses["applied"] == len(plan.interfaces) - 1 and statuses["partial"] == 1
        with services.sessions() as session:
            results = {r.interface_uuid: r for r in session.scalars(select(ChangeResult))}
        assert results[half.uuid].status == results[midway.uuid].status == "applied"
        assert theirs_key in (results[colleague.uuid].error or "")
        resumed = next(str(r.blocks) for _c, r, _t in messenger.posts if "interrupted" in r.text)
        assert colleague.label in resumed and theirs_key.removeprefix("ethtool-") in resumed
        assert "1 interface(s) have keys someone else changed" in resumed
        assert _revert(services, request_id) == State.APPLIED
        check_reverted(services, sim, request_id, theirs={(colleague.uuid, theirs_key): "on"})
    finally:
        services.close()


def test_failed_writes_record_what_xapi_shows_and_revert_undoes_every_key_xenbot_wrote(sim, db_url):
    """Item 2: with a share of add_to_other_config failing, each interface is recorded as XAPI shows
    it (partly changed ones as such), and a revert restores every key xenbot wrote, whatever the
    interface's status. Before, failed rows had after=None and the revert covered applied rows only."""
    services, _ = stack(sim, db_url)
    try:
        request_id = _request(services, Scope("pool", "demo"), "rx,tx,sg,tso")
        services.changes.approve(LEAD, request_id)
        sim.faults.fail("*.add_to_other_config", "INTERNAL_ERROR", ["disk full"], share=0.55, seed=11)
        assert services.apply.execute(request_id, LEAD) == State.PARTIALLY_FAILED
        sim.clear_faults()
        statuses = check_change(services, sim, request_id)
        assert statuses["partial"] and statuses["applied"], statuses
        request, approvers, results = services.changes.detail(request_id)
        card = str(render.change_detail(request, approvers, results).blocks)
        assert "partly changed" in card and "INTERNAL_ERROR" in card
        assert _revert(services, request_id) == State.APPLIED
        check_reverted(services, sim, request_id)
    finally:
        services.close()


def test_writes_that_land_after_their_timeout_are_recorded_as_they_landed(sim, db_url):
    """Item 3: adds hang past the pool's time-out and land later. Nothing is re-sent blind; the
    interfaces are watched until they show their writes, so recorded equals real at close."""
    services, _ = stack(sim, db_url, pool={"timeout_seconds": 0.5})
    services.apply.settle_after_lost = 20.0
    try:
        request_id = _request(services, Scope("vm", "win2008r2-sql01"), "rx,tx,sg,tso")
        services.changes.approve(LEAD, request_id)
        writes = sum(1 for i in _plan(services, request_id).interfaces for _c in i.changes)
        sim.reset_call_counts()
        sim.faults.hang("VIF.add_to_other_config")
        releaser = threading.Thread(target=_release_once_hung, args=(sim,), daemon=True)
        releaser.start()
        assert services.apply.execute(request_id, LEAD) == State.APPLIED
        releaser.join(10)
        statuses = check_change(services, sim, request_id)
        assert set(statuses) == {"applied"}
        assert sim.call_counts().get("VIF.add_to_other_config", 0) == writes  # no key sent twice
    finally:
        sim.clear_faults()
        services.close()


def _release_once_hung(sim) -> None:
    """Let the hung adds through once the apply has given up on at least one of them (its time-out passed)."""
    deadline = time.monotonic() + 30
    while sim.call_counts().get("VIF.add_to_other_config", 0) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # past the 0.5 s call time-out: the answer is lost, the write still pending in XAPI
    sim.faults.release()


def test_a_colleagues_edit_during_a_long_apply_is_not_overwritten(sim, db_url):
    """Item 4: a hand add_to_other_config on a VIF the apply has not reached yet. Before, the
    MAP_DUPLICATE_KEY path removed and re-added it, and recorded ``before`` as absent."""
    services, messenger = stack(sim, db_url)
    try:
        request_id = _request(services, Scope("pool", "demo"), "tx")
        services.changes.approve(LEAD, request_id)
        plan = _plan(services, request_id)
        assert plan.interfaces[0].kind == "pif"  # PIFs are written first
        last = plan.interfaces[-1]
        assert last.kind == "vif" and last.changes[0].before is None
        sim.reset_call_counts()
        sim.faults.hang("*.add_to_other_config")  # every writer is held in XAPI while the colleague acts
        colleague = threading.Thread(target=_colleague_adds, args=(sim, last.ref), daemon=True)
        colleague.start()
        final = services.apply.execute(request_id, LEAD)
        colleague.join(10)
        assert final == State.PARTIALLY_FAILED
        assert live_config(sim, last.ref)["ethtool-tx"] == "on"
        theirs = {(last.uuid, "ethtool-tx"): "on"}
        statuses = check_change(services, sim, request_id, theirs)
        assert statuses["conflict"] == 1
        with services.sessions() as session:
            result = session.scalars(select(ChangeResult).where(ChangeResult.interface_uuid == last.uuid)).one()
        assert result.before == {"ethtool-tx": None}  # what the approver saw, not what the colleague wrote
        assert "someone else" in messenger.texts()
        assert _revert(services, request_id) == State.APPLIED
        check_reverted(services, sim, request_id, theirs)  # the colleague's "on" survives the revert too
    finally:
        sim.clear_faults()
        services.close()


def _colleague_adds(sim, ref: str) -> None:
    """Once the apply's first write is in XAPI (and held there), a colleague sets the last VIF's key.

    Straight into the simulator's store, as the hang holds every add_to_other_config call."""
    deadline = time.monotonic() + 30
    while sim.call_counts().get("PIF.add_to_other_config", 0) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    with sim.pool.lock:
        config = dict(sim.pool.fields(ref)["other_config"])
        assert "ethtool-tx" not in config, "the apply reached the last VIF first"
        sim.pool.set_field(ref, "other_config", {**config, "ethtool-tx": "on"})
    sim.faults.release()
