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

This module holds the entry points, claiming and reporting; each phase has a module
of its own: writing (:mod:`apply_execute`), storing outcomes (:mod:`apply_results`),
finishing after a crash (:mod:`apply_recover`) and activation (:mod:`activate`).
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.db import audit
from bot.db.models import ChangeRequest, ChangeResult
from bot.db.retry import patiently
from bot.domain.approvals import State, outcome
from bot.domain.changes import ACTIVATION_KINDS, InterfacePlan, Plan
from bot.domain.outcomes import FAILURES, SUCCESSES, WRITTEN
from bot.render import changes as render
from bot.services.activate import activate, resume_activation
from bot.services.apply_execute import apply_interfaces
from bot.services.apply_recover import resume
from bot.services.apply_results import ClaimLost, Outcome, store_results
from bot.services.changes import ChangeService, utcnow
from bot.services.messenger import Messenger
from bot.services.progress import sender_for
from bot.xen.errors import XenError
from bot.xen.gateway import Gateways, PoolGateway

__all__ = ["LEASE", "ApplyService", "ClaimLost", "Outcome", "executor_id"]

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=90)
LATE_REPORT_NOTE = "Posted late: Slack did not take this summary when the change finished."


def executor_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


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
        # How long a write whose answer was lost is watched for before it counts as not done
        # (None: twice the pool's call time-out). See apply_execute.settle.
        self.settle_after_lost: float | None = None
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
        if request.kind in ACTIVATION_KINDS:  # activate, and the start-vm / plug-vif that put back what it left
            return self._activate(request, actor)
        if request.kind in self.finishers:
            if not self._claim(request, (State.APPROVED,), actor):
                return None
            return self.finishers[request.kind](request, actor)
        try:
            fresh = self.changes.replan(request)
        except XenError as exc:
            # Nothing was written; the approval stands and recover() tries again, a limited number of times.
            log.warning("change #%s postponed: %s", request.id, exc)
            counted = self.changes.attempt_failed(request.id, str(exc), self.me, seen=request.updated_at)
            if counted is None:
                return None
            left_in, attempts = counted
            if left_in is State.APPROVED:
                self.post_in_thread(request, render.apply_postponed(
                    request, str(exc), attempts, self.changes.slack.apply_attempts))
            return left_in
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
                try:
                    self.recover_one(request_id, lease)
                except Exception:  # e.g. the database went away meanwhile: the others still get their turn
                    log.exception("could not recover change #%s", request_id)
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
        since ``recover`` picked it (its holder's heartbeat came back, another replica took it).

        A try that does not reach an end (an error, the pool not answering) is counted in the
        database; after ``apply_attempts`` of them the request fails with the reason, so a
        request can never be retried forever."""
        with self.sessions() as session:
            request = session.scalars(
                select(ChangeRequest).where(ChangeRequest.id == request_id, self._stuck(self.clock() - lease))
            ).first()
        if request is None:
            return None
        try:
            if request.state == State.APPROVED:
                return self.execute(request.id)
            final = self._resume(request)
            if final is not State.APPLYING:
                return final
            # The pool did not answer (the thread says so); ask it once more for the reason.
            reason = "the pool did not answer"
            try:
                self.gateways.get(request.pool).inventory()
            except XenError as exc:
                reason = str(exc)
        except Exception as exc:
            log.exception("could not finish change #%s", request_id)
            reason = f"{type(exc).__name__}: {exc}"
        counted = self.changes.attempt_failed(request_id, reason, self.me)
        return counted[0] if counted else None

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
        """Live state is not what was approved: apply nothing, say why in the request's thread,
        and ask for approval of what is left (if anything) as a new request."""
        with self.sessions.begin() as session:
            row = session.get(ChangeRequest, request.id)
            assert row is not None
            if not self.changes.transition(session, row, (State.APPROVED,), State.STALE, "system"):
                return None
        self.changes.refresh_message(request.id)
        old = Plan.from_json(request.plan)
        try:  # approved interfaces that no longer exist (destroyed, or their VM or host was)
            inventory = self.gateways.get(request.pool).inventory()
            gone = [i.label for i in old.interfaces if inventory.interface(i.uuid) is None]
        except XenError:
            gone = []
        new_id = None
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
            new_id = new.id
            self.changes.post_for_approval(new, fresh, note=render.stale_note(request, old, fresh, gone))
        self.post_in_thread(request, render.stale_reason(request, old, fresh, gone, new_id))
        return State.STALE

    # -- finishing -------------------------------------------------------------------

    def _finish(self, request: ChangeRequest, resumed: bool) -> State:
        final = patiently(lambda: self._close(request, resumed), patience=self.outage_patience)
        self._report(request, final)
        return final

    def _close(self, request: ChangeRequest, resumed: bool) -> State:
        """Move ``applying`` to its outcome; safe to run twice (the second finds it already moved).

        Progress for the card ends here, before the final card is drawn: pending updates are
        dropped and one already on the wire is waited for, so the final state is the last word."""
        if request.message_channel and request.message_ts:
            sender_for(self.messenger).finish(request.message_channel, request.message_ts)
        with self.sessions.begin() as session:
            counts, _failures, _activation = self._outcome_of(session, request.id, details=False)
            final = outcome(sum(counts[s] for s in SUCCESSES), sum(counts[s] for s in FAILURES))
            row = session.get(ChangeRequest, request.id)
            assert row is not None
            summary = {"counts": dict(counts), "resumed": resumed}
            if not self.changes.transition(session, row, (State.APPLYING,), final, "system", summary=summary):
                log.warning("change #%s was finished by someone else", request.id)
            return final

    @staticmethod
    def _outcome_of(
        session: Session, request_id: int, *, details: bool = True
    ) -> tuple[Counter[str], list[tuple[str, str]], Counter[str]]:
        """Counts by status and activation in one ``GROUP BY`` (a pool-wide change has thousands of
        rows: loading them all through the ORM, twice per apply, was a quarter of a second), and
        the failed rows' labels and errors only when there are failures and ``details`` are wanted."""
        grouped = session.execute(
            select(ChangeResult.status, ChangeResult.activation, func.count())
            .where(ChangeResult.request_id == request_id)
            .group_by(ChangeResult.status, ChangeResult.activation)
        ).all()
        counts: Counter[str] = Counter()
        activation: Counter[str] = Counter()
        for status, method, n in grouped:
            counts[status] += n
            if status in WRITTEN:
                activation[method] += n
        failures: list[tuple[str, str]] = []
        if details and any(counts[s] for s in FAILURES):
            failed = session.execute(
                select(ChangeResult.label, ChangeResult.error, ChangeResult.status)
                .where(ChangeResult.request_id == request_id, ChangeResult.status.in_(list(FAILURES)))
                .order_by(ChangeResult.id)
            ).all()
            failures = [(label, error or status) for label, error, status in failed]
        return counts, failures, activation

    def _report(self, request: ChangeRequest, final: State, note: str | None = None, claimed: bool = False) -> bool:
        """Update the card and post the outcome in its thread, once.

        The post is claimed first (``reported_at``, compare-and-set), before anything talks to
        Slack: claimed only after the card's ``chat.update``, a slow Slack left the finished
        change unclaimed for as long as that call took, and the housekeeper's
        ``report_unreported`` could post the outcome too. A post Slack did not take (or a
        failure before it) releases the claim for the housekeeper. Returns False when Slack
        did not take it."""
        if not claimed:
            try:
                if not self._mark_reported(request.id, self.clock()):
                    return True  # someone else has posted it
            except Exception:  # post anyway: a late duplicate is better than no outcome at all
                log.exception("could not claim the outcome post of change #%s", request.id)
        try:
            with self.sessions() as session:
                counts, failures, activation = self._outcome_of(session, request.id)
                # The card's place is read again: it may have been recorded after this apply began
                # (an approval clicked within moments of the card appearing).
                card = session.execute(
                    select(ChangeRequest.message_channel, ChangeRequest.message_ts).where(
                        ChangeRequest.id == request.id
                    )
                ).one()
            request.message_channel, request.message_ts = card.message_channel, card.message_ts
            self.changes.refresh_message(request.id)
            if request.kind in ACTIVATION_KINDS:
                reply = render.activation_summary(request, final, counts, failures)
            else:
                reply = render.apply_summary(request, final, counts, failures, activation)
            if note:
                reply = render.with_note(reply, note)
            posted = self.post_in_thread(request, reply)
        except Exception:
            if not claimed:
                self._release_report(request.id)  # report_unreported() tries again
            raise
        if not posted:
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

    def settle_seconds(self, gateway: PoolGateway) -> float:
        if self.settle_after_lost is not None:
            return self.settle_after_lost
        return 2 * gateway.settings.timeout_seconds

    # -- the phases, each in a module of its own ---------------------------------------------

    def _apply(
        self, request: ChangeRequest, interfaces: Iterable[InterfacePlan], *, resumed: bool
    ) -> State | None:
        return apply_interfaces(self, request, interfaces, resumed=resumed)

    def _resume(self, request: ChangeRequest) -> State | None:
        if request.kind in ACTIVATION_KINDS:  # no writes to re-read: a half-done replug or power cycle
            return resume_activation(self, request)
        return resume(self, request)

    def _activate(self, request: ChangeRequest, actor: str) -> State | None:
        return activate(self, request, actor)

    # -- storage and messages -------------------------------------------------------------

    def _store(self, request: ChangeRequest, batch: list[Outcome]) -> None:
        """One transaction per batch (see :func:`store_results`); raises :class:`ClaimLost`."""
        store_results(self.sessions, self.clock, self.me, request, batch)

    def _progress(self, request: ChangeRequest, done: int, total: int) -> None:
        """Offered to the card's progress sender, which coalesces, rate-limits and sends on a thread
        of its own (bot/services/progress.py): the results collector calling this never waits on Slack."""
        if request.message_channel and request.message_ts:
            sender_for(self.messenger).offer(
                request.message_channel, request.message_ts, render.progress(request, done, total)
            )

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
