"""The audit log: who asked the bot to do what, and what it decided.

Entries are appended inside the caller's transaction ("one transaction per use case"), so an
approval and its audit entry commit or roll back together. Each entry's hash covers the previous
entry's hash, which makes the log tamper-evident: :func:`verify` finds the first row that was
altered, removed or re-linked. It cannot notice the *newest* rows being removed; for that, keep
the head hash that :func:`verify` reports somewhere else (a Slack message, a ticket).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from bot.db.models import GENESIS_HASH, AuditEvent, chain_hash

# Key of the PostgreSQL advisory lock that serialises appenders across replicas ("xenbot" + 1).
AUDIT_CHAIN_LOCK_KEY: Final = 0x78656E626F740001

# Rows fetched per round trip by verify(): bounded memory whatever the size of the log.
_VERIFY_BATCH: Final = 1000


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify`.

    ``rows_checked`` counts the rows read, including the bad one. ``head_hash`` is the hash of
    the last good row, worth recording outside the database (see the module docstring).
    """

    ok: bool
    rows_checked: int
    first_bad_id: int | None = None
    reason: str | None = None
    head_hash: str | None = None


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str,
    details: Mapping[str, Any] | None = None,
    channel: str | None = None,
    request_id: str | None = None,
) -> AuditEvent:
    """Append an entry to the audit log in ``session``'s current transaction and return it.

    The entry is flushed (it has its id and hash) but not committed: the caller commits it with
    the rest of the use case. While that transaction is open, other appenders wait: the chain
    lock is held until commit or rollback, so keep audited transactions short.
    """
    _lock_chain(session)
    last = session.execute(select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)).first()
    prev_id, prev_hash = (last.id, last.hash) if last is not None else (0, GENESIS_HASH)
    event = AuditEvent(
        id=prev_id + 1,
        at=datetime.now(UTC),
        actor=actor,
        action=action,
        target=target,
        channel=channel,
        request_id=request_id,
        details=_as_stored(details),
        prev_hash=prev_hash,
    )
    event.hash = event.compute_hash()
    session.add(event)
    session.flush()
    return event


def verify(session: Session) -> VerifyResult:
    """Walk the whole chain in id order and report the first row that does not fit.

    Checks per row, in this order: the id follows the previous one (else a row was deleted:
    "gap"), ``prev_hash`` equals the previous row's hash ("broken link"), and the stored hash
    matches the row's contents ("hash mismatch").
    """
    columns = (
        AuditEvent.id,
        AuditEvent.at,
        AuditEvent.actor,
        AuditEvent.action,
        AuditEvent.target,
        AuditEvent.channel,
        AuditEvent.request_id,
        AuditEvent.details,
        AuditEvent.prev_hash,
        AuditEvent.hash,
    )
    rows = session.execute(select(*columns).order_by(AuditEvent.id).execution_options(yield_per=_VERIFY_BATCH))
    expected_id, expected_prev = 1, GENESIS_HASH
    checked = 0
    head: str | None = None
    for row in rows:
        checked += 1
        reason: str | None = None
        if row.id != expected_id:
            reason = f"gap: expected id {expected_id}, found {row.id} (rows were deleted)"
        elif row.prev_hash != expected_prev:
            reason = "broken link: prev_hash is not the hash of the previous row"
        elif row.hash != chain_hash(
            row.prev_hash,
            id=row.id,
            at=row.at,
            actor=row.actor,
            action=row.action,
            target=row.target,
            channel=row.channel,
            request_id=row.request_id,
            details=row.details,
        ):
            reason = "hash mismatch: the row's contents or hash were altered"
        if reason is not None:
            return VerifyResult(False, checked, row.id, reason, head)
        expected_id, expected_prev, head = row.id + 1, row.hash, row.hash
    return VerifyResult(True, checked, head_hash=head)


def recent(session: Session, limit: int = 20, action_prefix: str | None = None) -> list[AuditEvent]:
    """The newest ``limit`` entries, newest first; ``action_prefix="change."`` keeps only changes."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if action_prefix:
        query = query.where(AuditEvent.action.startswith(action_prefix, autoescape=True))
    return list(session.scalars(query))


def _lock_chain(session: Session) -> None:
    """Serialise appenders until the end of the caller's transaction.

    Without this, two replicas could both read row N as the latest and both append an N+1 (the
    unique ``prev_hash`` would then make one of them fail; the lock makes it wait instead).
    """
    connection = session.connection()
    dialect = connection.dialect.name
    if dialect == "postgresql":
        # Transaction-scoped: released by COMMIT/ROLLBACK, so a crashed use case cannot leak it.
        # The read of the latest row comes after this statement and, under READ COMMITTED, sees
        # every appender that committed while we waited.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_CHAIN_LOCK_KEY})
    elif dialect == "sqlite":
        # bot.db.make_engine begins every SQLite transaction with BEGIN IMMEDIATE, so the write
        # lock is already ours. (A deferred transaction from another engine is still safe, just
        # not serialised: a lost race ends in "database is locked" or the unique prev_hash.)
        pass
    else:
        raise NotImplementedError(f"audit log on {dialect!r}: only SQLite and PostgreSQL are supported")


def _as_stored(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """``details`` as the database will give it back, so the hash covers what is stored.

    Tuples become lists, non-string keys become strings, and anything else not JSON-native
    (datetimes, UUIDs, enums) becomes ``str(value)``, exactly as the canonical JSON renders it.
    Whole-number floats become ints: PostgreSQL's JSONB prints ``1e+16`` back as
    ``10000000000000000``, which would no longer hash the same. NaN and infinities are refused,
    as PostgreSQL's JSON has no spelling for them.
    """
    if details is None:
        return {}
    stored: dict[str, Any] = json.loads(
        json.dumps(dict(details), default=str, allow_nan=False), parse_float=_parse_float
    )
    return stored


def _parse_float(literal: str) -> float | int:
    value = float(literal)
    return int(value) if value.is_integer() else value
