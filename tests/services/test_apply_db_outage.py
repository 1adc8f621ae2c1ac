"""The database goes away in the middle of a pool-wide apply, and comes back.

PostgreSQL is reached through a TCP proxy that resets every connection and refuses new
ones (what a server restart or failover looks like to a client), then lets them through
again. The pool is the simulator over HTTP. What must hold: the user is told, every
interface is written once and recorded once, the audit chain is intact, and the same
process carries on without a restart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, update

from bot.db import audit, make_engine
from bot.db.models import ChangeRequest, ChangeResult
from bot.domain.approvals import State
from bot.services.apply import ClaimLost, Outcome
from bot.services.changes import Scope
from tests.services.test_apply import LEAD, request, stack, state
from tests.tcp_proxy import TcpProxy


@pytest.fixture
def postgres_url(db_url: str) -> str:
    if db_url.startswith("sqlite"):
        pytest.skip("a dropped connection needs a database server (runs on PostgreSQL)")
    return db_url


def _results(url: str, request_id: int) -> int:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as connection:
            return int(
                connection.scalar(
                    select(func.count()).select_from(ChangeResult).where(ChangeResult.request_id == request_id)
                )
                or 0
            )
    finally:
        engine.dispose()


def test_database_restart_during_a_pool_wide_apply_loses_nothing_and_writes_nothing_twice(sim, postgres_url):
    with TcpProxy.for_url(postgres_url) as proxy:
        services, messenger = stack(sim, proxy.url(postgres_url))
        try:
            request_id = request(services, Scope("pool", "demo"))
            services.changes.approve(LEAD, request_id)
            with services.sessions() as session:
                plan = session.get(ChangeRequest, request_id).plan["interfaces"]
            writes = sum(len(i["changes"]) for i in plan)
            sim.reset_call_counts()
            sim.faults.latency(120, "*.add_to_other_config")  # long enough to cut the database mid-way
            outcome: list[object] = []
            worker = threading.Thread(target=lambda: outcome.append(services.apply.execute(request_id, LEAD)))
            worker.start()

            deadline = time.monotonic() + 30
            while _results(postgres_url, request_id) == 0:  # the first batch is stored ...
                assert time.monotonic() < deadline, "no results stored"
                time.sleep(0.05)
            proxy.cut()  # ... then the server "restarts" while the pool writes go on
            time.sleep(3)
            assert _results(postgres_url, request_id) < len(plan), "the apply finished before the outage"
            proxy.restore()
            worker.join(60)

            assert outcome == [State.APPLIED]
            assert proxy.refused > 0
            counts = sim.call_counts()
            assert counts.get("VIF.add_to_other_config", 0) + counts.get("PIF.add_to_other_config", 0) == writes
            with services.sessions() as session:
                results = session.scalars(select(ChangeResult).where(ChangeResult.request_id == request_id)).all()
                assert len(results) == len({r.interface_uuid for r in results}) == len(plan)
                assert all(r.status == "applied" for r in results)
                assert audit.verify(session).ok
            texts = messenger.texts()
            assert "database is unreachable" in texts and "answers again" in texts
            assert "applied" in messenger.posts[-1][1].text

            # The same process goes on: a new request is recorded and applied.
            services.changes.request(requester="U123", channel="C123", action="reset",
                                     scope=Scope("vm", "win7-kiosk"), modes_text="rx", reason="after the outage")
            again = request_id + 1
            assert state(services, again) == State.PENDING
            services.changes.approve(LEAD, again)
            assert services.apply.execute(again, LEAD) == State.APPLIED
        finally:
            sim.clear_faults()
            services.close()


@contextmanager
def _behind_a_proxy(sim, postgres_url: str, **pool: object) -> Iterator[tuple[Any, Any, TcpProxy]]:
    """A service stack whose database connections go through a proxy the test can cut."""
    with TcpProxy.for_url(postgres_url) as proxy:
        services, messenger = stack(sim, proxy.url(postgres_url), pool=pool or None)
        try:
            yield services, messenger, proxy
        finally:
            sim.clear_faults()
            services.close()


def _approved_pool_change(services, sim, write_latency_ms: int) -> tuple[int, int]:
    """A pool-wide change, approved, with slow writes; returns its id and how many interfaces it plans."""
    request_id = request(services, Scope("pool", "demo"), "tx")
    services.changes.approve(LEAD, request_id)
    with services.sessions() as session:
        planned = len(session.get(ChangeRequest, request_id).plan["interfaces"])
    sim.reset_call_counts()
    sim.faults.latency(write_latency_ms, "*.add_to_other_config")
    return request_id, planned


def _apply_in_background(services, request_id: int) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []
    worker = threading.Thread(target=lambda: outcome.append(services.apply.execute(request_id, LEAD)))
    worker.start()
    return worker, outcome


def _left_applying_then_recovered_once(services, sim, proxy, worker, outcome, request_id: int, planned: int) -> None:
    """The database is back and the apply has given up, leaving the change applying; recovery
    finishes it, every interface recorded once and every key written once in all."""
    proxy.restore()
    worker.join(60)
    assert outcome == [None], "the apply leaves what it could not record or write to recovery"
    sim.clear_faults()
    assert state(services, request_id) == State.APPLYING
    assert services.apply.recover(lease=timedelta(0)) == [request_id]
    assert state(services, request_id) == State.APPLIED
    with services.sessions() as session:
        results = session.scalars(select(ChangeResult).where(ChangeResult.request_id == request_id)).all()
    assert len(results) == len({r.interface_uuid for r in results}) == planned
    counts = sim.call_counts()
    assert counts.get("VIF.add_to_other_config", 0) + counts.get("PIF.add_to_other_config", 0) == planned


def test_an_outage_longer_than_patience_is_finished_by_recovery_from_live_state(sim, postgres_url):
    """Results that could not wait are not lost: the resume reads them back from XAPI."""
    with _behind_a_proxy(sim, postgres_url) as (services, _, proxy):
        services.apply.outage_patience = 1.0
        request_id, planned = _approved_pool_change(services, sim, 400)
        worker, outcome = _apply_in_background(services, request_id)
        time.sleep(0.3)
        proxy.cut()
        worker.join(60)
        _left_applying_then_recovered_once(services, sim, proxy, worker, outcome, request_id, planned)


def test_results_given_up_on_keep_the_request_open_even_if_the_database_comes_back(sim, postgres_url):
    """The database returns before the apply ends: the change must not close on the stored
    results alone (the dropped ones would be invisible to recovery); it stays applying."""
    with _behind_a_proxy(sim, postgres_url) as (services, messenger, proxy):
        services.apply.outage_patience = 0.5
        request_id, planned = _approved_pool_change(services, sim, 700)  # outlives the outage
        worker, outcome = _apply_in_background(services, request_id)
        time.sleep(0.2)
        proxy.cut()
        deadline = time.monotonic() + 20
        while not any("longer than xenbot waits" in reply.text for _c, reply, _t in messenger.posts):
            assert time.monotonic() < deadline, "no batch was given up on"
            time.sleep(0.05)
        _left_applying_then_recovered_once(services, sim, proxy, worker, outcome, request_id, planned)


def test_writes_stop_before_another_replica_could_take_the_change_over(sim, postgres_url):
    """No heartbeat for ``write_window``: the remaining interfaces are not written here but
    left to recovery, so a replica that takes over never meets writes still going on."""
    with _behind_a_proxy(sim, postgres_url, max_concurrency=1) as (services, _, proxy):
        services.apply.write_window = 0.5
        services.apply.outage_patience = 10.0
        request_id, planned = _approved_pool_change(services, sim, 100)
        worker, outcome = _apply_in_background(services, request_id)
        time.sleep(0.3)
        proxy.cut()
        time.sleep(1.5)  # well past the write window: writing has stopped
        writes_during = sim.call_counts().get("VIF.add_to_other_config", 0)
        time.sleep(0.5)
        assert sim.call_counts().get("VIF.add_to_other_config", 0) == writes_during < planned
        _left_applying_then_recovered_once(services, sim, proxy, worker, outcome, request_id, planned)


def _outcome(uuid: str) -> Outcome:
    return Outcome(uuid, uuid, "vif", "applied", {"ethtool-tx": None}, {"ethtool-tx": "off"}, None, "vif-replug")


def _applying(services, executor: str) -> ChangeRequest:
    """A request that ``executor`` holds in ``applying``, as loaded by the apply service."""
    request_id = request(services, Scope("vm", "win7-kiosk"))
    with services.sessions.begin() as session:
        session.execute(
            update(ChangeRequest).where(ChangeRequest.id == request_id).values(state=State.APPLYING, executor=executor)
        )
    with services.sessions() as session:
        row = session.get(ChangeRequest, request_id)
    assert row is not None
    return row


def test_storing_a_batch_again_after_an_unclear_commit_adds_nothing(sim, db_url):
    """A connection that dies around COMMIT leaves the writer unsure; the retry must be harmless."""
    services, _ = stack(sim, db_url)
    try:
        row = _applying(services, services.apply.me)
        request_id = row.id
        batch = [_outcome("u-1"), _outcome("u-2")]
        services.apply._store(row, batch)
        services.apply._store(row, [*batch, _outcome("u-3")])
        with services.sessions() as session:
            stored = session.scalars(select(ChangeResult.interface_uuid).where(ChangeResult.request_id == request_id))
            assert sorted(stored) == ["u-1", "u-2", "u-3"]
            assert len(audit.recent(session, limit=50, action_prefix="change.results")) == 2
    finally:
        services.close()


def test_a_replica_that_lost_its_claim_stores_nothing(sim, db_url):
    services, _ = stack(sim, db_url)
    try:
        row = _applying(services, "other-replica:1:ab")
        request_id = row.id
        with pytest.raises(ClaimLost):
            services.apply._store(row, [_outcome("u-1")])
        assert _count(services, request_id) == 0
        assert state(services, request_id) == State.APPLYING
    finally:
        services.close()


def _count(services, request_id: int) -> int:
    with services.sessions() as session:
        return len(session.scalars(select(ChangeResult).where(ChangeResult.request_id == request_id)).all())


def test_engine_recovers_after_the_server_is_back(postgres_url):
    """pool_pre_ping: connections killed by a restart are replaced, not handed to the next use case."""
    with TcpProxy.for_url(postgres_url) as proxy:
        engine = make_engine(proxy.url(postgres_url))
        try:
            with engine.connect() as connection:
                assert connection.exec_driver_sql("select 1").scalar() == 1
            proxy.cut()
            proxy.restore()
            with engine.connect() as connection:
                assert connection.exec_driver_sql("select 1").scalar() == 1
        finally:
            engine.dispose()
