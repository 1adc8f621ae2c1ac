"""Applying an approved change exactly once, verifying it, and finishing it after a crash.

Exactly once rests on three things: the request is claimed by compare-and-set
(``approved → applying``, with this replica's id and a heartbeat); every
interface's outcome is recorded with the values read back from XAPI; and a
replica that finds a request stuck in ``applying`` with a dead heartbeat
re-reads live state before touching anything — an interface already showing
the new values is recorded, not written again.

Writes run in parallel, bounded by the pool's ``max_concurrency``; results are
stored in batches (with their audit rows and a heartbeat), so a pool-wide change
costs a few dozen transactions, not thousands.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot import metrics
from bot.db import audit
from bot.db.models import ChangeRequest, ChangeResult, PendingActivation
from bot.db.retry import patiently
from bot.domain.approvals import State, outcome
from bot.domain.changes import NOTHING_TO_ACTIVATE, InterfacePlan, Plan
from bot.domain.model import PoolInventory, Vif
from bot.render import changes as render
from bot.services.changes import ChangeService, utcnow
from bot.services.messenger import Messenger
from bot.xen.errors import XapiUnavailable, XenError
from bot.xen.gateway import Gateways, PoolGateway

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=90)
LATE_REPORT_NOTE = "Posted late: Slack did not take this summary when the change finished."
BATCH_SIZE = 100
FLUSH_SECONDS = 1.0


def executor_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


@dataclass
class Outcome:
    uuid: str
    label: str
    kind: str
    status: str  # applied | failed | verify_failed | activated | skipped
    before: dict[str, str | None]
    after: dict[str, str | None] | None
    error: str | None
    activation: str
    owner_uuid: str = ""


class ClaimLost(Exception):
    """Another replica took the request over (this one looked dead, e.g. during a long database outage)."""


class _Collector:
    """Takes outcomes from the XAPI workers and stores them in batches on a thread of its own,
    so no worker ever waits on the database while it could be writing to XAPI.

    When the database is unreachable the batch stays in memory and is retried (up to the
    service's ``outage_patience``) while the workers go on; people are told once when
    recording stalls and once when it resumes. If another replica has taken the request
    over meanwhile, ``lost`` is set and the workers stop writing: the new holder re-reads
    live state and records what this one did, so nothing is written twice. So that the
    takeover never meets writes still going on, the workers also stop once no heartbeat
    has reached the database for ``write_window`` (a third of the lease).
    """

    def __init__(self, service: ApplyService, request: ChangeRequest, total: int) -> None:
        self.service = service
        self.request = request
        self.total = total
        self.done = 0
        self.lost = False
        self.unstored = 0
        self.left = 0  # not written: the heartbeat was too old to go on (see ApplyService.write_window)
        self._recorded_at = time.monotonic()
        self._outage_since: float | None = None
        self._pending: list[Outcome] = []
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"change-{request.id}-results", daemon=True)
        self._thread.start()

    def add(self, item: Outcome) -> None:
        with self._cond:
            self._pending.append(item)
            self.done += 1
            if len(self._pending) >= BATCH_SIZE:
                self._cond.notify()

    def may_write(self) -> bool:
        """False once the claim may be taken over (or was): the remaining writes are left to recovery."""
        if self.lost:
            return False
        if time.monotonic() - self._recorded_at <= self.service.write_window:
            return True
        with self._cond:
            self.left += 1
        return False

    def close(self) -> None:
        """Store what is left and wait for it: the outcome must be on disk before the summary."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._closed and len(self._pending) < BATCH_SIZE:
                    self._cond.wait(FLUSH_SECONDS)
                batch, self._pending = self._pending, []
                done, closed = self.done, self._closed
            if batch and not self.lost:
                self._store(batch)
                for item in batch:
                    metrics.INTERFACES_CHANGED.labels(self.request.pool, item.status).inc()
                self.service._progress(self.request, done, self.total)
            if closed and not batch:
                return

    def _store(self, batch: list[Outcome]) -> None:
        service, request = self.service, self.request
        try:
            patiently(lambda: service._store(request, batch), patience=service.outage_patience,
                      on_outage=self._outage)
        except ClaimLost:
            self.lost = True
            log.warning("change #%s was taken over by another replica; stopping here", request.id)
            return
        except Exception:
            # Not lost for good: _apply leaves the request ``applying`` (its heartbeat goes stale),
            # and whoever resumes it re-reads these interfaces from XAPI and records them.
            self.unstored += len(batch)
            log.exception("could not store %d results of change #%s", len(batch), request.id)
            if self._outage_since is not None:
                self._outage_since = None  # later batches must not claim these were stored
                service.post_in_thread(request, render.recording_abandoned(request))
            return
        self._recorded_at = time.monotonic()  # _store refreshed the heartbeat with the batch
        if self._outage_since is not None:
            seconds, self._outage_since = time.monotonic() - self._outage_since, None
            service.post_in_thread(request, render.recording_resumed(request, seconds))

    def _outage(self, exc: BaseException) -> None:
        self._outage_since = time.monotonic()
        reason = type(getattr(exc, "orig", None) or exc).__name__
        self.service.post_in_thread(
            self.request, render.recording_delayed(
                self.request, reason, self.service.outage_patience, self.service.write_window
            )
        )


class ApplyService:
    def __init__(
        self,
        *,
        changes: ChangeService,
        gateways: Gateways,
        sessions: sessionmaker[Session],
        messenger: Messenger,
        clock: Callable[[], datetime] = utcnow,
        me: str | None = None,
        outage_patience: float = 300.0,
    ) -> None:
        self.changes = changes
        self.gateways = gateways
        self.sessions = sessions
        self.messenger = messenger
        self.clock = clock
        self.me = me or executor_id()
        # How long results wait in memory for an unreachable database before xenbot gives up on them.
        self.outage_patience = outage_patience
        # How long writes go on without a heartbeat reaching the database. Past LEASE another replica
        # may take the request over and re-read it; stopping well before, with writes in flight
        # finished, means nothing is written by both (the rest is left to that recovery).
        self.write_window = LEASE.total_seconds() / 3
        # Request kinds whose approval runs something other than interface writes (policies).
        self.finishers: dict[str, Callable[[ChangeRequest, str], State]] = {}
        # Set by ``xenbot serve``: hands an approved request to an apply process (apply_process.py).
        self.runner: Callable[[int, str], object] | None = None
        # Likewise for recovery; returns a Future, so a request is not handed over twice at once.
        self.recovery_runner: Callable[[int, timedelta], Future[Any]] | None = None
        self._recovering: set[int] = set()
        self._recovering_lock = threading.Lock()

    # -- entry points ---------------------------------------------------------------

    def start(self, request_id: int, actor: str = "system") -> None:
        """Apply a request that was just approved: in an apply process when there is one, else here."""
        if self.runner is not None:
            self.runner(request_id, actor)
        else:
            self.execute(request_id, actor)

    def execute(self, request_id: int, actor: str = "system") -> State | None:
        """Apply an approved request; returns the final state, or None when another replica has it."""
        with self.sessions() as session:
            request = session.get(ChangeRequest, request_id)
        if request is None or request.state != State.APPROVED:
            return None
        if request.kind == "activate":
            return self._activate(request, actor)
        if request.kind in self.finishers:
            if not self._claim(request, (State.APPROVED,), actor):
                return None
            return self.finishers[request.kind](request, actor)
        try:
            fresh = self.changes.replan(request)
        except XenError as exc:
            # Nothing was written; the approval stands and recover() will try again.
            self.post_in_thread(request, render.apply_postponed(request, str(exc)))
            log.warning("change #%s postponed: %s", request.id, exc)
            return State.APPROVED
        if fresh.content_hash != request.plan_hash:
            return self._stale(request, fresh, actor)
        if not self._claim(request, (State.APPROVED,), actor):
            return None
        return self._apply(request, fresh.interfaces, resumed=False)

    def recover(self, lease: timedelta = LEASE) -> list[int]:
        """Finish what a dead replica (or this one before a restart) left: approved or applying requests.

        With apply processes, the work goes to them like any apply: a pool-wide resume must not
        hold the serving process's GIL (nor the housekeeper's other duties) for its duration."""
        cutoff = self.clock() - lease
        with self.sessions() as session:
            stuck = session.scalars(select(ChangeRequest.id).where(self._stuck(cutoff))).all()
        handled = []
        for request_id in stuck:
            if self.recovery_runner is None:
                self.recover_one(request_id, lease)
            else:
                with self._recovering_lock:
                    if request_id in self._recovering:
                        continue  # handed over already and still running or queued
                    self._recovering.add(request_id)
                try:
                    job = self.recovery_runner(request_id, lease)
                except Exception:
                    with self._recovering_lock:
                        self._recovering.discard(request_id)
                    raise
                job.add_done_callback(functools.partial(self._recovered, request_id))
            handled.append(request_id)
        return handled

    def recover_one(self, request_id: int, lease: timedelta = LEASE) -> State | None:
        """Finish one request if it is still stuck: judged again here, as it may have moved on
        since ``recover`` picked it (its holder's heartbeat came back, another replica took it)."""
        with self.sessions() as session:
            request = session.scalars(
                select(ChangeRequest).where(ChangeRequest.id == request_id, self._stuck(self.clock() - lease))
            ).first()
        if request is None:
            return None
        if request.state == State.APPROVED:
            return self.execute(request.id)
        return self._resume(request)

    def _recovered(self, request_id: int, _job: object = None) -> None:
        with self._recovering_lock:
            self._recovering.discard(request_id)

    @staticmethod
    def _stuck(cutoff: datetime) -> Any:
        return or_(
            (ChangeRequest.state == State.APPROVED) & (ChangeRequest.updated_at <= cutoff),
            (ChangeRequest.state == State.APPLYING)
            & or_(ChangeRequest.heartbeat_at.is_(None), ChangeRequest.heartbeat_at <= cutoff),
        )

    # -- claiming -------------------------------------------------------------------

    def _claim(self, request: ChangeRequest, expected: tuple[State, ...], actor: str) -> bool:
        now = self.clock()
        with self.sessions.begin() as session:
            query = update(ChangeRequest).where(ChangeRequest.id == request.id, ChangeRequest.state == request.state)
            if request.state == State.APPLYING:
                # Taking over: only if the holder is still the one we judged dead.
                query = query.where(
                    ChangeRequest.executor.is_(None)
                    if request.executor is None
                    else ChangeRequest.executor == request.executor
                )
            result = session.execute(
                query.values(state=State.APPLYING, executor=self.me, heartbeat_at=now, updated_at=now)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return False
            audit.record(
                session,
                actor=actor,
                action="change.applying" if request.state == State.APPROVED else "change.resumed",
                target=f"change #{request.id}",
                details={"executor": self.me, "previous_executor": request.executor},
            )
        request.state, request.executor = State.APPLYING, self.me
        return True

    def _stale(self, request: ChangeRequest, fresh: Plan, actor: str) -> State | None:
        with self.sessions.begin() as session:
            row = session.get(ChangeRequest, request.id)
            assert row is not None
            if not self.changes.transition(session, row, (State.APPROVED,), State.STALE, "system"):
                return None
        self.changes.refresh_message(request.id)
        old = Plan.from_json(request.plan)
        if fresh.interfaces:
            new = self.changes.create_request(
                kind=request.kind,
                plan=fresh,
                requester=request.requester,
                channel=request.channel,
                reason=request.reason,
                scope_target=request.plan.get("scope_target", request.scope_label),
                parent_id=request.id,
            )
            self.changes.post_for_approval(new, fresh, note=render.stale_note(request, old, fresh))
        else:
            self.post_in_thread(request, render.stale_nothing_left(request))
        return State.STALE

    # -- applying -------------------------------------------------------------------

    def _apply(
        self, request: ChangeRequest, interfaces: Iterable[InterfacePlan], *, resumed: bool
    ) -> State | None:
        items = list(interfaces)
        gateway = self.gateways.get(request.pool)
        collector = _Collector(self, request, total=len(items))
        self._progress(request, 0, len(items))

        def one(item: InterfacePlan) -> None:
            if collector.may_write():
                collector.add(self._apply_one(gateway, item))

        try:
            gateway.map(one, items)
        finally:
            collector.close()
        if collector.lost:
            return None
        if collector.unstored or collector.left:
            # Closing now would count only what was stored and hide the rest from recover().
            log.warning("change #%s stays applying: %d results to record and %d interfaces to write are "
                        "left to recovery", request.id, collector.unstored, collector.left)
            return None
        return self._finish(request, resumed)

    def _apply_one(self, gateway: PoolGateway, item: InterfacePlan) -> Outcome:
        expected = item.expected()
        before = item.previous()
        known = {k: v for k, v in before.items() if v is not None}
        try:
            after_map = gateway.write_other_config(item.kind, item.ref, expected, known)
        except XapiUnavailable as exc:
            # Timed out or cut off: the write may have landed. Record what is there, not a guess.
            return self._after_uncertain_write(gateway, item, expected, before, str(exc))
        except XenError as exc:
            error = exc.short if hasattr(exc, "short") else str(exc)
            return Outcome(item.uuid, item.label, item.kind, "failed", before, None, error, item.activation)
        after = {k: after_map.get(k) for k in expected}
        status = "applied" if after == expected else "verify_failed"
        error = None if status == "applied" else f"read back {after}, expected {expected}"
        return Outcome(item.uuid, item.label, item.kind, status, before, after, error, item.activation)

    def _after_uncertain_write(
        self,
        gateway: PoolGateway,
        item: InterfacePlan,
        expected: dict[str, str | None],
        before: dict[str, str | None],
        error: str,
    ) -> Outcome:
        """Read the interface back; finish the keys still missing once; record what is really there."""
        for attempt in (1, 2):
            try:
                live = gateway.other_config(item.kind, item.ref)
            except XenError as exc:
                error = f"{error}; could not read back ({exc}), so the value is unknown"
                return Outcome(item.uuid, item.label, item.kind, "failed", before, None, error, item.activation)
            after: dict[str, str | None] = {k: live.get(k) for k in expected}
            if after == expected:
                return Outcome(item.uuid, item.label, item.kind, "applied", before, after, None, item.activation)
            missing = {k: v for k, v in expected.items() if after[k] != v}
            if attempt == 2 or any(after[k] != before.get(k) for k in missing):
                break  # someone else is changing these keys too: do not fight them
            try:
                gateway.write_other_config(item.kind, item.ref, missing, live)
            except XenError as exc:
                error = str(exc)
        return Outcome(item.uuid, item.label, item.kind, "failed", before, after, error, item.activation)

    def _resume(self, request: ChangeRequest) -> State | None:
        """A request found in ``applying`` with a dead holder: record what is done, do the rest."""
        if not self._claim(request, (State.APPLYING,), "system"):
            return None
        if request.kind in self.finishers:
            return self.finishers[request.kind](request, "system")
        plan = Plan.from_json(request.plan)
        with self.sessions() as session:
            done = set(
                session.scalars(select(ChangeResult.interface_uuid).where(ChangeResult.request_id == request.id))
            )
        remaining = [i for i in plan.interfaces if i.uuid not in done]
        gateway = self.gateways.get(request.pool)
        try:
            inventory = gateway.inventory()
        except XenError as exc:
            self.post_in_thread(request, render.apply_postponed(request, str(exc)))
            return State.APPLYING
        to_write: list[InterfacePlan] = []
        found: list[Outcome] = []
        for item in remaining:
            live = inventory.interface(item.uuid)
            if live is None:
                found.append(self._outcome(item, "failed", None, "interface no longer exists"))
                continue
            values = {k: live.other_config.get(k) for k in item.expected()}
            if values == item.expected():
                found.append(self._outcome(item, "applied", values, None))
            elif values == item.previous():
                to_write.append(_with_ref(item, live.ref))
            else:
                found.append(self._outcome(item, "failed", values, "changed by someone else while xenbot was down"))
        if found:
            self._store(request, found)
        self.post_in_thread(request, render.resumed(request, len(done), len(found), len(to_write)))
        return self._apply(request, to_write, resumed=True)

    @staticmethod
    def _outcome(item: InterfacePlan, status: str, after: dict[str, str | None] | None, error: str | None) -> Outcome:
        return Outcome(item.uuid, item.label, item.kind, status, item.previous(), after, error, item.activation)

    def _finish(self, request: ChangeRequest, resumed: bool) -> State:
        final = patiently(lambda: self._close(request, resumed), patience=self.outage_patience)
        self._report(request, final)
        return final

    def _close(self, request: ChangeRequest, resumed: bool) -> State:
        """Move ``applying`` to its outcome; safe to run twice (the second finds it already moved)."""
        with self.sessions.begin() as session:
            counts, _failures, _activation = self._outcome_of(session, request.id)
            final = outcome(counts["applied"] + counts["activated"], counts["failed"] + counts["verify_failed"])
            row = session.get(ChangeRequest, request.id)
            assert row is not None
            summary = {"counts": dict(counts), "resumed": resumed}
            if not self.changes.transition(session, row, (State.APPLYING,), final, "system", summary=summary):
                log.warning("change #%s was finished by someone else", request.id)
            return final

    @staticmethod
    def _outcome_of(
        session: Session, request_id: int
    ) -> tuple[Counter[str], list[tuple[str, str]], Counter[str]]:
        results = session.scalars(select(ChangeResult).where(ChangeResult.request_id == request_id)).all()
        counts = Counter(r.status for r in results)
        failures = [(r.label, r.error or r.status) for r in results if r.status in ("failed", "verify_failed")]
        activation = Counter(r.activation for r in results if r.status == "applied")
        return counts, failures, activation

    def _report(self, request: ChangeRequest, final: State, note: str | None = None, claimed: bool = False) -> bool:
        """Update the card and post the outcome in its thread, once.

        The post is claimed first (``reported_at``, compare-and-set), so a slow Slack cannot
        make the housekeeper's ``report_unreported`` post it a second time meanwhile; a post
        Slack did not take releases the claim for it. Returns False when Slack did not take it."""
        with self.sessions() as session:
            counts, failures, activation = self._outcome_of(session, request.id)
            # The card's place is read again: it may have been recorded after this apply began
            # (an approval clicked within moments of the card appearing).
            card = session.execute(
                select(ChangeRequest.message_channel, ChangeRequest.message_ts).where(ChangeRequest.id == request.id)
            ).one()
        request.message_channel, request.message_ts = card.message_channel, card.message_ts
        self.changes.refresh_message(request.id)
        if request.kind == "activate":
            reply = render.activation_summary(request, final, counts, failures)
        else:
            reply = render.apply_summary(request, final, counts, failures, activation)
        if note:
            reply = render.with_note(reply, note)
        if not claimed:
            try:
                if not self._mark_reported(request.id, self.clock()):
                    return True  # someone else has posted it
            except Exception:  # post anyway: a late duplicate is better than no outcome at all
                log.exception("could not claim the outcome post of change #%s", request.id)
        if not self.post_in_thread(request, reply):
            self._release_report(request.id)  # report_unreported() tries again
            return False
        return True

    def _release_report(self, request_id: int) -> None:
        try:
            self._mark_reported(request_id, None)
        except Exception:
            log.exception("could not release the outcome post of change #%s", request_id)

    def report_unreported(self, grace: timedelta = timedelta(seconds=30)) -> list[int]:
        """Post the outcomes that Slack did not take when the changes finished.

        Claimed by compare-and-set on ``reported_at`` so two replicas never both post."""
        now = self.clock()
        with self.sessions() as session:
            rows = session.scalars(
                select(ChangeRequest).where(
                    ChangeRequest.state.in_([State.APPLIED, State.PARTIALLY_FAILED, State.FAILED]),
                    ChangeRequest.reported_at.is_(None),
                    ChangeRequest.updated_at <= now - grace,
                )
            ).all()
        reported = []
        for request in rows:
            if request.kind in self.finishers or not self._mark_reported(request.id, now):
                continue
            try:
                if self._report(request, State(request.state), note=LATE_REPORT_NOTE, claimed=True):
                    reported.append(request.id)
            except Exception:
                log.exception("could not report change #%s; trying again later", request.id)
                self._release_report(request.id)
        return reported

    def _mark_reported(self, request_id: int, when: datetime | None) -> bool:
        with self.sessions.begin() as session:
            result = session.execute(
                update(ChangeRequest)
                .where(
                    ChangeRequest.id == request_id,
                    ChangeRequest.reported_at.is_(None) if when is not None else ChangeRequest.reported_at.isnot(None),
                )
                .values(reported_at=when)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    # -- activation -------------------------------------------------------------------

    def _activate(self, request: ChangeRequest, actor: str) -> State | None:
        if not self._claim(request, (State.APPROVED,), actor):
            return None
        plan = Plan.from_json(request.plan)
        gateway = self.gateways.get(request.pool)
        try:
            inventory = gateway.inventory()
        except XenError as exc:
            outcomes = [self._outcome(i, "failed", None, str(exc)) for i in plan.interfaces]
            self._store(request, outcomes)
            return self._finish(request, resumed=False)
        collector = _Collector(self, request, total=len(plan.interfaces))
        by_vm: dict[str, list[InterfacePlan]] = {}
        singles: list[InterfacePlan] = []
        for item in plan.interfaces:
            if item.activation == "vm-power-cycle":
                by_vm.setdefault(item.owner, []).append(item)
            else:
                singles.append(item)

        def one(item: InterfacePlan) -> None:
            collector.add(self._activate_one(gateway, inventory, item))

        def vm(items: list[InterfacePlan]) -> None:
            for outcome_ in self._power_cycle(gateway, inventory, items):
                collector.add(outcome_)

        try:
            gateway.map(one, singles)
            gateway.map(vm, list(by_vm.values()))
        finally:
            collector.close()
        return None if collector.lost else self._finish(request, resumed=False)

    def _activate_one(self, gateway: PoolGateway, inventory: PoolInventory, item: InterfacePlan) -> Outcome:
        iface = inventory.interface(item.uuid)
        if iface is None:
            return self._outcome(item, "failed", None, "interface no longer exists")
        try:
            if isinstance(iface, Vif):
                _settle(gateway, "VIF.unplug", iface.ref, "VIF.get_currently_attached", False)
                _settle(gateway, "VIF.plug", iface.ref, "VIF.get_currently_attached", True)
            elif iface.bond_slave_of:
                master = gateway.call("Bond.get_master", iface.bond_slave_of)
                _settle(gateway, "PIF.plug", master, "PIF.get_currently_attached", True)
            else:
                _settle(gateway, "PIF.plug", iface.ref, "PIF.get_currently_attached", True)
        except XenError as exc:
            return self._outcome(item, "failed", None, getattr(exc, "short", str(exc)))
        return self._outcome(item, "activated", None, None)

    def _power_cycle(self, gateway: PoolGateway, inventory: PoolInventory, items: list[InterfacePlan]) -> list[Outcome]:
        iface = inventory.interface(items[0].uuid)
        if not isinstance(iface, Vif):
            return [self._outcome(i, "failed", None, "interface no longer exists") for i in items]
        try:
            _settle(gateway, "VM.clean_shutdown", iface.vm_ref, "VM.get_power_state", "Halted")
            _settle(gateway, "VM.start", iface.vm_ref, "VM.get_power_state", "Running", False, False)
        except XenError as exc:
            return [self._outcome(i, "failed", None, getattr(exc, "short", str(exc))) for i in items]
        return [self._outcome(i, "activated", None, None) for i in items]

    # -- storage and messages -------------------------------------------------------------

    def _store(self, request: ChangeRequest, batch: list[Outcome]) -> None:
        """One transaction per batch: results, pending activations, heartbeat and one audit row.

        Safe to run again after a connection died around the commit: interfaces already
        stored for this request are skipped. Raises :class:`ClaimLost` when this replica no
        longer holds the request (nothing is stored then)."""
        now = self.clock()
        with self.sessions.begin() as session:
            # First, so the request row is locked for the rest of the transaction (PostgreSQL).
            held = session.execute(
                update(ChangeRequest)
                .where(ChangeRequest.id == request.id, ChangeRequest.executor == self.me)
                .values(heartbeat_at=now)
            )
            if held.rowcount != 1:  # type: ignore[attr-defined]
                raise ClaimLost(request.id)
            stored = set(
                session.scalars(
                    select(ChangeResult.interface_uuid).where(
                        ChangeResult.request_id == request.id,
                        ChangeResult.interface_uuid.in_([i.uuid for i in batch]),
                    )
                )
            )
            batch = [i for i in batch if i.uuid not in stored]
            if not batch:
                return
            pending = [i for i in batch if i.status == "applied" and i.activation not in NOTHING_TO_ACTIVATE]
            activated = [i.uuid for i in batch if i.status == "activated"]
            session.execute(
                insert(ChangeResult),
                [
                    {
                        "request_id": request.id,
                        "pool": request.pool,
                        "kind": i.kind,
                        "interface_uuid": i.uuid,
                        "label": i.label,
                        "status": i.status,
                        "before": i.before,
                        "after": i.after,
                        "error": i.error,
                        "activation": i.activation,
                        "at": now,
                    }
                    for i in batch
                ],
            )
            stale = [i.uuid for i in pending] + activated
            if stale:
                session.execute(delete(PendingActivation).where(PendingActivation.interface_uuid.in_(stale)))
            if pending:
                session.execute(
                    insert(PendingActivation),
                    [
                        {
                            "interface_uuid": i.uuid,
                            "pool": request.pool,
                            "kind": i.kind,
                            "label": i.label,
                            "owner_uuid": i.owner_uuid,
                            "method": i.activation,
                            "request_id": request.id,
                            "since": now,
                        }
                        for i in pending
                    ],
                )
            audit.record(
                session,
                actor="system",
                action="change.results",
                target=f"change #{request.id}",
                details={
                    "results": [
                        {
                            "interface": i.uuid,
                            "label": i.label,
                            "status": i.status,
                            "before": i.before,
                            "after": i.after,
                            "error": i.error,
                        }
                        for i in batch
                    ]
                },
            )

    def _progress(self, request: ChangeRequest, done: int, total: int) -> None:
        if request.message_channel and request.message_ts:
            try:
                self.messenger.update(
                    request.message_channel, request.message_ts, render.progress(request, done, total)
                )
            except Exception:
                log.exception("could not post progress of change #%s", request.id)

    def post_in_thread(self, request: ChangeRequest, reply: Any) -> bool:
        """Post about a change; False when the transport failed (logged), True otherwise."""
        channel = request.message_channel or request.channel
        if not channel:
            return True  # nowhere to post (a change requested from the CLI): nothing to retry
        try:
            self.messenger.post(channel, reply, thread_ts=request.message_ts)
        except Exception:
            log.exception("could not post about change #%s", request.id)
            return False
        return True


SETTLE_SECONDS = 300.0  # how long a state change whose answer was lost may take to show (a guest's shutdown)
SETTLE_POLL_SECONDS = 1.0


def _settle(gateway: PoolGateway, method: str, ref: str, probe: str, wanted: object, *extra: object) -> None:
    """Make a state change once; if its answer is lost, look at the state instead of guessing.

    Re-sending would fail (``DEVICE_ALREADY_ATTACHED``, ``VM_BAD_POWER_STATE``) or act twice,
    and treating a lost answer as a failure could leave a VM halted that was meant to restart.
    A lost answer is often a timeout on an operation still under way (a guest can take minutes
    to shut down), so the state is watched for a while, as long as the pool keeps answering."""
    try:
        gateway.call(method, ref, *extra, idempotent=False)
    except XapiUnavailable:
        deadline = time.monotonic() + SETTLE_SECONDS
        while gateway.call(probe, ref) != wanted:  # an unreachable pool raises here: nothing to wait for
            if time.monotonic() >= deadline:
                raise
            time.sleep(SETTLE_POLL_SECONDS)
        log.info("%s on %s: answer lost, but the state shows it happened", method, ref)


def _with_ref(item: InterfacePlan, ref: str) -> InterfacePlan:
    """Refs can change across a master failover's restart; uuids do not."""
    from dataclasses import replace

    return replace(item, ref=ref)
