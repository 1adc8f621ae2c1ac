"""The audit log as the router and services see it: one call, its own short transaction.

Use cases that change something write their audit rows inside their own
transaction (``bot.db.audit.record``); this wrapper is for events that stand
alone, such as a command that was run or refused.

Those commands are answered even while the database is down (a read-only
command needs only the pools), so their audit rows must not be lost with the
connection. An event that cannot be written for a transient reason
(``bot.db.retry.is_transient``) is kept in memory, in order and with the time it
happened, and written by a background thread once the database answers again,
as apply results are (``bot.db.retry.patiently``). Memory is bounded: past
``max_pending`` events the oldest are dropped, and each drop is logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.db import audit
from bot.db.models import AuditEvent
from bot.db.retry import FIRST_PAUSE, LONGEST_PAUSE, is_transient

log = logging.getLogger(__name__)

MAX_PENDING: Final = 10_000


@dataclass(frozen=True)
class _Pending:
    actor: str
    action: str
    target: str
    details: dict[str, object] | None
    channel: str | None
    request_id: str | None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


class AuditLog:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        max_pending: int = MAX_PENDING,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._sessions = sessions
        self._pending: deque[_Pending] = deque()
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._sleep = sleep
        self.dropped = 0

    def record(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        details: dict[str, object] | None = None,
        channel: str | None = None,
        request_id: str | None = None,
    ) -> None:
        """Write the event now, or, while the database is down, as soon as it is back.

        Raises only for errors that waiting would not cure (a bug, a refused key)."""
        event = _Pending(actor, action, target, details, channel, request_id)
        with self._lock:
            if self._pending:  # an outage is being ridden out: keep the order
                self._keep(event)
                return
        try:
            self._write([event])
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("database unreachable: audit event %s kept in memory until it is back", action)
            with self._lock:
                self._keep(event)

    @property
    def pending(self) -> int:
        """Events waiting for the database."""
        with self._lock:
            return len(self._pending)

    def _keep(self, event: _Pending) -> None:
        """Queue ``event`` (call with the lock) and make sure a flusher is running."""
        if len(self._pending) >= self._max_pending:
            lost = self._pending.popleft()
            self.dropped += 1
            log.error("audit event lost: more than %d waiting for the database; dropped %s by %s at %s",
                      self._max_pending, lost.action, lost.actor, lost.at.isoformat())
        self._pending.append(event)
        if self._flusher is None or not self._flusher.is_alive():
            self._flusher = threading.Thread(target=self._flush, name="xenbot-audit-flush", daemon=True)
            self._flusher.start()

    def _flush(self) -> None:
        """Write what waits, oldest first, retrying with growing pauses until it is all stored."""
        pause = FIRST_PAUSE
        while True:
            with self._lock:
                batch = list(self._pending)
                if not batch:
                    self._flusher = None
                    return
            try:
                self._write(batch, again=True)
            except Exception as exc:
                if not is_transient(exc):
                    log.exception("audit events could not be written; %d dropped", len(batch))
                    self._forget(len(batch))
                    continue
                self._sleep(pause)
                pause = min(pause * 2, LONGEST_PAUSE)
                continue
            self._forget(len(batch))
            log.info("database back: %d delayed audit event(s) written", len(batch))
            pause = FIRST_PAUSE

    def _forget(self, count: int) -> None:
        """Remove the ``count`` oldest pending events (fewer if some were dropped meanwhile)."""
        with self._lock:
            for _ in range(min(count, len(self._pending))):
                self._pending.popleft()

    def _write(self, events: list[_Pending], again: bool = False) -> None:
        """One transaction for ``events``. ``again``: a previous try may have committed before its
        connection died, so events already stored (same time, actor, action, target) are skipped."""
        with self._sessions.begin() as session:
            stored: set[tuple[Any, ...]] = set()
            if again:
                rows = session.execute(
                    select(AuditEvent.at, AuditEvent.actor, AuditEvent.action, AuditEvent.target)
                    .where(AuditEvent.at >= min(e.at for e in events))
                )
                stored = {tuple(row) for row in rows}
            for event in events:
                if (event.at, event.actor, event.action, event.target) in stored:
                    continue
                audit.record(
                    session,
                    actor=event.actor,
                    action=event.action,
                    target=event.target,
                    details=event.details,
                    channel=event.channel,
                    request_id=event.request_id,
                    at=event.at,
                )
