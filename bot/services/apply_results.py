"""Outcomes of an apply and their storage: batched, heartbeat-carrying, safe to run twice.

The XAPI workers hand each interface's outcome to a :class:`Collector`, which stores them in
batches on a thread of its own, so no worker ever waits on the database while it could be
writing to XAPI.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot import metrics
from bot.db import audit
from bot.db.models import ChangeRequest, ChangeResult, PendingActivation
from bot.db.retry import patiently
from bot.domain.changes import NOTHING_TO_ACTIVATE
from bot.render import changes as render

if TYPE_CHECKING:
    from bot.services.apply import ApplyService

log = logging.getLogger(__name__)

BATCH_SIZE = 100
FLUSH_SECONDS = 1.0

@dataclass
class Outcome:
    uuid: str
    label: str
    kind: str
    status: str  # a bot.domain.outcomes.Status value
    before: dict[str, str | None]
    after: dict[str, str | None] | None
    error: str | None
    activation: str
    owner_uuid: str = ""


class ClaimLost(Exception):
    """Another replica took the request over (this one looked dead, e.g. during a long database outage)."""


class Collector:
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
            elif not self.lost and time.monotonic() - self._recorded_at > self.service.write_window / 3:
                self._beat()
            if closed and not batch:
                return

    def _beat(self) -> None:
        """Keep the claim alive while no result arrives (a guest taking minutes to shut down):
        without it the lease would lapse and another replica would take over mid-activation."""
        service = self.service
        try:
            held = beat(service.sessions, service.clock, service.me, self.request)
        except Exception:  # the database is away: may_write() stops new writes once the window passes
            log.warning("could not refresh the heartbeat of change #%s", self.request.id, exc_info=True)
            return
        if held:
            self._recorded_at = time.monotonic()
        else:
            self.lost = True
            log.warning("change #%s was taken over by another replica; stopping here", self.request.id)

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



def beat(sessions: sessionmaker[Session], clock: Callable[[], datetime], me: str, request: ChangeRequest) -> bool:
    """Refresh the request's heartbeat; False when this replica no longer holds it."""
    with sessions.begin() as session:
        held = session.execute(
            update(ChangeRequest)
            .where(ChangeRequest.id == request.id, ChangeRequest.executor == me)
            .values(heartbeat_at=clock())
        )
        return bool(held.rowcount == 1)  # type: ignore[attr-defined]


def store_results(
sessions: sessionmaker[Session], clock: Callable[[], datetime], me: str,
request: ChangeRequest, batch: list[Outcome],
) -> None:
    """One transaction per batch: results, pending activations, heartbeat and one audit row.

    Safe to run again after a connection died around the commit: interfaces already
    stored for this request are skipped. Raises :class:`ClaimLost` when this replica no
    longer holds the request (nothing is stored then)."""
    now = clock()
    with sessions.begin() as session:
        # First, so the request row is locked for the rest of the transaction (PostgreSQL).
        held = session.execute(
            update(ChangeRequest)
            .where(ChangeRequest.id == request.id, ChangeRequest.executor == me)
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
