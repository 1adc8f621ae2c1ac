"""The audit log: who asked the bot to do what, and what it decided.

Entries are appended inside the caller's transaction ("one transaction per use case"), so an
approval and its audit entry commit or roll back together. Each entry's hash covers the previous
entry's hash, which makes the log tamper-evident: :func:`verify` finds the first row that was
altered, removed or re-linked.

Two things make it tamper-*proof* against someone holding the bot's own database role:

- **A key.** With ``[audit] key_file`` set, each hash is an HMAC-SHA256 under a key that is
  never stored in the database, so an edited row's hash (and every later one) cannot be
  recomputed. The sessions carry the key (``bot.db.session_factory(engine, audit_key=…)``);
  ``audit_chain_key`` records where the keyed part starts (rows before it are the old
  unkeyed chain, still checked) and a fingerprint of the key.
- **An anchor.** Removing the *newest* rows leaves a valid shorter chain. The housekeeper
  posts :func:`head` (hash and row count) outside the database, to a Slack channel and the
  log; ``verify(anchor=…)`` checks the chain still reaches it with the same hash.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import SecretStr
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from bot.db.models import GENESIS_HASH, AuditChainKey, AuditEvent, chain_hash, key_fingerprint

# Key of the PostgreSQL advisory lock that serialises appenders across replicas ("xenbot" + 1).
AUDIT_CHAIN_LOCK_KEY: Final = 0x78656E626F740001

# Rows fetched per round trip by verify(): bounded memory whatever the size of the log.
_VERIFY_BATCH: Final = 1000

# Where a session finds the chain key: ``Session.info[AUDIT_KEY_INFO]``, a SecretStr.
AUDIT_KEY_INFO: Final = "xenbot_audit_key"

_ANCHOR = re.compile(r"^([0-9a-f]{64}):([0-9]+)$")


class AuditKeyError(RuntimeError):
    """The configured key does not fit the chain: wrong key, or the key was removed."""


@dataclass(frozen=True)
class Anchor:
    """The head of the chain as recorded outside the database: ``HASH:COUNT``."""

    hash: str
    count: int

    def __str__(self) -> str:
        return f"{self.hash}:{self.count}"

    @classmethod
    def parse(cls, value: str) -> Anchor:
        match = _ANCHOR.match(value.strip().lower())
        if match is None:
            raise ValueError("an anchor looks like HASH:COUNT (64 hex digits, a colon, a row count)")
        return cls(match.group(1), int(match.group(2)))


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
    # Id of the first HMAC-keyed row; None while the whole chain is unkeyed.
    keyed_from: int | None = None


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str,
    details: Mapping[str, Any] | None = None,
    channel: str | None = None,
    request_id: str | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    """Append an entry to the audit log in ``session``'s current transaction and return it.

    The entry is flushed (it has its id and hash) but not committed: the caller commits it with
    the rest of the use case. While that transaction is open, other appenders wait: the chain
    lock is held until commit or rollback, so keep audited transactions short. ``at`` is when
    it happened, for an event written late (kept in memory through a database outage).
    """
    _lock_chain(session)
    last = session.execute(select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)).first()
    prev_id, prev_hash = (last.id, last.hash) if last is not None else (0, GENESIS_HASH)
    now = datetime.now(UTC)
    key = _key_for_append(session, prev_id + 1, now)
    if at is not None:
        now = at.astimezone(UTC)
    event = AuditEvent(
        id=prev_id + 1,
        at=now,
        actor=actor,
        action=action,
        target=target,
        channel=channel,
        request_id=request_id,
        details=_as_stored(details),
        prev_hash=prev_hash,
    )
    event.hash = event.compute_hash(key)
    session.add(event)
    session.flush()
    return event


def verify(session: Session, *, key: SecretStr | None = None, anchor: Anchor | None = None) -> VerifyResult:
    """Walk the whole chain in id order and report the first row that does not fit.

    Checks per row, in this order: the id follows the previous one (else a row was deleted:
    "gap"), ``prev_hash`` equals the previous row's hash ("broken link"), and the stored hash
    matches the row's contents ("hash mismatch"), as an HMAC under ``key`` from the keyed start
    on. With ``anchor``, the chain must also reach the anchored row count with the anchored
    hash: fewer rows means the newest were deleted, another hash that history was rewritten.
    """
    start = _chain_start(session)
    keyed_from = start.first_id if start is not None else None
    secret = key.get_secret_value().encode() if key is not None else None
    if start is not None and secret is not None and key_fingerprint(secret) != start.key_id:
        return VerifyResult(False, 0, start.first_id, _wrong_key(start), keyed_from=keyed_from)
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
    anchored: str | None = None
    for row in rows:
        checked += 1
        reason: str | None = None
        keyed = keyed_from is not None and row.id >= keyed_from
        if keyed and secret is None:
            reason = f"keyed chain from row {keyed_from}: configure [audit] key_file to check it"
        elif row.id != expected_id:
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
            key=secret if keyed else None,
        ):
            reason = "hash mismatch: the row's contents or hash were altered"
        if reason is not None:
            return VerifyResult(False, checked, row.id, reason, head, keyed_from)
        expected_id, expected_prev, head = row.id + 1, row.hash, row.hash
        if anchor is not None and row.id == anchor.count:
            anchored = row.hash
    if anchor is not None and anchor.count > 0:
        if checked < anchor.count:
            reason = (f"rows deleted: the anchor counts {anchor.count} rows, the log has {checked} "
                      "(the newest rows were removed)")
            return VerifyResult(False, checked, checked + 1, reason, head, keyed_from)
        if anchored != anchor.hash:
            reason = f"history rewritten: row {anchor.count}'s hash is not the anchored one"
            return VerifyResult(False, checked, anchor.count, reason, head, keyed_from)
    return VerifyResult(True, checked, head_hash=head, keyed_from=keyed_from)


def head(session: Session) -> Anchor | None:
    """The newest row's hash and the row count (ids are dense): what to keep outside the database."""
    last = session.execute(select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)).first()
    return Anchor(last.hash, last.id) if last is not None else None


def check_key(session: Session, key: SecretStr | None) -> str | None:
    """Why this process could not append to the chain with ``key``, or None when it can.

    Checked at start-up, so a wrong or missing key stops ``serve`` with one line instead of
    failing every audited command later."""
    start = _chain_start(session)
    if start is None:
        return None
    if key is None:
        return (f"the audit chain is keyed (HMAC) since row {start.first_id}: "
                "set [audit] key_file to the key it was started with")
    if key_fingerprint(key.get_secret_value().encode()) != start.key_id:
        return _wrong_key(start)
    return None


def recent(session: Session, limit: int = 20, action_prefix: str | None = None) -> list[AuditEvent]:
    """The newest ``limit`` entries, newest first; ``action_prefix="change."`` keeps only changes."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if action_prefix:
        query = query.where(AuditEvent.action.startswith(action_prefix, autoescape=True))
    return list(session.scalars(query))


def _chain_start(session: Session) -> AuditChainKey | None:
    return session.scalars(select(AuditChainKey).order_by(AuditChainKey.first_id).limit(1)).first()


def _wrong_key(start: AuditChainKey) -> str:
    return (f"wrong key: the chain keyed since row {start.first_id} uses key {start.key_id}, "
            "the configured [audit] key_file is another one")


def _key_for_append(session: Session, next_id: int, now: datetime) -> bytes | None:
    """The key the row ``next_id`` is hashed with; marks the keyed start at the first keyed row."""
    key: SecretStr | None = session.info.get(AUDIT_KEY_INFO)
    start = _chain_start(session)
    if key is None:
        if start is not None:
            raise AuditKeyError(check_key(session, None))
        return None
    secret = key.get_secret_value().encode()
    if start is None:
        session.add(AuditChainKey(first_id=next_id, key_id=key_fingerprint(secret), at=now))
    elif start.key_id != key_fingerprint(secret):
        raise AuditKeyError(_wrong_key(start))
    return secret


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
