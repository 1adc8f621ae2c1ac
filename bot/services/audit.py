"""The audit log as the router and services see it: one call, its own short transaction.

Use cases that change something write their audit rows inside their own
transaction (``bot.db.audit.record``); this wrapper is for events that stand
alone, such as a refused command.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from bot.db import audit


class AuditLog:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

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
        with self._sessions.begin() as session:
            audit.record(
                session,
                actor=actor,
                action=action,
                target=target,
                details=details,
                channel=channel,
                request_id=request_id,
            )
